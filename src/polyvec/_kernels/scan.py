"""Exact scores of a few queries against float16 rows, widened in registers, not in memory.

An exact scan of 1,000,000 x 128 f16 rows reads 256 MB. Widening each block into a float32
buffer and multiplying it with BLAS (the path of :mod:`polyvec.index.flat` for large query
batches) writes and reads that block again and runs on one core: about 1 GB/s here. For one
query or a few, the fused kernel here converts each row as it reads it
(:func:`.widen.f16_to_f32`, inlined: ``vcvtph2ps``), scores it against every query while it
is in L1 and splits the rows over numba's threads.

``rows`` (optional, int64) scans only those rows, in that order, without copying the
vectors. Scores are "higher is better": ``q . x`` for ``dot`` (cosine stores normalized
vectors), ``2 q . x - |q|^2 - |x|^2`` for ``l2`` (the order of operations of the BLAS path).
Sums are reassociated (vectorized), so scores match the reference within float32 rounding,
not bit for bit, as BLAS itself does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._numba import compiled_twin, lazy_njit, register_warmer
from .widen import f16_to_f32

__all__ = ["scan_f16_numpy", "scan_f16", "scan_f16_blocks", "MAX_QUERIES", "BLOCK_ROWS"]

MAX_QUERIES = 16  # larger batches are faster through BLAS (each widened row is reused more)
BLOCK_ROWS = 1 << 16  # rows per task (16 MB at 128-d): a smaller scan runs in the caller
_AHEAD = 4  # selected rows prefetched this many rows ahead (a selection defeats the prefetcher)


@compiled_twin("polyvec._kernels._prefetch", "prefetch_row")
def prefetch_row(a, i, j):
    """Hint that ``a[i, j]`` is read soon (compiled: ``llvm.prefetch``; here: nothing)."""


def scan_f16_numpy(q: np.ndarray, x: np.ndarray, rows: np.ndarray | None, l2: bool
                   ) -> np.ndarray:
    """Reference twin: scores ``(nq, m)`` f32 of ``q`` (f32) against ``x[rows]`` (f16)."""
    block = np.asarray(x if rows is None else x[rows], dtype=np.float32)
    s = q @ block.T
    if l2:
        s *= 2.0
        s -= np.einsum("ij,ij->i", q, q)[:, None]
        s -= np.einsum("ij,ij->i", block, block)[None, :]
    return s


def _scan_loop(q, q_sq, bits, rows, use_rows, l2, out):  # pragma: no cover - compiled
    nq, d = q.shape
    m = out.shape[1]
    two = np.float32(2.0)
    buf = np.empty(d, np.float32)  # one widened row, in L1
    for r in range(m):
        i = rows[r] if use_rows else r
        if use_rows and r + _AHEAD < m:
            for j in range(0, d, 32):  # each 64-byte line of the row
                prefetch_row(bits, rows[r + _AHEAD], j)
        if nq == 1 and not l2:  # the common case: convert and multiply in one pass
            acc = np.float32(0.0)
            for j in range(d):
                acc += q[0, j] * f16_to_f32(bits[i, j])
            out[0, r] = acc
            continue
        xs = np.float32(0.0)
        for j in range(d):
            v = f16_to_f32(bits[i, j])
            buf[j] = v
            xs += v * v
        for t in range(nq):
            acc = np.float32(0.0)
            for j in range(d):
                acc += q[t, j] * buf[j]
            out[t, r] = acc * two - q_sq[t] - xs if l2 else acc


# sums reassociate (vectorized); no nnan/ninf: inf and NaN rows score as they do in BLAS
_FLAGS = {"reassoc", "contract"}
_scan_serial = lazy_njit(fastmath=_FLAGS)(_scan_loop)
_NO_ROWS = np.zeros(0, np.int64)


def _check(q: np.ndarray, x: np.ndarray) -> None:
    if q.dtype != np.float32 or x.dtype != np.float16 or q.ndim != 2 or x.ndim != 2 or \
            q.shape[1] != x.shape[1] or not x.flags.c_contiguous:
        raise ValueError(f"scan_f16: expected f32 (nq, d) queries and C-order f16 (n, d) rows,"
                         f" got {q.dtype} {q.shape} and {x.dtype} {x.shape}")


def scan_f16_blocks(q: np.ndarray, x: np.ndarray, rows: np.ndarray | None = None, *,
                    l2: bool = False, block: int = BLOCK_ROWS, threads: int | None = None
                    ) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(lo, hi, scores)`` for consecutive blocks of at most ``block`` of the scanned rows
    (``x``, or ``x[rows]``), in order; scores ``(nq, hi - lo)`` f32 as :func:`scan_f16`.

    Blocks are scored by ``threads`` threads (``None``: numba's thread count, which
    ``NUMBA_NUM_THREADS`` and ``numba.set_num_threads`` set) taking blocks as they free up:
    on a busy machine a descheduled thread delays one block, not half the scan (a static
    ``prange`` split waited for it). The caller consumes a block while later ones run.
    """
    _check(q, x)
    m = len(x) if rows is None else len(rows)
    if m == 0 or len(q) == 0:
        return
    q = np.ascontiguousarray(q)
    q_sq = np.einsum("ij,ij->i", q, q) if l2 else np.zeros(len(q), np.float32)
    r = _NO_ROWS if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
    bits = x.view(np.uint16)

    def run(lo: int, hi: int) -> np.ndarray:
        out = np.empty((len(q), hi - lo), np.float32)
        if rows is None:
            _scan_serial(q, q_sq, bits[lo:hi], _NO_ROWS, False, l2, out)
        else:
            _scan_serial(q, q_sq, bits, r[lo:hi], True, l2, out)
        return out

    bounds = [(lo, min(m, lo + block)) for lo in range(0, m, block)]
    if threads is None:
        import numba

        threads = int(numba.get_num_threads())
    if threads <= 1 or len(bounds) == 1:
        for lo, hi in bounds:
            yield lo, hi, run(lo, hi)
        return
    pool = _pool(threads)
    futures = [pool.submit(run, lo, hi) for lo, hi in bounds]
    try:
        for (lo, hi), f in zip(bounds, futures, strict=True):
            yield lo, hi, f.result()
    finally:
        for f in futures:
            f.cancel()


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="polyvec-scan")


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's pool threads
    os.register_at_fork(after_in_child=_pool.cache_clear)


def scan_f16(q: np.ndarray, x: np.ndarray, rows: np.ndarray | None = None, *,
             l2: bool = False, threads: int | None = None) -> np.ndarray:
    """Scores ``(nq, m)`` f32 of ``q`` (f32 (nq, d)) against the f16 rows ``x`` (C order),
    or against ``x[rows]`` (``rows`` int64); the numba twin of :func:`scan_f16_numpy`."""
    _check(q, x)
    out = np.empty((len(q), len(x) if rows is None else len(rows)), np.float32)
    for lo, hi, s in scan_f16_blocks(q, x, rows, l2=l2, threads=threads):
        out[:, lo:hi] = s
    return out


@register_warmer
def _warm_scan() -> None:
    q = np.zeros((1, 4), np.float32)
    for writeable in (True, False):  # sealed segments are read-only maps: their own signature
        x = np.zeros((2, 4), np.float16)
        x.flags.writeable = writeable
        args = (q, np.zeros(1, np.float32), x.view(np.uint16), _NO_ROWS, False, False,
                np.empty((1, 2), np.float32))
        _scan_serial(*args)
