"""BM25 scoring as Lucene defines it (since Lucene 8), over a BM25 field's CSR rows.

For a query term t and a document d of ``dl`` terms, in a collection of ``N`` live documents
whose mean length is ``avgdl`` and ``df(t)`` of which contain t::

    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(t, d) = idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))

and a document's score is the sum over the query's terms, a term repeated in the query
counting as often as it appears (as Lucene's boolean query of its clauses). ``N``, ``df`` and
``avgdl`` are the whole collection's live documents at the search's snapshot, whatever the
filter: never a segment's own. Documents sharing no term with the query are no hit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kernels.sparse import sparse_scores

__all__ = ["BM25Query", "bind", "block_scores", "idf"]


@dataclass(frozen=True)
class BM25Query:
    """A query bound to the collection's statistics: its distinct term ids (sorted), each
    term's weight (its count in the query times its idf), and the length normalisation."""

    ids: np.ndarray
    weights: np.ndarray
    k1: float
    b: float
    avgdl: float


def idf(n: int, df: np.ndarray) -> np.ndarray:
    return np.log1p((n - df + 0.5) / (df + 0.5))


def bind(queries: list[tuple[np.ndarray, np.ndarray]], k1: float, b: float,
         blocks: Iterable[tuple[Any, np.ndarray | None]]) -> list[BM25Query]:
    """``queries`` (term ids and counts) bound to the statistics of ``blocks``, each a BM25
    field's rows (CSR ``indptr``/``indices`` of term counts, ``lengths``; sealed ones with
    their inverted lists) and its alive mask (``None``: every row is alive): N, the total
    length, and each query term's document frequency over live rows."""
    terms = np.unique(np.concatenate([q for q, _ in queries])) if queries else \
        np.zeros(0, np.uint32)
    df = np.zeros(len(terms), np.int64)
    n, total = 0, 0
    for rows, alive in blocks:
        lengths = np.asarray(rows.lengths)
        n += len(lengths) if alive is None else int(np.count_nonzero(alive))
        total += int(lengths.sum() if alive is None else lengths[alive].sum())
        if not len(terms):
            continue
        postings = rows.postings()
        if postings is not None:  # a sealed block: only the query terms' lists
            for j, where, _ in postings.lists(terms):
                df[j] += len(where) if alive is None else int(np.count_nonzero(alive[where]))
            continue
        indices, indptr = rows.indices, rows.indptr
        if len(indices):
            pos = np.minimum(np.searchsorted(terms, indices), len(terms) - 1)
            hit = terms[pos] == indices
            if alive is not None:
                hit &= np.repeat(alive, np.diff(indptr))
            df += np.bincount(pos[hit], minlength=len(terms))
    avgdl = total / n if n else 0.0
    weights = idf(n, df)
    out = []
    for q_ids, q_counts in queries:
        w = weights[np.searchsorted(terms, q_ids)] * q_counts if len(q_ids) else \
            np.zeros(0)
        out.append(BM25Query(q_ids, w.astype(np.float32), k1, b, avgdl))
    return out


def block_scores(q: BM25Query, rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, matched)`` of one bound query against a block's rows: through the inverted
    lists of a sealed block, else every entry (the numpy reference)."""
    lengths = np.asarray(rows.lengths)
    norm = (q.k1 * (1 - q.b + q.b * lengths / q.avgdl) if q.avgdl > 0 else
            np.full(len(lengths), q.k1 * (1 - q.b))).astype(np.float32)
    postings = rows.postings()
    if postings is None:
        row = np.repeat(np.arange(len(lengths)), np.diff(rows.indptr))
        tf = rows.values.astype(np.float32)
        return sparse_scores(q.ids, q.weights, rows.indptr, rows.indices, tf / (tf + norm[row]))
    scores = np.zeros(len(lengths), np.float64)
    matched = np.zeros(len(lengths), bool)
    for j, where, tf in postings.lists(q.ids):
        scores[where] += q.weights[j] * (tf / (tf + norm[where]))
        matched[where] = True
    return scores.astype(np.float32), matched
