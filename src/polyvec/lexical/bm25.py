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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kernels.sparse import Scoring

__all__ = ["BM25Query", "bind", "idf", "statistics"]


@dataclass(frozen=True)
class BM25Query:
    """A query bound to the collection's statistics: its distinct term ids (sorted), each
    term's weight (its count in the query times its idf), and the length normalisation."""

    ids: np.ndarray
    weights: np.ndarray
    scoring: Scoring  # BM25's, with the collection's k1, b and mean length

    @property
    def avgdl(self) -> float:
        return self.scoring.avgdl


DF_CACHE = 1 << 20  # document frequencies kept per snapshot and field, at most


def idf(n: int, df: int) -> float:
    """A term's idf in ``n`` live documents, ``df`` of which hold it."""
    return math.log1p((n - df + 0.5) / (df + 0.5))


def bind(queries: list[tuple[np.ndarray, np.ndarray]], k1: float, b: float,
         blocks: list[tuple[Any, np.ndarray | None]],
         memo: dict[str, Any] | None = None) -> list[BM25Query]:
    """``queries`` (term ids and counts) bound to the statistics of ``blocks``, each a BM25
    field's rows (CSR ``indptr``/``indices`` of term counts, ``lengths``; sealed ones with
    their inverted lists) and its alive mask (``None``: every row is alive): N, the total
    length, and each query term's document frequency over live rows. ``memo`` (the field's, in
    one snapshot: the same blocks) keeps N, the total length, each block's dead rows and the
    document frequencies found so far."""
    terms = (queries[0][0] if len(queries) == 1 else  # (a query's ids are unique, sorted)
             np.unique(np.concatenate([q for q, _ in queries])) if queries else
             np.zeros(0, np.uint32))
    base = None if memo is None else memo.get("bm25")
    if base is None:
        base = _totals(blocks)
        if memo is not None:
            memo["bm25"] = base
    n, total, deads = base
    cache = memo.setdefault("df", {}) if memo is not None else {}  # term id -> df
    keys = terms.tolist()
    missing = [t for t in keys if t not in cache]
    if missing:
        if len(cache) > DF_CACHE:  # (bounded: a snapshot may serve many distinct terms)
            cache.clear()
        cache.update(zip(missing, _df(np.array(missing, np.uint32), blocks, deads).tolist(),
                         strict=True))
    df = [cache[t] for t in keys]
    scoring = Scoring(bm25=True, k1=k1, b=b, avgdl=total / n if n else 0.0)
    weights = np.array([idf(n, d) for d in df])  # (a query's few terms: Python's math)
    out = []
    for q_ids, q_counts in queries:
        w = (weights * q_counts if len(queries) == 1 else  # (then terms are its ids)
             weights[np.searchsorted(terms, q_ids)] * q_counts if len(q_ids) else np.zeros(0))
        out.append(BM25Query(q_ids, w.astype(np.float32), scoring))
    return out


def statistics(queries: list[tuple[np.ndarray, np.ndarray]],
               blocks: list[tuple[Any, np.ndarray | None]]) -> dict[str, Any]:
    """What :func:`bind` reads of ``blocks`` for ``queries``: N (live documents), their total
    length, and each query term's document frequency (``{term id: df}``). Statistics summed
    over several collections (the shards of one) bind as one collection's would (see
    ``memo`` in :func:`given`)."""
    terms = np.unique(np.concatenate([q for q, _ in queries])) if queries else \
        np.zeros(0, np.uint32)
    n, total, deads = _totals(blocks)
    df = _df(terms.astype(np.uint32), blocks, deads) if len(terms) else np.zeros(0, np.int64)
    return {"n": n, "total": total, "df": dict(zip(terms.tolist(), df.tolist(), strict=True))}


def given(stats: dict[str, Any]) -> dict[str, Any]:
    """A ``memo`` for :func:`bind` holding ``stats`` (:func:`statistics`' form, summed over
    shards): bound with it, queries score as over the union of the blocks it counts. Every
    query term must have its document frequency there."""
    return {"bm25": (int(stats["n"]), int(stats["total"]), []),
            "df": {int(t): int(d) for t, d in stats["df"].items()}}


def _df(terms: np.ndarray, blocks: list[tuple[Any, np.ndarray | None]],
        deads: list[np.ndarray]) -> np.ndarray:
    """Each of ``terms``' (sorted) document frequency over the live rows of ``blocks``."""
    df = np.zeros(len(terms), np.int64)
    for (rows, alive), dead in zip(blocks, deads, strict=True):
        postings = rows.postings()
        if postings is not None:  # a sealed block: only the query terms' lists
            if not len(dead):
                j, t = postings.positions(terms)
                df[j] += postings.starts[t + 1] - postings.starts[t]
                continue
            for a, where, _ in postings.lists(terms):
                df[a] += int(np.count_nonzero(alive[where]))  # type: ignore[index]
            continue
        indices, indptr = rows.indices, rows.indptr
        if len(indices):
            pos = np.minimum(np.searchsorted(terms, indices), len(terms) - 1)
            hit = terms[pos] == indices
            if alive is not None:
                hit &= np.repeat(alive, np.diff(indptr))
            df += np.bincount(pos[hit], minlength=len(terms))
    return df


def _totals(blocks: list[tuple[Any, np.ndarray | None]]) -> tuple[int, int, list[np.ndarray]]:
    """N and the total length over the live rows of ``blocks``, and each block's dead rows."""
    n, total, deads = 0, 0, []
    for rows, alive in blocks:
        lengths = np.asarray(rows.lengths)
        dead = np.zeros(0, np.int64) if alive is None else np.flatnonzero(~alive)
        n += len(lengths) - len(dead)
        total += rows.total_length() - int(lengths[dead].sum())
        deads.append(dead)
    return n, total, deads
