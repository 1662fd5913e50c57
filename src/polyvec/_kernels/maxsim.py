"""MaxSim (late-interaction) reduction.

Given the similarity matrix ``sim`` (m query tokens x T document tokens, documents laid out
contiguously with ``offsets`` of length ndoc + 1), the MaxSim score of document d is
``sum_i max_{offsets[d] <= j < offsets[d+1]} sim[i, j]``. The matrix product itself is left
to BLAS; these kernels do the segmented max-and-sum.
"""

from __future__ import annotations

import numpy as np

from ._numba import lazy_njit, resolve_backend
from .widen import f16_to_f32

prange = range  # replaced by numba.prange when the kernel is compiled

__all__ = ["maxsim_numpy", "maxsim_reduce", "maxsim_f16", "maxsim_f16_numpy"]


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


# ----------------------------------------------------------------------------- float16 tokens
def maxsim_f16_numpy(q: np.ndarray, tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Reference twin of :func:`maxsim_f16`: widen, multiply, reduce."""
    return maxsim_numpy(q @ np.asarray(tokens, dtype=np.float32).T, offsets)


def _maxsim_f16_loop(q, bits, offsets, out):  # pragma: no cover
    # a document's tokens are widened exactly (widen.f16_to_f32, inlined) two at a time into
    # a buffer, then scored against the query tokens
    # four at a time: eight independent dot products (vectorized over d) share each load of a
    # query row and of a widened token, which keeps the loop on the FMA units rather than on
    # the loads (one query token by four document tokens was load-bound and ~25% slower)
    m, d = q.shape
    for doc in prange(offsets.shape[0] - 1):
        buf = np.zeros((2, d), np.float32)
        best = np.full(m, -np.inf, np.float32)
        lo = offsets[doc]
        hi = offsets[doc + 1]
        for t0 in range(lo, hi, 2):
            nt = min(2, hi - t0)
            for r in range(nt):
                for j in range(d):
                    buf[r, j] = f16_to_f32(bits[t0 + r, j])
            if nt == 1:  # a lone last token is scored twice
                for j in range(d):
                    buf[1, j] = buf[0, j]
            i = 0
            while i + 4 <= m:
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                b0 = np.float32(0.0)
                b1 = np.float32(0.0)
                c0 = np.float32(0.0)
                c1 = np.float32(0.0)
                e0 = np.float32(0.0)
                e1 = np.float32(0.0)
                for j in range(d):
                    u0 = buf[0, j]
                    u1 = buf[1, j]
                    x = q[i, j]
                    a0 += x * u0
                    a1 += x * u1
                    x = q[i + 1, j]
                    b0 += x * u0
                    b1 += x * u1
                    x = q[i + 2, j]
                    c0 += x * u0
                    c1 += x * u1
                    x = q[i + 3, j]
                    e0 += x * u0
                    e1 += x * u1
                best[i] = max(best[i], max(a0, a1))
                best[i + 1] = max(best[i + 1], max(b0, b1))
                best[i + 2] = max(best[i + 2], max(c0, c1))
                best[i + 3] = max(best[i + 3], max(e0, e1))
                i += 4
            while i < m:
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                for j in range(d):
                    x = q[i, j]
                    a0 += x * buf[0, j]
                    a1 += x * buf[1, j]
                best[i] = max(best[i], max(a0, a1))
                i += 1
        total = np.float32(0.0)
        for i in range(m):
            total += best[i]
        out[doc] = total


# reassociation (and contraction) let LLVM vectorize the dot products; no nnan/ninf, so the
# inf/NaN of the widening stay as they are
_F16_MATH = {"reassoc", "contract", "nsz"}
_maxsim_f16_parallel = lazy_njit(parallel=True, fastmath=_F16_MATH)(_maxsim_f16_loop)
_maxsim_f16_serial = lazy_njit(fastmath=_F16_MATH)(_maxsim_f16_loop)


def maxsim_f16(q: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, *,
               backend: str = "auto") -> np.ndarray:
    """MaxSim of the query tokens ``q`` (m, d) against every document of float16 ``tokens``
    (T, d), read in place: each token is widened and scored in float32 inside the kernel,
    with no float32 copy of the tokens and no (m, T) similarity block. Every document must
    have at least one token."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if resolve_backend(backend) == "numpy" or not tokens.flags.c_contiguous:
        return maxsim_f16_numpy(q, tokens, offsets)
    out = np.empty(len(offsets) - 1, dtype=np.float32)
    if len(out):
        work = (int(offsets[-1]) - int(offsets[0])) * len(q)
        kernel = _maxsim_f16_parallel if work >= _PARALLEL_MIN_WORK else _maxsim_f16_serial
        kernel(q, tokens.view(np.uint16), offsets, out)
    return out
