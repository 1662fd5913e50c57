"""Fusing the ranked lists of several retrievers (one per field) into one ranking.

- ``rrf`` (reciprocal rank fusion): ``sum_r w_r / (60 + rank_r)``, ranks from 1; weights 1 by
  default. Scores' scales never meet, only ranks.
- ``weighted``: a convex combination of min-max normalised scores, ``sum_r w_r * (s - min_r) /
  (max_r - min_r)`` over each list (a list whose scores are all equal gives 1); the weights,
  equal by default, are scaled to sum to 1.
- ``dbsf`` (distribution-based score fusion): each list's scores normalised by its mean +- 3
  standard deviations, ``(s - (mu - 3 sigma)) / (6 sigma)`` clipped to [0, 1] (0.5 when sigma
  is 0), then summed with the weights (1 by default).

An item missing from a list contributes nothing for it. Ties are broken by the order of first
appearance (lists in the order given, each best first).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from ..types import SearchResult

__all__ = ["DEPTH", "FUSIONS", "RRF_K", "check_weights", "fit", "fuse", "fuse_results", "hits",
           "ndcg"]

FUSIONS = ("rrf", "weighted", "dbsf")
RRF_K = 60
DEPTH = 100  # each retriever's list: its top max(k, DEPTH)


def check_weights(fusion: object, weights: object, fields: Sequence[str]) -> dict[str, float]:
    """The weight of every field (the defaults filled in), or a typed error."""
    if fusion not in FUSIONS:
        raise InvalidArgument(f"fusion: expected one of {list(FUSIONS)}, got {fusion!r}")
    if weights is None:
        w = dict.fromkeys(fields, 1.0)
    else:
        if not isinstance(weights, Mapping):
            raise InvalidArgument(f"weights: expected a dict of field -> weight, got "
                                  f"{type(weights).__name__}")
        unknown = sorted(set(map(str, weights)) - set(fields))
        if unknown:
            raise InvalidArgument(f"weights: fields {unknown} are not in the query (its "
                                  f"fields: {list(fields)})")
        w = {}
        for f in fields:
            x = weights.get(f, 1.0)
            if isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x < float("inf"):
                raise InvalidArgument(f"weights[{f!r}]: expected a finite number >= 0, got {x!r}")
            w[f] = float(x)
    if not any(w.values()):
        raise InvalidArgument("weights: expected at least one weight > 0")
    if fusion == "weighted":
        total = sum(w.values())
        w = {f: x / total for f, x in w.items()}
    return w


def _normalised(scores: np.ndarray, fusion: str) -> np.ndarray:
    if fusion == "weighted":
        lo, hi = float(scores.min()), float(scores.max())
        return np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)
    mu, sigma = float(scores.mean()), float(scores.std())
    if sigma == 0:
        return np.full_like(scores, 0.5)
    return np.clip((scores - (mu - 3 * sigma)) / (6 * sigma), 0.0, 1.0)


def fuse(lists: Mapping[str, tuple[Sequence[Any], Any]], k: int, fusion: str,
         weights: Mapping[str, float]) -> tuple[list[Any], list[float],
                                                list[dict[str, dict[str, Any]]]]:
    """The fused top-``k`` of ``lists`` (field -> (ids, scores), best first, no empty slots):
    ids, fused scores, and for each hit where each list ranked it (``{field: {"rank",
    "score"}}``)."""
    fused: dict[Any, float] = {}
    explain: dict[Any, dict[str, dict[str, Any]]] = {}
    for field, (ids, scores) in lists.items():
        if not len(ids):
            continue
        raw = np.asarray(scores, dtype=np.float64)
        contrib = (weights[field] / (RRF_K + np.arange(1, len(ids) + 1)) if fusion == "rrf"
                   else weights[field] * _normalised(raw, fusion))
        for rank, (i, c) in enumerate(zip(ids, contrib.tolist(), strict=True), start=1):
            fused[i] = fused.get(i, 0.0) + c
            explain.setdefault(i, {})[field] = {"rank": rank, "score": float(raw[rank - 1])}
    order = sorted(fused, key=lambda i: -fused[i])[:k]  # (stable: first appearance breaks ties)
    return order, [fused[i] for i in order], [explain[i] for i in order]


def hits(r: SearchResult) -> tuple[list[Any], np.ndarray]:
    """One query's filled slots: ids and scores (best first)."""
    ids = [i for i in r.ids if i is not None]
    return ids, r.scores[:len(ids)]


