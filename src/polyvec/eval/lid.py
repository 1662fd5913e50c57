"""Local intrinsic dimensionality (LID), maximum-likelihood estimator of Levina and Bickel.

For a point whose k nearest neighbours (itself excluded) lie at distances
``r_1 <= ... <= r_k``::

    LID = -( (1/k) * sum_i ln(r_i / r_k) )^-1

Data on a d-dimensional manifold gives values near d whatever the ambient dimension; graph
indexes (HNSW) lose recall on high-LID points, so the distribution over a sample is a cheap
predictor of how hard a data set is. Neighbours come from exact search in numpy, in blocks,
in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np

from ..errors import InvalidArgument
from ..index.order import lid_from_distances

__all__ = ["lid_mle", "lid_summary", "sample_indices"]

# Squared distances at or below this fraction of |x|^2 + |y|^2 are duplicates (float64 round-off
# of the |x|^2 + |y|^2 - 2 x.y expansion is ~1e-16 of it): they would give ln(0).
_DUP_RTOL = 1e-10
_BLOCK_ELEMS = 1 << 22  # distance block size, ~32 MiB of float64


def sample_indices(n: int, sample: int | None, seed: int) -> np.ndarray:
    """Row indices :func:`lid_mle` estimates at: ``min(sample, n)`` distinct rows, ascending.

    ``sample=None`` takes every row.
    """
    if sample is None or sample >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=sample, replace=False))


def _as_matrix(name: str, x: object) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise InvalidArgument(
            f"{name}: expected a 2-D numeric array (n, d), got shape {arr.shape} dtype {arr.dtype}"
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InvalidArgument(f"{name}: expected finite values, got NaN or inf")
    return arr


def _normalize(name: str, x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InvalidArgument(f"{name}: cosine needs non-zero vectors, got an all-zero row")
    return x / norms


def _knn_sq_distances(
    points: np.ndarray, data: np.ndarray, k: int, self_index: np.ndarray | None
) -> np.ndarray:
    """Squared l2 distances of each point to its k nearest rows of ``data``, ascending.

    ``self_index[i]`` is the row of ``data`` that *is* point i (excluded), or ``None``. Rows at
    duplicate distance (see ``_DUP_RTOL``) are excluded too. Missing neighbours are ``inf``.
    """
    n = data.shape[0]
    dnorm = np.einsum("ij,ij->i", data, data)
    pnorm = np.einsum("ij,ij->i", points, points)
    qb = max(1, min(points.shape[0], _BLOCK_ELEMS // max(n, 1)))
    db = max(k, min(n, _BLOCK_ELEMS // qb))
    out = np.empty((points.shape[0], k), dtype=np.float64)
    for qs in range(0, points.shape[0], qb):
        qe = min(qs + qb, points.shape[0])
        best = np.full((qe - qs, k), np.inf)
        for ds in range(0, n, db):
            de = min(ds + db, n)
            scale = pnorm[qs:qe, None] + dnorm[None, ds:de]
            d2 = scale - 2.0 * (points[qs:qe] @ data[ds:de].T)
            np.maximum(d2, 0.0, out=d2)
            d2[d2 <= _DUP_RTOL * scale] = np.inf  # self-matches and exact duplicates
            if self_index is not None:
                rows = np.arange(qe - qs)
                cols = self_index[qs:qe] - ds
                hit = (cols >= 0) & (cols < de - ds)
                d2[rows[hit], cols[hit]] = np.inf
            both = np.concatenate([best, d2], axis=1)
            best = np.partition(both, k - 1, axis=1)[:, :k]
        out[qs:qe] = np.sort(best, axis=1)
    return out


def lid_mle(
    data: object,
    *,
    k: int = 20,
    sample: int | None = 1000,
    seed: int = 0,
    metric: Literal["l2", "cosine"] = "l2",
    queries: object | None = None,
) -> np.ndarray:
    """Per-point LID (Levina–Bickel MLE) over a seeded sample of ``data``.

    Parameters
    ----------
    data
        ``(n, d)`` vectors.
    k
        Neighbours per point, ``2 <= k < n``.
    sample
        Number of rows of ``data`` to estimate at, drawn without replacement from
        ``np.random.default_rng(seed)`` (see :func:`sample_indices`, which gives the rows of the
        returned values); ``None`` estimates at every row. Ignored when ``queries`` is given.
    seed
        Seed of the sample.
    metric
        ``"l2"``: Euclidean distance. ``"cosine"``: Euclidean distance between L2-normalized
        vectors (chordal distance, locally proportional to the angle).
    queries
        ``(nq, d)`` points to estimate at instead of a sample of ``data``; their neighbours
        are still rows of ``data``.

    Returns
    -------
    numpy.ndarray
        float64, one LID per point. The point itself and exact duplicates of it (distance 0)
        are not neighbours; a point with fewer than k other distinct neighbours gets NaN, and
        one whose k neighbours are all equidistant gets inf.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> plane = rng.standard_normal((2000, 2)) @ rng.standard_normal((2, 64))
    >>> lid = lid_mle(plane, k=20, sample=200)
    >>> 1.5 < float(np.median(lid)) < 2.5
    True
    """
    if metric not in ("l2", "cosine"):
        raise InvalidArgument(f"metric: expected 'l2' or 'cosine', got {metric!r}")
    x = _as_matrix("data", data)
    n = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise InvalidArgument(f"k: expected an int >= 2, got {k!r}")
    k = int(k)
    if sample is not None and (
        isinstance(sample, bool) or not isinstance(sample, int | np.integer) or sample < 1
    ):
        raise InvalidArgument(f"sample: expected an int >= 1 or None, got {sample!r}")
    if metric == "cosine":
        x = _normalize("data", x)
    if queries is None:
        if n <= k:
            raise InvalidArgument(f"data: expected more than k={k} rows, got {n}")
        idx = sample_indices(n, sample, seed)
        points, self_index = x[idx], idx
    else:
        points = _as_matrix("queries", queries)
        if points.shape[1] != x.shape[1]:
            raise InvalidArgument(
                f"queries: expected {x.shape[1]} columns like data, got {points.shape[1]}"
            )
        if n < k:
            raise InvalidArgument(f"data: expected at least k={k} rows, got {n}")
        if metric == "cosine":
            points = _normalize("queries", points)
        self_index = None
    if metric == "l2":  # translation-invariant; centring keeps |x|^2 + |y|^2 - 2 x.y accurate
        center = x.mean(axis=0)
        x, points = x - center, points - center
    d2 = _knn_sq_distances(points, x, k, self_index)
    return lid_from_distances(np.sqrt(d2))


def lid_summary(values: Iterable[float] | np.ndarray) -> dict[str, float]:
    """Mean, median, 10th and 90th percentile of LID values; NaNs are left out.

    Returns a dict with keys ``mean``, ``median``, ``p10``, ``p90`` and ``n`` (the number of
    values summarised; all statistics are NaN when it is 0).

    Examples
    --------
    >>> lid_summary([1.0, 2.0, 3.0, float("nan")])
    {'mean': 2.0, 'median': 2.0, 'p10': 1.2, 'p90': 2.8, 'n': 3}
    """
    v = np.asarray(values if isinstance(values, np.ndarray) else list(values), np.float64)
    v = v.ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        nan = math.nan
        return {"mean": nan, "median": nan, "p10": nan, "p90": nan, "n": 0}
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {
        "mean": float(v.mean()),
        "median": float(p50),
        "p10": float(p10),
        "p90": float(p90),
        "n": int(v.size),
    }
