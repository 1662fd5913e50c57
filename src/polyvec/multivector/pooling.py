"""Token pooling at index time ("Reducing the Footprint of Multi-Vector Retrieval with Minimal
Performance Impact via Token Pooling").

Per document of ``n`` tokens: the first token is kept as is; the other ``n - 1`` are clustered
by Ward hierarchical clustering on cosine distance (:mod:`polyvec._kernels.ward`) into
``max((n - 1) // pool_factor, 1)`` clusters, each replaced by the mean of its tokens,
re-normalized. Pool factor 2 halves the vectors; factor 1 is the identity.

A small own Ward implementation (numpy reference + numba twin) is used instead of scipy, so
pooling stays within the core dependencies (numpy, numba) of the write path.

>>> rng = np.random.default_rng(0)
>>> doc = rng.standard_normal((9, 16)).astype(np.float32)
>>> pool_tokens(doc, 2).shape
(5, 16)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._kernels.ward import ward_labels
from ..errors import InvalidArgument

__all__ = ["pool_tokens", "pool_sets", "pooled_count"]

_EPS = 1e-12


def _check_factor(pool_factor: object) -> int:
    if isinstance(pool_factor, bool) or not isinstance(pool_factor, int | np.integer) \
            or pool_factor < 1:
        raise InvalidArgument(f"pool_factor: expected an int >= 1, got {pool_factor!r}")
    return int(pool_factor)


def pooled_count(n: int, pool_factor: int) -> int:
    """Tokens left of an ``n``-token document: the first one plus the clusters of the rest."""
    if n <= 1 or pool_factor == 1:
        return n
    return 1 + max((n - 1) // pool_factor, 1)


def pool_tokens(tokens: np.ndarray, pool_factor: int, *, normalize: bool = True,
                backend: str = "auto") -> np.ndarray:
    """The pooled ``(m, d)`` float32 tokens of one document (first token first)."""
    f = _check_factor(pool_factor)
    x = np.asarray(tokens, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise InvalidArgument(f"tokens: expected a non-empty (n, d) array, got {x.shape}")
    m = pooled_count(len(x), f)
    if m == len(x):
        return x.copy()
    rest = x[1:]
    labels = ward_labels(rest, m - 1, backend=backend)
    sums = np.zeros((m - 1, x.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, rest)
    means = sums / np.bincount(labels, minlength=m - 1)[:, None]
    if normalize:
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), _EPS)
    return np.concatenate([x[:1], means.astype(np.float32)])


def pool_sets(sets: Sequence[np.ndarray], pool_factor: int, *, normalize: bool = True,
              backend: str = "auto") -> list[np.ndarray]:
    """:func:`pool_tokens` of every document; the input dtype is kept."""
    f = _check_factor(pool_factor)
    if f == 1:
        return list(sets)
    return [pool_tokens(s, f, normalize=normalize, backend=backend).astype(
        np.asarray(s).dtype, copy=False) for s in sets]
