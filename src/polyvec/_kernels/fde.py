"""MUVERA fixed-dimensional encoding: the per-bucket aggregation of projected tokens.

Inputs, for ``T`` tokens laid out per set by ``offsets`` (length ``n + 1``):

* ``ids`` (T, R) int32: the SimHash bucket of each token in each repetition, in ``[0, B)``
  where bit ``j`` of the id is the sign bit of the ``j``-th Gaussian (plain binary, no Gray
  code), so the Hamming distance between two buckets is ``popcount(a ^ b)``;
* ``proj`` (T, R, p) float32: each token's inner projection per repetition.

Output ``out`` (n, R, B, p): per set and repetition, block ``b`` is the sum (queries) or the
mean (documents, ``average=True``) of the projections of the set's tokens in bucket ``b``.
With ``fill=True`` (documents) an empty block takes the projection of the set's token whose
bucket is nearest to ``b`` in Hamming distance (the first such token on ties).

``fde_aggregate_numpy`` is the reference twin; ``fde_aggregate`` runs the numba kernel.

>>> ids = np.array([[0], [3]], dtype=np.int32)             # 2 tokens, 1 repetition, B = 4
>>> proj = np.array([[[1.0]], [[5.0]]], dtype=np.float32)
>>> off = np.array([0, 2], dtype=np.int64)
>>> fde_aggregate_numpy(ids, proj, off, 4, average=True, fill=True)[0, 0, :, 0].tolist()
[1.0, 1.0, 1.0, 5.0]
>>> fde_aggregate(ids, proj, off, 4, average=False, fill=False)[0, 0, :, 0].tolist()
[1.0, 0.0, 0.0, 5.0]
"""

from __future__ import annotations

import numpy as np

from ._numba import lazy_njit, resolve_backend

prange = range  # replaced by numba.prange when the kernel is compiled

__all__ = ["fde_aggregate", "fde_aggregate_numpy", "popcount"]


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each non-negative integer (int32)."""
    return np.bitwise_count(np.asarray(x)).astype(np.int32)


def _check(ids: np.ndarray, proj: np.ndarray, offsets: np.ndarray, n_buckets: int) -> None:
    if ids.ndim != 2 or proj.ndim != 3 or ids.shape != proj.shape[:2]:
        raise ValueError(f"fde: expected ids (T, R) and proj (T, R, p), got {ids.shape} and "
                         f"{proj.shape}")
    if offsets.ndim != 1 or len(offsets) < 1 or int(offsets[-1]) != len(ids):
        raise ValueError(f"fde: expected offsets ending at {len(ids)}, got {offsets[-1:]}")
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= n_buckets):
        raise ValueError(f"fde: expected bucket ids in [0, {n_buckets}), got "
                         f"[{ids.min()}, {ids.max()}]")


def fde_aggregate_numpy(ids: np.ndarray, proj: np.ndarray, offsets: np.ndarray,
                        n_buckets: int, *, average: bool, fill: bool) -> np.ndarray:
    """Reference twin: vectorized per set (sums by ``np.add.at``, fill by a full Hamming
    table of the set's tokens against every bucket)."""
    _check(ids, proj, offsets, n_buckets)
    n, (_, reps, p) = len(offsets) - 1, proj.shape
    out = np.zeros((n, reps, n_buckets, p), dtype=np.float32)
    buckets = np.arange(n_buckets, dtype=np.int32)
    rep = np.arange(reps)
    for d in range(n):
        lo, hi = int(offsets[d]), int(offsets[d + 1])
        if hi == lo:
            continue
        i, pr = ids[lo:hi], proj[lo:hi]
        sums = np.zeros((reps, n_buckets, p), dtype=np.float32)
        counts = np.zeros((reps, n_buckets), dtype=np.int64)
        np.add.at(sums, (rep[None, :], i), pr)
        np.add.at(counts, (rep[None, :], i), 1)
        if average:
            nz = counts > 0
            sums[nz] /= counts[nz][:, None].astype(np.float32)
        if fill:
            dist = popcount(i[:, :, None] ^ buckets[None, None, :])  # (t, R, B)
            nearest = dist.argmin(axis=0)  # (R, B): first token at the least distance
            r_e, b_e = np.nonzero(counts == 0)
            sums[r_e, b_e] = pr[nearest[r_e, b_e], r_e]
        out[d] = sums
    return out


def _fde_loop(ids, proj, offsets, n_buckets, average, fill, out):  # pragma: no cover
    n = offsets.shape[0] - 1
    reps = ids.shape[1]
    p = proj.shape[2]
    for d in prange(n):
        lo = offsets[d]
        hi = offsets[d + 1]
        if hi == lo:
            continue
        counts = np.zeros(n_buckets, dtype=np.int64)
        for r in range(reps):
            counts[:] = 0
            for t in range(lo, hi):
                b = ids[t, r]
                counts[b] += 1
                for j in range(p):
                    out[d, r, b, j] += proj[t, r, j]
            for b in range(n_buckets):
                c = counts[b]
                if c > 1 and average:
                    inv = np.float32(1.0) / np.float32(c)
                    for j in range(p):
                        out[d, r, b, j] *= inv
                elif c == 0 and fill:
                    best = -1
                    best_dist = 1 << 30
                    for t in range(lo, hi):
                        x = ids[t, r] ^ b
                        dist = 0
                        while x:
                            x &= x - 1
                            dist += 1
                        if dist < best_dist:
                            best_dist = dist
                            best = t
                    for j in range(p):
                        out[d, r, b, j] = proj[best, r, j]


_fde_parallel = lazy_njit(parallel=True)(_fde_loop)
_fde_serial = lazy_njit()(_fde_loop)
_PARALLEL_MIN_SETS = 64


def fde_aggregate(ids: np.ndarray, proj: np.ndarray, offsets: np.ndarray, n_buckets: int, *,
                  average: bool, fill: bool, backend: str = "auto") -> np.ndarray:
    """Blocks ``(n, R, B, p)`` float32 of every set; see the module docstring."""
    if resolve_backend(backend) == "numpy":
        return fde_aggregate_numpy(ids, proj, offsets, n_buckets, average=average, fill=fill)
    _check(ids, proj, offsets, n_buckets)
    n = len(offsets) - 1
    out = np.zeros((n, ids.shape[1], n_buckets, proj.shape[2]), dtype=np.float32)
    if n:
        kernel = _fde_parallel if n >= _PARALLEL_MIN_SETS else _fde_serial
        kernel(np.ascontiguousarray(ids, dtype=np.int32),
               np.ascontiguousarray(proj, dtype=np.float32),
               np.ascontiguousarray(offsets, dtype=np.int64), n_buckets, average, fill, out)
    return out
