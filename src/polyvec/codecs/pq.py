"""Product quantization (faiss ``ProductQuantizer``), trained from a seed.

The vector is cut into ``m`` sub-vectors of ``dim_ // m`` dims; each is replaced by the id of
its nearest of ``2**nbits`` centroids learned by k-means on the collection sample. Codes use
faiss's bit layout (ids packed least-significant bit first, ``ceil(m * nbits / 8)`` bytes).
Only the centroids are persisted (float32 ``(m, 2**nbits, dim_ // m)``): faiss rebuilds its
quantizer from them, and decoding and scoring are plain numpy gathers that need no faiss.

``scores`` is asymmetric distance computation: per query a table of sub-vector scores
against every centroid, summed over the code's ids (equal to scoring the decoded vectors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgument
from ..index_spec import PQ
from .base import Codec

__all__ = ["PQCodec"]

_TABLE_BYTES = 64 << 20  # score tables held at once (queries x m x 2**nbits floats)
_GATHER_ROWS = 1 << 16  # code rows unpacked at once


class PQCodec(Codec):
    """``PQ(m, nbits, seed)``; fitted ``centroids_`` (m, 2**nbits, dim_ // m)."""

    spec_type = PQ
    spec: PQ
    centroids_: np.ndarray

    def __init__(self, spec: PQ) -> None:
        super().__init__(spec)
        self._pq: Any = None

    @property
    def code_size(self) -> int:
        return -(-self.spec.m * self.spec.nbits // 8)

    @property
    def ksub(self) -> int:
        return int(1 << self.spec.nbits)

    def _check_shape(self, d: int, n: int | None = None) -> None:
        m = self.spec.m
        if d % m:
            raise InvalidArgument(f"PQ{m}: expected m to divide the dimension {d}, got "
                                  f"{d} % {m} = {d % m}")
        if n is not None and n < self.ksub:
            raise InvalidArgument(f"PQ{m}x{self.spec.nbits}: expected at least {self.ksub} "
                                  f"training vectors (2**nbits), got {n}")

    def _fit(self, x: np.ndarray) -> None:
        import faiss

        self._check_shape(x.shape[1], len(x))
        pq = faiss.ProductQuantizer(x.shape[1], self.spec.m, self.spec.nbits)
        pq.cp.seed = self.spec.seed
        pq.train(x)
        self.centroids_ = faiss.vector_to_array(pq.centroids).astype(np.float32).reshape(
            self.spec.m, self.ksub, -1)
        self._pq = pq

    def _faiss(self) -> Any:
        if self._pq is None:
            import faiss

            pq = faiss.ProductQuantizer(self.dim_, self.spec.m, self.spec.nbits)
            faiss.copy_array_to_vector(self.centroids_.ravel(), pq.centroids)
            self._pq = pq
        return self._pq

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._faiss().compute_codes(x), dtype=np.uint8).reshape(
            len(x), self.code_size)

    def unpack(self, codes: np.ndarray) -> np.ndarray:
        """Centroid ids (n, m) as int64, from codes (n, code_size)."""
        m, nbits = self.spec.m, self.spec.nbits
        if nbits == 8:
            return codes.astype(np.int64)
        bits = np.unpackbits(codes, axis=1, bitorder="little")[:, :m * nbits]
        weights = np.left_shift(1, np.arange(nbits, dtype=np.int64))
        return bits.reshape(len(codes), m, nbits).astype(np.int64) @ weights

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        ids = self.unpack(codes)
        sub = self.centroids_[np.arange(self.spec.m)[None, :], ids]  # (n, m, dsub)
        return sub.reshape(len(codes), self.dim_)

    def tables(self, q: np.ndarray, metric: str) -> np.ndarray:
        """Per-query score tables (nq, m, 2**nbits): sub-vector dot or minus squared distance."""
        qs = q.reshape(len(q), self.spec.m, -1)
        tab = np.einsum("qms,mks->qmk", qs, self.centroids_, optimize=True)
        if metric == "l2":
            tab *= 2.0
            tab -= np.einsum("qms,qms->qm", qs, qs)[:, :, None]
            tab -= np.einsum("mks,mks->mk", self.centroids_, self.centroids_)[None]
        return tab.astype(np.float32, copy=False)

    def _scores(self, q: np.ndarray, codes: np.ndarray, metric: str) -> np.ndarray:
        m = self.spec.m
        out = np.zeros((len(q), len(codes)), dtype=np.float32)
        qblock = max(1, _TABLE_BYTES // (4 * m * self.ksub))
        for qlo in range(0, len(q), qblock):
            tab = self.tables(q[qlo:qlo + qblock], metric)
            for lo in range(0, len(codes), _GATHER_ROWS):
                ids = self.unpack(codes[lo:lo + _GATHER_ROWS])
                acc = out[qlo:qlo + qblock, lo:lo + _GATHER_ROWS]
                for j in range(m):
                    acc += tab[:, j, ids[:, j]]
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids_}

    def _load(self, arrays: dict[str, np.ndarray], get: Any) -> None:
        self._check_shape(self.dim_)
        self.centroids_ = get("centroids", np.float32,
                              (self.spec.m, self.ksub, self.dim_ // self.spec.m))
