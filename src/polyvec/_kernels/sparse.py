"""Exact sparse dot products: each query against every row of a CSR block.

The reference (:func:`sparse_scores`): each stored entry finds its query weight by binary
search in the query's sorted indices; a row's score is the sum of its matched entries'
products. The fast path (:class:`Postings`, a block's inverted lists, made once per sealed
block): only the lists of the query's indices are read, term at a time, every entry of them
(no pruning), so scores are the reference's. A row that shares no index with the query has
no score (it is not a hit).
"""

from __future__ import annotations

import numpy as np

from .topk import TopK

__all__ = ["Postings", "sparse_scores", "scan_sparse"]


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


class Postings:
    """The inverted lists of CSR rows: for each distinct index (``terms``, sorted), the rows
    holding it (increasing) and their values, ``rows[starts[j]:starts[j+1]]``."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        order = np.argsort(indices, kind="stable")  # (rows stay increasing within a term)
        sorted_idx = indices[order]
        self.terms, first = np.unique(sorted_idx, return_index=True)
        self.starts = np.append(first, len(sorted_idx)).astype(np.int64)
        row_of = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
        self.rows = row_of[order]
        self.values = values[order].astype(np.float32)
        self.n = len(indptr) - 1

    def lists(self, q_idx: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(position in q_idx, rows, values)`` of each query index the block holds."""
        pos = np.minimum(np.searchsorted(self.terms, q_idx), max(len(self.terms) - 1, 0))
        out = []
        for j in np.flatnonzero(self.terms[pos] == q_idx) if len(self.terms) else ():
            a, b = self.starts[pos[j]], self.starts[pos[j] + 1]
            out.append((int(j), self.rows[a:b], self.values[a:b]))
        return out

    def scores(self, q_idx: np.ndarray, q_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`sparse_scores` over the lists of the query's indices only."""
        scores = np.zeros(self.n, np.float64)
        matched = np.zeros(self.n, bool)
        for j, rows, vals in self.lists(q_idx):
            scores[rows] += vals * np.float32(q_val[j])
            matched[rows] = True
        return scores.astype(np.float32), matched


def scan_sparse(queries: list[tuple[np.ndarray, np.ndarray]], indptr: np.ndarray,
                indices: np.ndarray, values: np.ndarray, row_ids: np.ndarray, topk: TopK,
                *, mask: np.ndarray | None = None, postings: Postings | None = None) -> None:
    """Push each query's exact scores against the rows that share an index with it (and
    that ``mask`` selects) into row ``i`` of ``topk``; through ``postings`` when given."""
    for i, (q_idx, q_val) in enumerate(queries):
        scores, keep = (sparse_scores(q_idx, q_val, indptr, indices, values) if postings is None
                        else postings.scores(q_idx, q_val))
        if mask is not None:
            keep &= mask
        rows = np.flatnonzero(keep)
        if len(rows):
            topk.push(scores[rows][None, :], row_ids[rows], row=i)
