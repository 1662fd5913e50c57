"""Streaming top-k over blocks of scores (higher is better).

``TopK`` keeps, per query, the k best (score, row id) pairs seen so far; blocks of a score
matrix are pushed in any order and ``result()`` returns them sorted best first. Rows to skip
are given as ``-inf`` scores: they never enter the result, so a query with fewer than k
candidates ends with trailing ``(-inf, -1)`` slots.

>>> import numpy as np
>>> t = TopK(nq=1, k=2, backend="numpy")
>>> t.push(np.array([[0.1, 0.9, 0.5]], dtype=np.float32), ids=np.array([10, 11, 12]))
>>> t.result()[1].tolist()
[[11, 12]]
"""

from __future__ import annotations

import numpy as np

from ._numba import lazy_njit, register_warmer, resolve_backend

prange = range  # replaced by numba.prange when the kernel is compiled

__all__ = ["TopK", "push_numpy"]


def push_numpy(
    heap_s: np.ndarray, heap_i: np.ndarray, scores: np.ndarray, ids: np.ndarray
) -> None:
    """Reference: merge a block into the running top-k with argpartition; ``ids`` is one row
    (n,) for every query or one row per query (nq, n)."""
    k = heap_s.shape[1]
    all_s = np.concatenate([heap_s, scores], axis=1)
    all_i = np.concatenate([heap_i, np.broadcast_to(ids, scores.shape)], axis=1)
    part = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
    heap_s[:] = np.take_along_axis(all_s, part, axis=1)
    heap_i[:] = np.take_along_axis(all_i, part, axis=1)
    heap_i[heap_s == -np.inf] = -1


def _push_loop(heap_s, heap_i, scores, ids):  # pragma: no cover
    nq, k = heap_s.shape
    n = scores.shape[1]
    for q in prange(nq):
        hs = heap_s[q]
        hi = heap_i[q]
        row = scores[q]
        for j in range(n):
            s = row[j]
            if s > hs[0]:
                # replace the root of the min-heap and sift it down
                pos = 0
                while True:
                    child = 2 * pos + 1
                    if child >= k:
                        break
                    if child + 1 < k and hs[child + 1] < hs[child]:
                        child += 1
                    if hs[child] >= s:
                        break
                    hs[pos] = hs[child]
                    hi[pos] = hi[child]
                    pos = child
                hs[pos] = s
                hi[pos] = ids[j]


def _push_rows_loop(heap_s, heap_i, scores, ids):  # pragma: no cover
    """``_push_loop`` with one id row per query (ids (nq, n))."""
    nq, k = heap_s.shape
    n = scores.shape[1]
    for q in prange(nq):
        hs = heap_s[q]
        hi = heap_i[q]
        row = scores[q]
        rid = ids[q]
        for j in range(n):
            s = row[j]
            if s > hs[0]:
                pos = 0
                while True:
                    child = 2 * pos + 1
                    if child >= k:
                        break
                    if child + 1 < k and hs[child + 1] < hs[child]:
                        child += 1
                    if hs[child] >= s:
                        break
                    hs[pos] = hs[child]
                    hi[pos] = hi[child]
                    pos = child
                hs[pos] = s
                hi[pos] = rid[j]


# one parallel region costs far more than a small push: few queries take the serial twin
_push_parallel = lazy_njit(parallel=True)(_push_loop)
_push_serial = lazy_njit()(_push_loop)
_push_rows_parallel = lazy_njit(parallel=True)(_push_rows_loop)
_push_rows_serial = lazy_njit()(_push_rows_loop)
_PARALLEL_MIN_WORK = 1 << 18  # scores per push below which threads do not pay


@register_warmer
def _warm_push() -> None:
    heap_s, heap_i = np.full((1, 2), -np.inf, np.float32), np.full((1, 2), -1, np.int64)
    _push_serial(heap_s, heap_i, np.zeros((1, 3), np.float32), np.arange(3, dtype=np.int64))
    _push_rows_serial(heap_s, heap_i, np.zeros((1, 3), np.float32),
                      np.arange(3, dtype=np.int64)[None])


class TopK:
    """Running top-k for ``nq`` queries."""

    def __init__(self, nq: int, k: int, *, backend: str = "auto") -> None:
        self.backend = resolve_backend(backend, light=True)
        self.shape = (nq, k)
        self._heaps: tuple[np.ndarray, np.ndarray] | None = None  # made on first use
        self.pushed = False  # whether any candidate was pushed yet

    @property
    def scores(self) -> np.ndarray:
        return self._arrays()[0]

    @property
    def ids(self) -> np.ndarray:
        return self._arrays()[1]

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._heaps is None:
            self._heaps = (np.full(self.shape, -np.inf, dtype=np.float32),
                           np.full(self.shape, -1, dtype=np.int64))
        return self._heaps

    def floor(self, row: int) -> float:
        """The score a candidate of query ``row`` must beat to enter its top k now: the k-th
        best so far (``-inf`` until k are held)."""
        if not self.pushed:
            return -np.inf
        heap = self._arrays()[0][row]  # (numba's pushes keep a min-heap: the root)
        return float(heap[0] if self.backend == "numba" else heap.min())

    def push(self, scores: np.ndarray, ids: np.ndarray, *, row: int | None = None) -> None:
        """Merge ``scores`` (nq, n) whose columns are the rows ``ids``: one row (n,) shared
        by every query, or one row per query (nq, n) (e.g. each query's own candidates).

        With ``row=i``, ``scores`` is (1, n) and is merged into query i's top-k only.
        """
        if scores.shape[1] == 0:
            return
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        heap_s, heap_i = self._arrays()
        if row is not None:
            heap_s, heap_i = heap_s[row:row + 1], heap_i[row:row + 1]
        if ids.ndim == 2 and len(ids) == 1:
            ids = ids[0]  # one row for every query, given as (1, n)
        per_query = ids.ndim == 2
        if scores.shape[0] != len(heap_s) or ids.ndim not in (1, 2) or \
                ids.shape[-1] != scores.shape[1] or (per_query and len(ids) != len(scores)):
            raise ValueError(f"TopK.push: expected scores ({len(heap_s)}, n) with ids (n,) or "
                             f"({len(heap_s)}, n), got {scores.shape} and {ids.shape}")
        self.pushed = True
        if self.backend == "numba":
            parallel = len(heap_s) > 1 and scores.size >= _PARALLEL_MIN_WORK
            if per_query:
                kernel = _push_rows_parallel if parallel else _push_rows_serial
            else:
                kernel = _push_parallel if parallel else _push_serial
            kernel(heap_s, heap_i, scores, ids)
        else:
            push_numpy(heap_s, heap_i, scores, ids)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each (nq, k), best first; empty slots are ``(-inf, -1)``."""
        heap_s, heap_i = self._arrays()
        if len(heap_s) == 1:  # (one query: plain indexing is cheaper)
            order1 = np.argsort(-heap_s[0], kind="stable")
            s1, i1 = heap_s[0][order1][None], heap_i[0][order1][None]
            i1[s1 == -np.inf] = -1
            return s1, i1
        order = np.argsort(-heap_s, axis=1, kind="stable")
        s = np.take_along_axis(heap_s, order, axis=1)
        i = np.take_along_axis(heap_i, order, axis=1)
        i[s == -np.inf] = -1
        return s, i
