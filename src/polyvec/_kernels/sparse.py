"""Exact sparse dot products: each query against every row of a CSR block.

The numpy reference: each stored entry finds its query weight by binary search in the
query's sorted indices; a row's score is the sum of its matched entries' products. A row that
shares no index with the query has no score (it is not a hit), as in an inverted index.
"""

from __future__ import annotations

import numpy as np

from .topk import TopK

__all__ = ["sparse_scores", "scan_sparse"]


def sparse_scores(q_idx: np.ndarray, q_val: np.ndarray, indptr: np.ndarray,
                  indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, matched)`` of one query (sorted uint32 ``q_idx``, float32 ``q_val``)
    against CSR rows: float32 dot products, and whether a row shares any index with it."""
    n = len(indptr) - 1
    if len(q_idx) == 0 or len(indices) == 0:
        return np.zeros(n, np.float32), np.zeros(n, bool)
    pos = np.minimum(np.searchsorted(q_idx, indices), len(q_idx) - 1)
    hit = q_idx[pos] == indices
    contrib = np.where(hit, values.astype(np.float32) * q_val[pos], np.float32(0))
    row = np.repeat(np.arange(n), np.diff(indptr))
    scores = np.bincount(row, weights=contrib, minlength=n).astype(np.float32)
    matched = np.bincount(row, weights=hit, minlength=n) > 0
    return scores, matched


def scan_sparse(queries: list[tuple[np.ndarray, np.ndarray]], indptr: np.ndarray,
                indices: np.ndarray, values: np.ndarray, row_ids: np.ndarray, topk: TopK,
                *, mask: np.ndarray | None = None) -> None:
    """Push each query's exact scores against the rows that share an index with it (and
    that ``mask`` selects) into row ``i`` of ``topk``."""
    for i, (q_idx, q_val) in enumerate(queries):
        scores, keep = sparse_scores(q_idx, q_val, indptr, indices, values)
        if mask is not None:
            keep &= mask
        rows = np.flatnonzero(keep)
        if len(rows):
            topk.push(scores[rows][None, :], row_ids[rows], row=i)
