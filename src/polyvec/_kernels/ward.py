"""Ward agglomerative clustering of a small set of vectors (the tokens of one document).

Lance-Williams updates on squared Euclidean distances (float64): merging the closest pair
``(i, j)`` (the first in row-major order on ties, ``i < j``) gives, for every other cluster
``k``, ``d(k, i+j) = ((n_i + n_k) d(k, i) + (n_j + n_k) d(k, j) - n_k d(i, j)) / (n_i + n_j +
n_k)`` -- Ward's minimum-variance criterion. For unit vectors the squared distance is
``2 - 2 cos``, i.e. Ward on cosine distance. Merging stops at ``n_clusters`` clusters.

``ward_labels_numpy`` is the reference twin; ``ward_labels`` runs the numba kernel. Both return
labels ``0..n_clusters-1`` numbered by first appearance.

>>> x = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]], dtype=np.float32)
>>> ward_labels_numpy(x, 2).tolist(), ward_labels(x, 2).tolist()
([0, 0, 1, 1], [0, 0, 1, 1])
"""

from __future__ import annotations

import numpy as np

from ._numba import lazy_njit, resolve_backend

__all__ = ["ward_labels", "ward_labels_numpy"]


def _sq_dists(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sq = (x * x).sum(axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    np.fill_diagonal(d, np.inf)
    return d


def _renumber(labels: np.ndarray) -> np.ndarray:
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv]


def _check(x: np.ndarray, n_clusters: int) -> None:
    if x.ndim != 2 or not 1 <= n_clusters <= max(len(x), 1):
        raise ValueError(f"ward: expected (n, d) vectors and 1 <= n_clusters <= n, got "
                         f"{x.shape} and {n_clusters}")


def ward_labels_numpy(x: np.ndarray, n_clusters: int) -> np.ndarray:
    """Reference twin: one vectorized Lance-Williams update per merge."""
    _check(x, n_clusters)
    n = len(x)
    d = _sq_dists(x)
    size = np.ones(n, dtype=np.float64)
    labels = np.arange(n)
    for _ in range(n - n_clusters):
        flat = int(np.argmin(d))
        i, j = divmod(flat, n)
        dij = d[i, j]
        s_i, s_j = size[i], size[j]
        new = ((s_i + size) * d[i] + (s_j + size) * d[j] - size * dij) / (s_i + s_j + size)
        d[i, :] = new
        d[:, i] = new
        d[j, :] = np.inf
        d[:, j] = np.inf
        d[i, i] = np.inf
        size[i] = s_i + s_j
        labels[labels == j] = i
    return _renumber(labels)


def _ward_loop(d, n_clusters, labels):  # pragma: no cover
    n = d.shape[0]
    size = np.ones(n, dtype=np.float64)
    active = np.ones(n, dtype=np.bool_)
    for _ in range(n - n_clusters):
        best = np.inf
        bi = -1
        bj = -1
        for i in range(n):
            if not active[i]:
                continue
            for j in range(i + 1, n):
                if active[j] and d[i, j] < best:
                    best = d[i, j]
                    bi = i
                    bj = j
        s_i = size[bi]
        s_j = size[bj]
        for k in range(n):
            if active[k] and k != bi and k != bj:
                s_k = size[k]
                v = ((s_i + s_k) * d[bi, k] + (s_j + s_k) * d[bj, k] - s_k * best) / (
                    s_i + s_j + s_k)
                d[bi, k] = v
                d[k, bi] = v
        active[bj] = False
        size[bi] = s_i + s_j
        for t in range(n):
            if labels[t] == bj:
                labels[t] = bi


_ward_numba = lazy_njit()(_ward_loop)


def ward_labels(x: np.ndarray, n_clusters: int, *, backend: str = "auto") -> np.ndarray:
    """Cluster labels (n,) int64 of ``x`` cut at ``n_clusters`` Ward clusters."""
    if resolve_backend(backend) == "numpy":
        return ward_labels_numpy(x, n_clusters)
    _check(x, n_clusters)
    labels = np.arange(len(x), dtype=np.int64)
    if len(x) > n_clusters:
        _ward_numba(_sq_dists(x), int(n_clusters), labels)
    return _renumber(labels)
