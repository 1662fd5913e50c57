"""Exact MaxSim rerank of candidate documents from token vectors memory-mapped from disk.

The rerank vectors (f16 or f32) stay on disk; as soon as the candidates are known their byte
ranges are announced to the kernel with ``madvise(MADV_WILLNEED)`` (ESPN-style prefetch), then
the candidates' tokens are gathered, upcast to f32 and scored exactly.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from .._kernels import maxsim_reduce
from .._kernels.lut import gather_f32
from ..errors import DimensionMismatch, InvalidArgument

__all__ = ["rerank_maxsim", "prefetch_rows", "gather_rows"]

_PAGE = mmap.PAGESIZE


def _find_mmap(arr: np.ndarray) -> Any:
    """The ``mmap.mmap`` an array's memory lives in, or None."""
    base: Any = arr
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        base = getattr(base, "base", None)
    return None


def prefetch_rows(tokens: np.ndarray, offsets: np.ndarray, doc_rows: np.ndarray) -> int:
    """``madvise(WILLNEED)`` the byte ranges of ``doc_rows``' tokens; returns the calls made.

    A no-op (returns 0) when ``tokens`` is not memory-mapped, not C-contiguous, or the platform
    has no ``madvise``. Adjacent or overlapping page ranges are merged into one call.
    """
    mm = _find_mmap(tokens)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_WILLNEED") \
            or not tokens.flags.c_contiguous or len(doc_rows) == 0 or mm.closed:
        return 0
    start_addr = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    base = tokens.ctypes.data - start_addr  # byte offset of tokens[0] in the mapping
    row_bytes = tokens.strides[0]
    rows = np.sort(np.asarray(doc_rows, dtype=np.int64))
    lo = base + np.asarray(offsets[rows], dtype=np.int64) * row_bytes
    hi = base + np.asarray(offsets[rows + 1], dtype=np.int64) * row_bytes
    lo = (lo // _PAGE) * _PAGE
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    if len(lo) == 0:
        return 0
    # merge runs whose next start falls inside (or right after) the current end page
    new_run = np.ones(len(lo), dtype=bool)
    run_end = np.maximum.accumulate(hi)
    new_run[1:] = lo[1:] > run_end[:-1]
    starts = lo[new_run]
    ends = np.maximum.reduceat(hi, np.flatnonzero(new_run))
    size = len(mm)
    calls = 0
    for s, e in zip(starts.tolist(), np.minimum(ends, size).tolist(), strict=True):
        if e > s:
            mm.madvise(mmap.MADV_WILLNEED, s, e - s)
            calls += 1
    return calls


def gather_rows(tokens: np.ndarray, offsets: np.ndarray, doc_rows: np.ndarray, *,
                backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The tokens of ``doc_rows`` as one f32 block, with their new ``offsets``."""
    return gather_f32(tokens, offsets, doc_rows, backend=backend)


def rerank_maxsim(Q: np.ndarray, tokens: np.ndarray, offsets: np.ndarray,
                  doc_rows: np.ndarray, k: int, *, prefetch: bool = True,
                  backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Exact MaxSim of ``Q`` against the documents ``doc_rows``; the ``k`` best, best first.

    ``tokens`` (n_tokens, d), f16 or f32, typically an ``np.memmap``; ``offsets`` (n_docs + 1)
    lays documents out contiguously. Ties are broken by the smaller row. Returns
    ``(rows int64, scores f32)``.
    """
    Q = np.asarray(Q, dtype=np.float32)
    if Q.ndim != 2 or tokens.ndim != 2 or Q.shape[1] != tokens.shape[1]:
        raise DimensionMismatch(f"Q: expected a (q_tokens, {tokens.shape[-1]}) array, got "
                                f"shape {Q.shape}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgument(f"k: expected a positive int, got {k!r}")
    rows = np.asarray(doc_rows, dtype=np.int64)
    n_docs = len(offsets) - 1
    if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= n_docs)):
        raise InvalidArgument(f"doc_rows: expected a 1-D array of rows in [0, {n_docs}), got "
                              f"shape {rows.shape}")
    if len(rows) == 0 or len(Q) == 0:
        return rows[:0], np.zeros(0, dtype=np.float32)
    if prefetch:
        prefetch_rows(tokens, offsets, rows)
    block, new_off = gather_rows(tokens, offsets, rows, backend=backend)
    if np.any(np.diff(new_off) == 0):
        raise InvalidArgument("doc_rows: expected documents with at least one token")
    scores = maxsim_reduce(Q @ block.T, new_off, backend=backend)
    n = min(int(k), len(rows))
    if len(rows) > n:
        part = np.argpartition(-scores, n - 1)[:n]
        rows, scores = rows[part], scores[part]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]