def fuse_results(results: Mapping[str, SearchResult], width: int, fusion: str,
                 weights: Mapping[str, float], depth: int) -> SearchResult:
    """A hybrid search's answer: each field's result (its top ``depth``, one query or a batch
    of one size in every field) fused into ``width`` slots a query (empty ones: ``None``,
    ``-inf``); ``info`` says how (``hits``: each hit's rank and score in every list that
    has it; ``retrievers``: each field's own ``info``)."""
    kinds = {(r.ids.ndim == 1, 1 if r.ids.ndim == 1 else len(r.ids)) for r in results.values()}
    if len(kinds) != 1:
        raise InvalidArgument("search: a hybrid query's fields must all hold one query, or "
                              "batches of one size")
    single, nq = kinds.pop()
    rows = [dict(results)] if single else [
        {f: SearchResult(r.ids[i], r.scores[i]) for f, r in results.items()} for i in range(nq)]
    ids = np.full((len(rows), width), None, dtype=object)
    scores = np.full((len(rows), width), -np.inf, dtype=np.float32)
    explained = []
    for qi, row in enumerate(rows):
        got, fused, explain = fuse({f: hits(r) for f, r in row.items()}, width, fusion,
                                   weights)
        ids[qi, :len(got)] = got
        scores[qi, :len(got)] = fused
        explained.append(explain)
    info = {"strategy": "hybrid", "fusion": fusion, "weights": dict(weights), "depth": depth,
            "retrievers": {f: r.info for f, r in results.items()},
            "hits": explained[0] if single else explained}
    return SearchResult(ids[0], scores[0], info) if single else SearchResult(ids, scores, info)


def ndcg(ranked: Sequence[Any], grades: Mapping[Any, float], k: int) -> float:
    """nDCG@k of one ranking against graded judgments (linear gains, as trec_eval's)."""
    dcg = sum(grades.get(i, 0) / np.log2(r + 2) for r, i in enumerate(ranked[:k]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / np.log2(r + 2) for r, g in enumerate(ideal))
    return float(dcg / idcg) if idcg > 0 else 0.0


def _simplex(n: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to split ``parts`` among ``n`` fields (the grid of weights, in steps)."""
    if n == 1:
        return [(parts,)]
    return [(i, *rest) for i in range(parts, -1, -1) for rest in _simplex(n - 1, parts - i)]


def fit(lists: Sequence[Mapping[str, tuple[Sequence[Any], Any]]],
        grades: Sequence[Mapping[Any, float]], fusion: str, k: int, step: float
        ) -> dict[str, Any]:
    """The weights (on a grid of ``step``, summing to 1) whose fusion of each query's
    ``lists`` has the best mean nDCG@k against ``grades``; every grid point's score too."""
    fields = list(lists[0])
    parts = round(1 / step)
    grid: list[dict[str, Any]] = []
    for split in _simplex(len(fields), parts):
        w = check_weights(fusion, {f: p / parts for f, p in zip(fields, split, strict=True)},
                          fields)
        score = statistics.fmean(ndcg(fuse(one, k, fusion, w)[0], g, k)
                                 for one, g in zip(lists, grades, strict=True))
        grid.append({"weights": {f: p / parts for f, p in zip(fields, split, strict=True)},
                     f"ndcg@{k}": score})
    best = max(grid, key=lambda e: e[f"ndcg@{k}"])  # (the first of equal scores)
    return {"fusion": fusion, "weights": best["weights"], f"ndcg@{k}": best[f"ndcg@{k}"],
            "queries": len(lists), "grid": grid}
