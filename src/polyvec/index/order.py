"""Insertion orders for bulk graph builds, and the LID estimator they use.

"The Impacts of Data, Ordering, and Intrinsic Dimensionality on Recall in HNSW" found that
inserting points in descending local intrinsic dimensionality (LID) raised recall (+2.6
points hnswlib, +6.2 faiss on average): the hard, high-LID points join while the graph is
sparse and get well-spread links. :func:`lid_order` estimates every point's LID with the
Levina-Bickel maximum-likelihood estimator over its ``k`` nearest neighbours, found with a
quick throwaway HNSW graph (approximate neighbours are enough to rank points by LID).

>>> import numpy as np
>>> r = np.array([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]])
>>> lid_from_distances(r).round(3).tolist()
[1.443, inf]
"""

from __future__ import annotations

import numpy as np

from .base import faiss_module

__all__ = ["lid_from_distances", "approximate_lid", "lid_order", "sample_lid"]

_ORDER_K = 20  # neighbours per LID estimate (the paper's and the eval module's default)


def lid_from_distances(r: np.ndarray) -> np.ndarray:
    """The LID MLE per row of ascending neighbour distances ``r`` (n, k).

    ``LID = -((1/k) sum_i ln(r_i / r_k))^-1``; NaN where a row has inf, inf where all
    neighbours are equidistant.
    """
    k = r.shape[1]
    ok = np.isfinite(r).all(axis=1)
    lid = np.full(r.shape[0], np.nan)
    rr = r[ok]
    with np.errstate(divide="ignore"):
        s = np.log(rr / rr[:, -1:]).sum(axis=1) / k
        lid[ok] = np.where(s < 0, -1.0 / np.minimum(s, -1e-300), np.inf)  # s == 0: inf
    return lid


def approximate_lid(x: np.ndarray, k: int = _ORDER_K) -> np.ndarray:
    """LID of every row of ``x`` (float32 (n, d)) from approximate l2 neighbours.

    The neighbours come from a small HNSW graph (M 16, efConstruction 40, efSearch
    ``max(2k, 48)``); each row's own match and exact duplicates are dropped.
    """
    faiss = faiss_module()
    n, d = x.shape
    kk = min(k + 1, n)
    graph = faiss.IndexHNSWFlat(d, 16)
    graph.hnsw.efConstruction = 40
    graph.add(x)
    params = faiss.SearchParametersHNSW(efSearch=max(2 * kk, 48))
    dist, ids = graph.search(x, kk, params=params)
    d2 = np.where((ids < 0) | (ids == np.arange(n)[:, None]), np.inf, dist.astype(np.float64))
    # duplicates say nothing about the local dimension (float32 round-off: ~1e-7 |x|^2)
    xn = np.einsum("ij,ij->i", x, x).astype(np.float64)
    d2[d2 <= 1e-5 * (2.0 * xn[:, None] + 1e-30)] = np.inf
    r = np.sqrt(np.sort(d2, axis=1)[:, :kk - 1])
    if r.shape[1] < 2:
        return np.full(n, np.nan)
    return lid_from_distances(r)


def lid_order(x: np.ndarray, k: int = _ORDER_K) -> np.ndarray:
    """Row order by descending estimated LID (rows without an estimate last), stable."""
    lid = approximate_lid(x, k)
    key = np.where(np.isfinite(lid), -lid, np.inf)
    key[np.isposinf(lid)] = -np.inf  # infinite LID: hardest of all, first
    return np.argsort(key, kind="stable").astype(np.int64)


def sample_lid(parts: list[np.ndarray], *, sample: int = 1000, k: int = _ORDER_K,
               seed: int = 0) -> dict[str, float | int] | None:
    """LID distribution of up to ``sample`` rows drawn from ``parts`` (the row blocks of one
    field, e.g. its segments), each against its exact ``k`` nearest rows of all blocks.

    Returns ``{"sample", "k", "mean", "p10", "median", "p90"}`` over the finite estimates, or
    ``None`` when there are too few rows (or no finite estimate).
    """
    faiss = faiss_module()
    sizes = [len(p) for p in parts]
    total = sum(sizes)
    if total <= k + 1:
        return None
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(sample, total), replace=False))
    starts = np.cumsum([0, *sizes])
    points = np.concatenate([np.asarray(parts[b][picks[(picks >= lo) & (picks < hi)] - lo],
                                        dtype=np.float32)
                             for b, (lo, hi) in enumerate(zip(starts[:-1], starts[1:],
                                                              strict=True))])
    best = np.full((len(points), 0), np.inf)
    for part in parts:  # exact neighbours, block by block, merged
        kk = min(k + 1, len(part))
        d2, _ = faiss.knn(points, np.ascontiguousarray(part, dtype=np.float32), kk)
        best = np.sort(np.concatenate([best, d2.astype(np.float64)], axis=1), axis=1)
        best = best[:, :k + 1]
    # each point itself and exact duplicates: float32 distances leave ~1e-7 * |x|^2 of
    # round-off where the true distance is 0
    pn = np.einsum("ij,ij->i", points, points).astype(np.float64)
    best[best <= 1e-5 * (2.0 * pn[:, None] + 1e-30)] = np.inf
    r = np.sqrt(np.sort(best, axis=1)[:, :k])
    lid = lid_from_distances(r)
    lid = lid[np.isfinite(lid)]
    if not len(lid):
        return None
    p10, med, p90 = np.percentile(lid, [10, 50, 90])
    return {"sample": int(len(points)), "k": int(k), "mean": round(float(lid.mean()), 2),
            "p10": round(float(p10), 2), "median": round(float(med), 2),
            "p90": round(float(p90), 2)}
