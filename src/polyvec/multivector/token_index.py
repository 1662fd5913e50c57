"""Compressed token index of one sealed segment (ColBERTv2 residual codes, WARP-style search).

Build (ColBERTv2):

- ``K = 2 ** floor(log2(16 * sqrt(n_tokens)))`` centroids (see :func:`default_n_centroids`),
  trained by faiss k-means on a sample of the tokens, then L2-normalized;
- each token is assigned to its nearest centroid by inner product; the id is stored as uint16
  when ``K <= 65536``, else uint32;
- the residual ``x - c`` is quantized per dimension into ``2 ** nbits`` buckets (``nbits`` 1, 2
  or 4). The bucket cut-offs are the ``1/B .. (B-1)/B`` quantiles of all residual values of a
  held-out sample of tokens (5%, at most 50,000, never used for k-means), the reconstruction
  weights the mid-quantiles ``(b + 1/2)/B``.

Layout (WARP): postings are grouped per centroid and contiguous (``list_offsets``); each posting
holds its document row (``post_docs``, uint16 when the segment has at most 65,536 documents,
else uint32) and its packed residual (``post_codes``). ``token_cids`` (centroid id per token) and
``token_pos`` (posting position per token) serve decompression only and stay on disk.

Search (:meth:`TokenIndex.candidates`): ``S = Q C^T``; per query token the top ``nprobe``
centroids; a posting scores ``S[i, c] + sum_j lut_i[j, code byte j]`` without decompression;
the best score per (document, query token) is kept and summed per document; a query token that
reached no token of a document contributes its missing-similarity estimate, the score of the
last (``nprobe``-th best) centroid it probed. Exact MaxSim of the top candidates is
:func:`polyvec.multivector.rerank.rerank_maxsim`'s job.

Files (``save``/``load``): one ``.npy`` per array plus ``manifest.json`` (format name, version,
parameters, size and CRC-32 of every file); ``load`` memory-maps the arrays and raises
:class:`~polyvec.errors.CorruptFile` naming the first file that fails its checks.
"""

from __future__ import annotations

import json
import math
import os
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._kernels.lut import (
    NBITS,
    code_bytes,
    decode_residuals,
    lut_candidates,
    pack_residuals,
    top_per_row,
)
from ..errors import (
    CorruptFile,
    DimensionMismatch,
    DTypeMismatch,
    FormatVersionError,
    InvalidArgument,
    InvalidVector,
)

