"""Exact dense search: chunked matrix products and a streaming top-k, with bounded memory.

Scores are "higher is better": inner product for ``cosine`` (vectors are stored normalized)
and ``dot``, minus the squared Euclidean distance for ``l2``.
"""

from __future__ import annotations

import numpy as np

from .._kernels import TopK
from .._kernels._numba import resolve_backend
from .._kernels.scan import BLOCK_ROWS, MAX_QUERIES, scan_f16_blocks
from .._kernels.widen import widen_f16

__all__ = ["scan_dense", "SCORE_BUDGET_BYTES"]

SCORE_BUDGET_BYTES = 64 << 20  # the largest score block held at once
_GATHER_BELOW = 0.25  # selected fraction under which selected rows are gathered, not masked
F16_BLOCK_BYTES = 1 << 20  # float16 rows are widened this many float32 bytes at a time


def _scores(q: np.ndarray, x: np.ndarray, metric: str, q_sq: np.ndarray | None) -> np.ndarray:
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    s = q @ x.T
    if metric == "l2":
        s *= 2.0
        s -= q_sq[:, None]  # type: ignore[index]
        s -= np.einsum("ij,ij->i", x, x)[None, :]
    return s


def scan_dense(
    queries: np.ndarray,
    vectors: np.ndarray,
    row_ids: np.ndarray,
    topk: TopK,
    *,
    metric: str,
    mask: np.ndarray | None = None,
    backend: str = "auto",
) -> None:
    """Push the exact scores of ``queries`` against ``vectors`` into ``topk``.

    ``row_ids[i]`` is the id reported for row i; ``mask`` (bool, optional) selects the rows
    that may be returned. ``vectors`` may be a memory-mapped f16 or f32 array. Up to
    :data:`~polyvec._kernels.scan.MAX_QUERIES` queries against f16 rows take the fused
    kernel (:func:`~polyvec._kernels.scan.scan_f16`: widened in registers, rows split over
    numba's threads, a selection scanned in place); ``backend="numpy"`` forces the
    widen-and-BLAS path, its reference, which ``"auto"`` also takes while numba's runtime is
    still starting in this process.
    """
    n = len(vectors)
    if n == 0:
        return
    if mask is not None:
        n_sel = int(np.count_nonzero(mask))
        if n_sel == 0:
            return
        if n_sel == n:
            mask = None
    # while numba's runtime starts in this process (~1.5 s here; see _kernels._numba), the
    # scans widen with numpy instead of waiting for it
    backend = resolve_backend(backend, light=True)
    if vectors.dtype == np.float16 and len(queries) <= MAX_QUERIES and \
            vectors.flags.c_contiguous and backend == "numba":
        _scan_fused(queries, vectors, row_ids, topk, metric == "l2", mask)
        return
    q_sq = np.einsum("ij,ij->i", queries, queries) if metric == "l2" else None
    if mask is not None and n_sel < _GATHER_BELOW * n:
        rows = np.flatnonzero(mask)
        vectors, row_ids, mask, n = vectors[rows], row_ids[rows], None, n_sel
    nq = len(queries)
    chunk = max(256, SCORE_BUDGET_BYTES // (4 * max(nq, 1)))
    buf = None
    if vectors.dtype == np.float16:  # widened a block at a time into one reused buffer
        chunk = min(chunk, max(64, F16_BLOCK_BYTES // (4 * vectors.shape[1])))
        buf = np.empty((min(chunk, n), vectors.shape[1]), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        block = vectors[lo:hi] if buf is None else widen_f16(vectors[lo:hi], buf,
                                                             backend=backend)
        s = _scores(queries, block, metric, q_sq)
        if mask is not None:
            s[:, ~mask[lo:hi]] = -np.inf
        topk.push(s, row_ids[lo:hi])


def _scan_fused(queries: np.ndarray, vectors: np.ndarray, row_ids: np.ndarray, topk: TopK,
                l2: bool, mask: np.ndarray | None) -> None:
    """f16 rows scored by the fused kernel a block at a time (blocks scored by numba's
    threads, each pushed as it is ready); under ``mask`` only the selected rows are read
    (none are copied)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    rows = None if mask is None else np.flatnonzero(mask)
    block = max(256, min(BLOCK_ROWS, SCORE_BUDGET_BYTES // (4 * max(len(q), 1))))
    for lo, hi, s in scan_f16_blocks(q, vectors, rows, l2=l2, block=block):
        topk.push(s, row_ids[lo:hi] if rows is None else row_ids[rows[lo:hi]])
