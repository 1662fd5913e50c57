"""The search plan of a Multi field's sealed segment: first stage, then exact MaxSim rerank.

A :class:`MultiIndex` is built per sealed segment from the segment's token sets and a
:class:`~polyvec.index_spec.MultiIndexSpec`:

* :class:`FDEIndex`: MUVERA encodings of the documents (:mod:`.fde`) in a single-vector stack
  of :mod:`polyvec.index` (flat, HNSW or IVF, optionally PQ/SQ8/F16-compressed), searched
  with the query encodings;
* :class:`TokenIndexEngine`: the compressed token index (:mod:`.token_index`), candidates by
  lookup-table scoring without decompression.

``search`` then reranks the top ``rerank_depth`` of the ``candidates`` first-stage rows by
exact MaxSim from the segment's (memory-mapped) token vectors (:func:`.rerank.rerank_maxsim`,
which prefetches their pages first). The plan, per segment:

1. segments with fewer than :data:`EXACT_SEGMENT_ROWS` documents get no index and are scanned
   exactly (so is the growing segment) -- the caller's side of the plan;
2. a selection (filter and tombstones, a bool mask over the rows) that keeps at most
   ``rerank_depth`` rows, or under :data:`EXACT_BELOW` of them, is scored exactly over the
   selected rows;
3. otherwise first stage (honoring the selection: an unselected row is never a candidate) +
   exact rerank.

Everything an index holds is rebuilt from its folder (``save``/``load``); FDE random state is
rebuilt from the spec's seed and never stored.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import CorruptFile, DimensionMismatch, InvalidArgument
from ..index import QueryParams, build_index, load_index
from ..index.base import EXACT_BELOW
from ..index_spec import MultiIndexSpec
from .fde import FDE
from .rerank import rerank_maxsim

__all__ = ["MultiIndex", "FDEIndex", "TokenIndexEngine", "MultiQueryParams", "build_multi_index",
           "load_multi_index", "EXACT_SEGMENT_ROWS", "EXACT_BELOW", "DEFAULT_CANDIDATES"]

#: segments with fewer documents are scanned exactly: no index is built for them
EXACT_SEGMENT_ROWS = 1_000
#: first-stage candidates per query when the call does not say (at least 4 * k)
DEFAULT_CANDIDATES = 100
HEADER = "mv_header.json"
FORMAT_VERSION = 1


def _opt_int(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer)
                              or value < 1):
        raise InvalidArgument(f"search: expected {name} None or an int >= 1, got {value!r}")


@dataclass(frozen=True)
class MultiQueryParams:
    """Per-call knobs of a multi-vector index search; ``None`` means the default.

    ``candidates``: first-stage rows per query (default ``max(DEFAULT_CANDIDATES, 4 * k)``);
    ``rerank_depth``: how many of them (best first-stage scores first) get exact MaxSim
    (default all, at least ``k``); ``nprobe``: IVF cells (FDE) or centroids per query token
    (token index); ``ef``: HNSW breadth (FDE).
    """

    candidates: int | None = None
    rerank_depth: int | None = None
    nprobe: int | None = None
    ef: int | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            _opt_int(name, value)

    def resolved(self, k: int) -> tuple[int, int]:
        """``(candidates, rerank_depth)`` for a top-``k`` search."""
        cand = self.candidates or max(DEFAULT_CANDIDATES, 4 * k)
        depth = min(self.rerank_depth or cand, cand)
        return max(cand, k), max(depth, k)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MultiIndex(ABC):
    """One built first stage over the ``n`` documents (``dim``-d tokens) of a segment."""

    kind: ClassVar[str]

    def __init__(self, spec: MultiIndexSpec, dim: int, n: int) -> None:
        self.spec = spec
        self.dim = dim
        self.n = n

    # -- build / files -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def _build(cls, tokens: np.ndarray, offsets: np.ndarray, spec: MultiIndexSpec
               ) -> MultiIndex: ...

    def save(self, folder: Path) -> None:
        """Write the index into ``folder`` (created): a JSON header and the stage's files."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save(folder)
        head = {"format": FORMAT_VERSION, "kind": self.kind, "spec": self.spec.to_dict(),
                "dim": self.dim, "n": self.n}
        (folder / HEADER).write_text(json.dumps(head, sort_keys=True))

    @abstractmethod
    def _save(self, folder: Path) -> None: ...

    @classmethod
    @abstractmethod
    def _load(cls, spec: MultiIndexSpec, dim: int, n: int, folder: Path) -> MultiIndex: ...

    @property
    @abstractmethod
    def nbytes_ram(self) -> int:
        """Bytes of the candidate-generation structures (rerank vectors not included)."""

    # -- search --------------------------------------------------------------------------------
    @abstractmethod
    def _first_stage(self, queries: list[np.ndarray], n: int, params: MultiQueryParams,
                     selection: np.ndarray | None) -> list[np.ndarray]:
        """Per query, up to ``n`` candidate rows, best first, all selected."""

    def search(self, queries: list[np.ndarray], k: int, tokens: np.ndarray,
               offsets: np.ndarray, *, params: MultiQueryParams | None = None,
               selection: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Top-``k`` rows per query by exact MaxSim of the first stage's candidates.

        ``tokens``/``offsets`` are the segment's token vectors (memory-mapped is fine) that
        this index was built from; ``selection`` a bool mask over its rows. Returns
        ``(scores (nq, k) f32, rows (nq, k) int64, info)``, ``(-inf, -1)`` padding.
        """
        p = MultiQueryParams() if params is None else params
        if not isinstance(p, MultiQueryParams):
            raise InvalidArgument(f"search: expected params a MultiQueryParams, got {p!r}")
        if len(offsets) - 1 != self.n or tokens.ndim != 2 or tokens.shape[1] != self.dim:
            raise DimensionMismatch(f"tokens: expected {self.n} documents of {self.dim}-d "
                                    f"tokens, got {len(offsets) - 1} of shape {tokens.shape}")
        sel = None
        if selection is not None:
            sel = np.asarray(selection)
            if sel.dtype != np.bool_ or sel.shape != (self.n,):
                raise InvalidArgument(f"selection: expected a bool array of shape ({self.n},), "
                                      f"got {sel.dtype} {sel.shape}")
            sel = None if sel.all() else sel
        cand, depth = p.resolved(k)
        nq = len(queries)
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        rows = np.full((nq, k), -1, dtype=np.int64)
        n_sel = self.n if sel is None else int(np.count_nonzero(sel))
        info: dict[str, Any] = {"params": {**p.to_dict(), "candidates": cand,
                                           "rerank_depth": depth},
                                "recall_estimate": None, "selected": n_sel}
        if n_sel == 0:
            return scores, rows, {**info, "stages": [], "candidates": 0, "reranked": 0}
        if sel is not None and (n_sel <= depth or n_sel < EXACT_BELOW * self.n):
            allowed = np.flatnonzero(sel)
            lists = [allowed] * nq
            info["stages"] = ["exact-maxsim(selected)"]
        else:
            lists = [c[:depth] for c in self._first_stage(queries, cand, p, sel)]
            info["stages"] = [self.kind, "maxsim-rerank"]
        for i, (q, c) in enumerate(zip(queries, lists, strict=True)):
            r, s = rerank_maxsim(q, tokens, offsets, c, k)
            rows[i, :len(r)], scores[i, :len(r)] = r, s
        info["candidates"] = int(sum(len(c) for c in lists))
        info["reranked"] = info["candidates"]
        return scores, rows, info


class FDEIndex(MultiIndex):
    """MUVERA FDEs of the documents in a single-vector stack (inner product)."""

    kind = "fde"

    def __init__(self, spec: MultiIndexSpec, dim: int, n: int) -> None:
        super().__init__(spec, dim, n)
        if spec.fde is None:
            raise InvalidArgument(f"FDEIndex: expected a spec with fde=..., got {spec!r}")
        self.fde = FDE(spec.fde, dim)
        self.index: Any = None

    @classmethod
    def _build(cls, tokens: np.ndarray, offsets: np.ndarray, spec: MultiIndexSpec) -> FDEIndex:
        out = cls(spec, tokens.shape[1], len(offsets) - 1)
        docs = out.fde.encode_documents((tokens, offsets))
        stack = spec.stack
        if stack is None:  # pragma: no cover - MultiIndexSpec fills it
            raise InvalidArgument("FDE index without a stack")
        stack.check_dim(docs.shape[1])
        out.index = build_index(docs, stack, "dot")
        return out

    def _save(self, folder: Path) -> None:
        for key, arr in self.index.to_arrays().items():
            np.save(folder / f"index.{key}.npy", np.ascontiguousarray(arr), allow_pickle=False)

    @classmethod
    def _load(cls, spec: MultiIndexSpec, dim: int, n: int, folder: Path) -> FDEIndex:
        out = cls(spec, dim, n)
        arrays = {p.name[6:-4]: np.load(p, mmap_mode="r", allow_pickle=False)
                  for p in folder.glob("index.*.npy")}
        out.index = load_index(spec.stack, arrays, "dot")  # type: ignore[arg-type]
        if out.index.n != n:
            raise CorruptFile(str(folder), f"expected an FDE index of {n} rows, got "
                                           f"{out.index.n}")
        return out

    @property
    def nbytes_ram(self) -> int:
        return int(self.index.bytes_in_ram())

    def _first_stage(self, queries: list[np.ndarray], n: int, params: MultiQueryParams,
                     selection: np.ndarray | None) -> list[np.ndarray]:
        enc = self.fde.encode_queries(queries)
        qp = QueryParams(ef=params.ef, nprobe=params.nprobe)
        _, rows = self.index.search(enc, min(n, self.n), params=qp, selection=selection)
        return [r[r >= 0] for r in rows]


class TokenIndexEngine(MultiIndex):
    """The compressed token index (WARP-style lookup-table candidate scoring)."""

    kind = "token_index"
    DEFAULT_NPROBE = 4

    def __init__(self, spec: MultiIndexSpec, dim: int, n: int, ti: Any) -> None:
        super().__init__(spec, dim, n)
        self.ti = ti

    @classmethod
    def _build(cls, tokens: np.ndarray, offsets: np.ndarray, spec: MultiIndexSpec
               ) -> TokenIndexEngine:
        from .token_index import TokenIndex

        t = spec.token_index
        if t is None:  # pragma: no cover - MultiIndexSpec checks it
            raise InvalidArgument("token index spec missing")
        ti = TokenIndex.build(np.asarray(tokens, dtype=np.float32), offsets, nbits=t.nbits,
                              n_centroids=t.n_centroids, seed=t.seed)
        return cls(spec, tokens.shape[1], len(offsets) - 1, ti)

    def _save(self, folder: Path) -> None:
        self.ti.save(folder / "tokens")

    @classmethod
    def _load(cls, spec: MultiIndexSpec, dim: int, n: int, folder: Path) -> TokenIndexEngine:
        from .token_index import TokenIndex

        ti = TokenIndex.load(folder / "tokens", verify=False)  # the caller verified the files
        if ti.n_docs != n or ti.dim != dim:
            raise CorruptFile(str(folder), f"expected a token index of {n} documents of "
                                           f"{dim}-d, got {ti.n_docs} of {ti.dim}-d")
        return cls(spec, dim, n, ti)

    @property
    def nbytes_ram(self) -> int:
        return int(self.ti.nbytes_ram)

    def _first_stage(self, queries: list[np.ndarray], n: int, params: MultiQueryParams,
                     selection: np.ndarray | None) -> list[np.ndarray]:
        nprobe = params.nprobe or self.DEFAULT_NPROBE
        return [self.ti.candidates(q, n, nprobe=nprobe, selection=selection)[0]
                for q in queries]


def _engine(spec: MultiIndexSpec) -> type[MultiIndex]:
    if not isinstance(spec, MultiIndexSpec):
        raise InvalidArgument(f"expected a MultiIndexSpec, got {spec!r}")
    return FDEIndex if spec.fde is not None else TokenIndexEngine


def build_multi_index(tokens: np.ndarray, offsets: np.ndarray, spec: MultiIndexSpec
                      ) -> MultiIndex:
    """Build ``spec``'s first stage over the documents ``tokens[offsets[i]:offsets[i+1]]``."""
    tokens = np.asarray(tokens)
    offsets = np.asarray(offsets, dtype=np.int64)
    if tokens.ndim != 2 or len(offsets) < 2 or int(offsets[-1]) != len(tokens):
        raise DimensionMismatch(f"expected tokens (n, d) and offsets ending at their count, got "
                                f"{tokens.shape} and {len(offsets)} offsets")
    return _engine(spec)._build(tokens, offsets, spec)


def load_multi_index(spec: MultiIndexSpec, folder: Path) -> MultiIndex:
    """Open an index written by :meth:`MultiIndex.save`; its header must match ``spec``."""
    folder = Path(folder)
    try:
        head = json.loads((folder / HEADER).read_text())
        stored = MultiIndexSpec.from_dict(head["spec"])
        dim, n, version = int(head["dim"]), int(head["n"]), head["format"]
    except FileNotFoundError:
        raise CorruptFile(str(folder / HEADER), "file is missing") from None
    except (ValueError, KeyError, TypeError, InvalidArgument) as e:
        raise CorruptFile(str(folder / HEADER), f"unreadable header: {e}") from None
    if version != FORMAT_VERSION:
        raise CorruptFile(str(folder / HEADER), f"expected format {FORMAT_VERSION}, got "
                                                f"{version!r}")
    if stored != spec:
        raise CorruptFile(str(folder), f"built for {stored!r}, not for {spec!r}")
    return _engine(spec)._load(spec, dim, n, folder)
