"""MaxSim (late-interaction) reduction.

Given the similarity matrix ``sim`` (m query tokens x T document tokens, documents laid out
contiguously with ``offsets`` of length ndoc + 1), the MaxSim score of document d is
``sum_i max_{offsets[d] <= j < offsets[d+1]} sim[i, j]``. The matrix product itself is left
to BLAS; these kernels do the segmented max-and-sum.
"""

from __future__ import annotations

import numpy as np

from ._numba import lazy_njit, resolve_backend

prange = range  # replaced by numba.prange when the kernel is compiled

__all__ = ["maxsim_numpy", "maxsim_reduce"]


def maxsim_numpy(sim: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Reference twin. Every document must have at least one token."""
    if len(offsets) <= 1:
        return np.zeros(0, dtype=np.float32)
    per_doc_max = np.maximum.reduceat(sim, offsets[:-1], axis=1)
    return per_doc_max.sum(axis=0, dtype=np.float32)


def _maxsim_loop(sim, offsets, out):  # pragma: no cover
    m = sim.shape[0]
    ndoc = offsets.shape[0] - 1
    for d in prange(ndoc):
        lo = offsets[d]
        hi = offsets[d + 1]
        total = np.float32(0.0)
        for i in range(m):
            best = sim[i, lo]
            for j in range(lo + 1, hi):
                if sim[i, j] > best:
                    best = sim[i, j]
            total += best
        out[d] = total


_maxsim_parallel = lazy_njit(parallel=True)(_maxsim_loop)
_maxsim_serial = lazy_njit()(_maxsim_loop)
_PARALLEL_MIN_WORK = 1 << 18  # similarities per call below which threads do not pay


def maxsim_reduce(sim: np.ndarray, offsets: np.ndarray, *, backend: str = "auto") -> np.ndarray:
    """Per-document MaxSim scores from a query-by-token similarity matrix."""
    if resolve_backend(backend) == "numpy":
        return maxsim_numpy(sim, offsets)
    out = np.empty(len(offsets) - 1, dtype=np.float32)
    if len(out):
        kernel = _maxsim_parallel if sim.size >= _PARALLEL_MIN_WORK else _maxsim_serial
        kernel(np.ascontiguousarray(sim, dtype=np.float32),
               np.ascontiguousarray(offsets, dtype=np.int64), out)
    return out
