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
         blocks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]
         ) -> list[BM25Query]:
    """``queries`` (term ids and counts) bound to the statistics of ``blocks``, each
    ``(indptr, indices, lengths, alive)`` (``alive``: the live rows' mask, ``None`` when all
    are): N, the total length, and each query term's document frequency over live rows."""
    terms = np.unique(np.concatenate([q for q, _ in queries])) if queries else \
        np.zeros(0, np.uint32)
    df = np.zeros(len(terms), np.int64)
    n, total = 0, 0
    for indptr, indices, lengths, alive in blocks:
        rows = len(indptr) - 1
        if alive is not None:
            live_entries = np.repeat(alive, np.diff(indptr))
            n += int(np.count_nonzero(alive))
            total += int(lengths[alive].sum())
        else:
            live_entries = None
            n += rows
            total += int(lengths.sum())
        if len(terms) and len(indices):
            pos = np.minimum(np.searchsorted(terms, indices), len(terms) - 1)
            hit = terms[pos] == indices
            if live_entries is not None:
                hit &= live_entries
            df += np.bincount(pos[hit], minlength=len(terms))
    avgdl = total / n if n else 0.0
    weights = idf(n, df)
    out = []
    for q_ids, q_counts in queries:
        w = weights[np.searchsorted(terms, q_ids)] * q_counts if len(q_ids) else \
            np.zeros(0)
        out.append(BM25Query(q_ids, w.astype(np.float32), k1, b, avgdl))
    return out


def block_scores(q: BM25Query, indptr: np.ndarray, indices: np.ndarray, tf: np.ndarray,
                 lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, matched)`` of one bound query against CSR rows of term frequencies (the
    numpy reference)."""
    row = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    norm = q.k1 * (1 - q.b + q.b * lengths / q.avgdl) if q.avgdl > 0 else \
        np.full(len(lengths), q.k1 * (1 - q.b))
    tf = tf.astype(np.float32)
    saturated = tf / (tf + norm[row].astype(np.float32))
    return sparse_scores(q.ids, q.weights, indptr, indices, saturated)