__all__ = ["TokenIndex", "default_n_centroids", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "polyvec.token_index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
HELDOUT_FRACTION = 0.05
HELDOUT_MAX = 50_000
_ASSIGN_CHUNK = 1 << 16
_CRC_CHUNK = 1 << 22

# array name -> role: "ram" arrays are read by every query, "disk" ones only by decompression
_ARRAYS = {
    "centroids": "ram",
    "cutoffs": "ram",
    "weights": "ram",
    "list_offsets": "ram",
    "post_docs": "ram",
    "post_codes": "ram",
    "token_cids": "disk",
    "token_pos": "disk",
    "doc_offsets": "disk",
}


def default_n_centroids(n_tokens: int) -> int:
    """ColBERTv2's rule: ``2 ** floor(log2(16 * sqrt(n_tokens)))`` (at least 1)."""
    if n_tokens < 1:
        return 1
    return int(2 ** math.floor(math.log2(16.0 * math.sqrt(n_tokens))))


def _id_dtype(count: int) -> np.dtype:
    """Smallest unsigned dtype for ids in ``[0, count)``: uint16 or uint32, never int64."""
    if count <= 1 << 16:
        return np.dtype(np.uint16)
    if count <= 1 << 32:
        return np.dtype(np.uint32)
    raise InvalidArgument(f"expected at most 2**32 ids in one token index, got {count}")


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CRC_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _check_inputs(tokens: np.ndarray, offsets: np.ndarray, nbits: int) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    if nbits not in NBITS:
        raise InvalidArgument(f"nbits: expected one of {NBITS}, got {nbits!r}")
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise DimensionMismatch(f"tokens: expected a 2-D (n_tokens, d) array, got shape "
                                f"{tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.floating):
        raise DTypeMismatch(f"tokens: expected a float array, got dtype {tokens.dtype}")
    d = tokens.shape[1]
    if d == 0 or (d * nbits) % 8:
        raise DimensionMismatch(f"tokens: expected d * nbits to be a positive multiple of 8, "
                                f"got d={d}, nbits={nbits}")
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or len(offsets) < 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise InvalidArgument(f"offsets: expected a 1-D integer array of n_docs + 1 bounds, "
                              f"got shape {offsets.shape}, dtype {offsets.dtype}")
    offsets = offsets.astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != len(tokens) or np.any(np.diff(offsets) < 0):
        raise InvalidArgument(f"offsets: expected non-decreasing bounds from 0 to n_tokens "
                              f"= {len(tokens)}, got {offsets[0]} .. {offsets[-1]}")
    if len(tokens) == 0:
        raise InvalidVector("tokens: expected at least one token, got 0")
    if not np.isfinite(tokens).all():
        raise InvalidVector("tokens: expected finite values, got NaN or inf")
    return tokens, offsets


def _kmeans(sample: np.ndarray, k: int, *, niter: int, seed: int) -> np.ndarray:
    if k == 1:
        return sample.mean(axis=0, keepdims=True).astype(np.float32)
    import faiss  # a core dependency, imported only when an index is built

    km = faiss.Kmeans(sample.shape[1], k, niter=niter, seed=seed, verbose=False,
                      max_points_per_centroid=len(sample))
    km.train(sample)
    return np.asarray(km.centroids, dtype=np.float32).reshape(k, -1)


def _assign(tokens: np.ndarray, centroids: np.ndarray, id_dtype: np.dtype) -> np.ndarray:
    """Nearest centroid by inner product, chunked so no (n_tokens, K) block is held."""
    out = np.empty(len(tokens), dtype=id_dtype)
    ct = np.ascontiguousarray(centroids.T)
    for lo in range(0, len(tokens), _ASSIGN_CHUNK):
        block = np.asarray(tokens[lo:lo + _ASSIGN_CHUNK], dtype=np.float32)
        out[lo:lo + len(block)] = np.argmax(block @ ct, axis=1)
    return out


@dataclass(eq=False)
class TokenIndex:
    """Compressed token index over ``n_docs`` documents of ``n_tokens`` token vectors."""

    nbits: int
    seed: int
    centroids: np.ndarray  # (K, d) f32, L2-normalized
    cutoffs: np.ndarray  # (2**nbits - 1,) f32
    weights: np.ndarray  # (2**nbits,) f32
    list_offsets: np.ndarray  # (K + 1,) int64
    post_docs: np.ndarray  # (n_tokens,) uint16/uint32, grouped by centroid, by doc within
    post_codes: np.ndarray  # (n_tokens, d * nbits // 8) uint8, same order
    token_cids: np.ndarray  # (n_tokens,) uint16/uint32
    token_pos: np.ndarray  # (n_tokens,) uint32: posting position of each token
    doc_offsets: np.ndarray  # (n_docs + 1,) int64
    _local: threading.local = field(default_factory=threading.local, repr=False)

    # ------------------------------------------------------------------ properties

    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def n_tokens(self) -> int:
        return len(self.post_docs)

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_centroids(self) -> int:
        return len(self.centroids)

    @property
    def nbytes_ram(self) -> int:
        """Bytes the candidate generation reads on every query: centroids, bucket tables,
        posting bounds, posting document rows and packed residuals (plus one per-thread
        scratch of 4 bytes per document). Per-token centroid ids and posting positions are
        only read by :meth:`reconstruct` and are counted in :attr:`nbytes_disk`."""
        return sum(int(getattr(self, k).nbytes) for k, role in _ARRAYS.items()
                   if role == "ram") + 4 * self.n_docs

    @property
    def nbytes_disk(self) -> int:
        """Bytes of every array of the index (what ``save`` writes, headers aside)."""
        return sum(int(getattr(self, k).nbytes) for k in _ARRAYS)

    # ------------------------------------------------------------------ build

    @classmethod
    def build(cls, tokens: np.ndarray, offsets: np.ndarray, *, nbits: int = 2,
              n_centroids: int | None = None, seed: int = 0, niter: int = 4,
              max_points_per_centroid: int = 64) -> TokenIndex:
        """Train centroids and bucket tables on ``tokens`` and encode every token.

        ``offsets`` (n_docs + 1 bounds) lays the documents out contiguously in ``tokens``.
        ``n_centroids`` overrides the K rule; k-means runs ``niter`` iterations (ColBERT's
        default, 4) on at most ``K * max_points_per_centroid`` sampled tokens. On the 10k-doc
        Debian subset (693k tokens, K 8192) 4 iterations on 64 tokens per centroid build in a
        third of the time of 10 on all tokens, at the same recall (0.912 vs 0.920).
        """
        tokens, offsets = _check_inputs(tokens, offsets, nbits)
        n, d = tokens.shape
        n_docs = len(offsets) - 1
        if n_centroids is not None and (not isinstance(n_centroids, (int, np.integer))
                                        or n_centroids < 1):
            raise InvalidArgument(f"n_centroids: expected a positive int, got {n_centroids!r}")
        rng = np.random.default_rng(seed)
        perm = rng.permutation(n)
        n_held = min(max(int(HELDOUT_FRACTION * n), 1), HELDOUT_MAX) if n >= 2 else 0
        held, rest = perm[:n_held], perm[n_held:]
        k = int(n_centroids) if n_centroids is not None else default_n_centroids(n)
        k = max(1, min(k, len(rest)))
        n_sample = min(len(rest), k * max(1, int(max_points_per_centroid)))
        sample_rows = np.sort(rest[:n_sample])
        sample = np.ascontiguousarray(tokens[sample_rows], dtype=np.float32)
        centroids = _kmeans(sample, k, niter=niter, seed=seed)
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        centroids = (centroids / np.where(norms > 0, norms, 1.0)).astype(np.float32)

        cid_dtype = _id_dtype(k)
        cids = _assign(tokens, centroids, cid_dtype)

        held_rows = np.sort(held) if n_held else sample_rows
        resid = np.asarray(tokens[held_rows], dtype=np.float32) - centroids[
            cids[held_rows].astype(np.int64)]
        b = 1 << nbits
        values = resid.ravel().astype(np.float64)
        cutoffs = np.quantile(values, np.arange(1, b) / b).astype(np.float32)
        weights = np.quantile(values, (np.arange(b) + 0.5) / b).astype(np.float32)

        codes = np.empty((n, code_bytes(d, nbits)), dtype=np.uint8)
        for lo in range(0, n, 1 << 18):
            hi = min(n, lo + (1 << 18))
            codes[lo:hi] = pack_residuals(np.asarray(tokens[lo:hi], dtype=np.float32),
                                          centroids, cids[lo:hi], cutoffs, nbits)

        order = np.argsort(cids, kind="stable")  # by centroid, by token (so by doc) within
        list_offsets = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(np.bincount(cids, minlength=k), out=list_offsets[1:])
        doc_of_token = np.repeat(np.arange(n_docs, dtype=_id_dtype(n_docs)),
                                 np.diff(offsets))
        token_pos = np.empty(n, dtype=np.uint32)
        token_pos[order] = np.arange(n, dtype=np.uint32)
        return cls(nbits=nbits, seed=seed, centroids=centroids, cutoffs=cutoffs,
                   weights=weights, list_offsets=list_offsets,
                   post_docs=doc_of_token[order], post_codes=codes[order],
                   token_cids=cids, token_pos=token_pos, doc_offsets=offsets)

    # ------------------------------------------------------------------ search

    def _scratch(self) -> np.ndarray:
        pos = getattr(self._local, "pos", None)
        if pos is None:
            pos = np.full(self.n_docs, -1, dtype=np.int32)
            self._local.pos = pos
        return pos

    def probe(self, Q: np.ndarray, nprobe: int, *, backend: str = "auto"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top ``nprobe`` centroids of each query token, best first: (ids, scores, missing
        estimate = the score of the last centroid probed)."""
        S = Q @ self.centroids.T
        cids, scores = top_per_row(S, min(int(nprobe), self.n_centroids), backend=backend)
        return cids, scores, np.ascontiguousarray(scores[:, -1])

    def candidates(self, Q: np.ndarray, n_candidates: int, *, nprobe: int = 4,
                   selection: np.ndarray | None = None, backend: str = "auto"
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n_candidates`` document rows by approximate MaxSim, best first.

        ``selection`` is a bool mask over document rows (filter and not deleted); postings of
        unselected documents are skipped, so no unselected row is ever returned. Returns
        ``(rows int64, approximate scores f32)``; fewer rows when fewer were reached.
        """
        Q = self._check_query(Q)
        if not isinstance(n_candidates, (int, np.integer)) or n_candidates < 1:
            raise InvalidArgument(f"n_candidates: expected a positive int, got {n_candidates!r}")
        if not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
            raise InvalidArgument(f"nprobe: expected a positive int, got {nprobe!r}")
        if selection is not None:
            selection = np.asarray(selection)
            if selection.dtype != np.bool_ or selection.shape != (self.n_docs,):
                raise InvalidArgument(f"selection: expected a bool mask of shape "
                                      f"({self.n_docs},), got dtype {selection.dtype}, shape "
                                      f"{selection.shape}")
        if len(Q) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        cids, cscores, mse = self.probe(Q, int(nprobe), backend=backend)
        docs, scores = lut_candidates(Q, cids, cscores, mse, self.list_offsets,
                                      self.post_docs, self.post_codes, self.weights,
                                      self.nbits, selection, pos=self._scratch(),
                                      backend=backend)
        return _top(docs, scores, int(n_candidates))

    def _check_query(self, Q: np.ndarray) -> np.ndarray:
        Q = np.asarray(Q)
        if Q.ndim != 2 or Q.shape[1] != self.dim:
            raise DimensionMismatch(f"Q: expected a (q_tokens, {self.dim}) array, got shape "
                                    f"{Q.shape}")
        if not np.issubdtype(Q.dtype, np.floating):
            raise DTypeMismatch(f"Q: expected a float array, got dtype {Q.dtype}")
        return np.ascontiguousarray(Q, dtype=np.float32)

    # ------------------------------------------------------------------ decompression

    def reconstruct(self, token_rows: np.ndarray | None = None, *,
                    backend: str = "auto") -> np.ndarray:
        """Decompressed tokens ``c + r_hat`` (not re-normalized) of ``token_rows`` (all)."""
        rows = (np.arange(self.n_tokens) if token_rows is None
                else np.asarray(token_rows, dtype=np.int64))
        codes = np.asarray(self.post_codes[np.asarray(self.token_pos[rows], dtype=np.int64)])
        resid = decode_residuals(codes, self.weights, self.nbits, backend=backend)
        return resid + self.centroids[np.asarray(self.token_cids[rows], dtype=np.int64)]

    # ------------------------------------------------------------------ files

    def save(self, folder: Path) -> None:
        """Write every array as ``folder/<name>.npy`` and then ``folder/manifest.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, list[int]] = {}
        for name in _ARRAYS:
            path = folder / f"{name}.npy"
            with open(path, "wb") as f:
                np.save(f, np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            files[path.name] = [path.stat().st_size, _crc32(path)]
        manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "nbits": self.nbits,
                    "seed": self.seed, "dim": self.dim, "n_centroids": self.n_centroids,
                    "n_docs": self.n_docs, "n_tokens": self.n_tokens, "files": files}
        tmp = folder / (MANIFEST + ".tmp")
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / MANIFEST)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, folder: Path, *, verify: bool = True) -> TokenIndex:
        """Open a saved index, memory-mapped. ``verify`` checks every file's CRC-32."""
        folder = Path(folder)
        manifest = _read_manifest(folder / MANIFEST)
        arrays: dict[str, Any] = {}
        for name in _ARRAYS:
            fname = f"{name}.npy"
            path = folder / fname
            expect = manifest["files"].get(fname)
            if not (isinstance(expect, list) and len(expect) == 2):
                raise CorruptFile(fname, "not listed in manifest.json as [size, crc32]")
            if not path.is_file():
                raise CorruptFile(fname, "missing")
            size = path.stat().st_size
            if size != expect[0]:
                raise CorruptFile(fname, f"expected {expect[0]} bytes, got {size}")
            if verify and _crc32(path) != expect[1]:
                raise CorruptFile(fname, "checksum mismatch")
            try:
                arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise CorruptFile(fname, f"not a readable .npy file ({exc})") from exc
        _check_arrays(arrays, manifest)
        for name in ("centroids", "cutoffs", "weights", "list_offsets"):
            arrays[name] = np.array(arrays[name])  # small and read by every query
        return cls(nbits=int(manifest["nbits"]), seed=int(manifest["seed"]), **arrays)


def _top(docs: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (score descending, row ascending on ties)."""
    if len(docs) > n:
        part = np.argpartition(-scores, n - 1)[:n]
        docs, scores = docs[part], scores[part]
    order = np.lexsort((docs, -scores))
    return docs[order].astype(np.int64, copy=False), scores[order].astype(np.float32,
                                                                          copy=False)


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CorruptFile(path.name, "missing")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFile(path.name, f"not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CorruptFile(path.name, f"expected format {FORMAT_NAME!r}")
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        raise FormatVersionError(path.name, f"expected format version {FORMAT_VERSION}, got "
                                            f"{version!r}")
    keys = ("nbits", "seed", "dim", "n_centroids", "n_docs", "n_tokens", "files")
    if any(k not in manifest for k in keys) or not isinstance(manifest["files"], dict):
        raise CorruptFile(path.name, f"expected keys {list(keys)}")
    return manifest


def _check_arrays(a: dict[str, np.ndarray], m: dict[str, Any]) -> None:
    """Shapes and dtypes agree with the manifest (a consistent set of files)."""
    k, d, n, nd, nbits = m["n_centroids"], m["dim"], m["n_tokens"], m["n_docs"], m["nbits"]
    if nbits not in NBITS:
        raise CorruptFile(MANIFEST, f"nbits: expected one of {NBITS}, got {nbits!r}")
    b = 1 << nbits
    expect = {
        "centroids": ((k, d), (np.float32,)),
        "cutoffs": ((b - 1,), (np.float32,)),
        "weights": ((b,), (np.float32,)),
        "list_offsets": ((k + 1,), (np.int64,)),
        "post_docs": ((n,), (np.uint16, np.uint32)),
        "post_codes": ((n, code_bytes(d, nbits)), (np.uint8,)),
        "token_cids": ((n,), (np.uint16, np.uint32)),
        "token_pos": ((n,), (np.uint32,)),
        "doc_offsets": ((nd + 1,), (np.int64,)),
    }
    for name, (shape, dtypes) in expect.items():
        arr = a[name]
        if arr.shape != shape or arr.dtype not in [np.dtype(t) for t in dtypes]:
            raise CorruptFile(f"{name}.npy", f"expected shape {shape} and dtype in "
                                             f"{[np.dtype(t).name for t in dtypes]}, got "
                                             f"{arr.shape} {arr.dtype}")
    # the kernels index without bounds checks: make sure every index is in range
    lo = a["list_offsets"]
    if lo[0] != 0 or lo[-1] != n or np.any(np.diff(lo) < 0):
        raise CorruptFile("list_offsets.npy", f"expected non-decreasing bounds 0 .. {n}")
    if n and int(a["post_docs"].max()) >= nd:
        raise CorruptFile("post_docs.npy", f"expected document rows < {nd}")
    if n and int(a["token_cids"].max()) >= k:
        raise CorruptFile("token_cids.npy", f"expected centroid ids < {k}")
