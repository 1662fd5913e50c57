"""From a score to the probability that the hit is relevant, fitted on labelled queries.

- ``isotonic``: the pool-adjacent-violators fit of relevance (0/1) on score: non-decreasing,
  flat across each pooled block of scores, linear between blocks, flat beyond them (the
  function scikit-learn's ``IsotonicRegression`` fits).
- ``platt``: a logistic curve ``1 / (1 + exp(-(a * score + b)))``, fitted by Newton's method
  on the log-loss (with Platt's target smoothing).
- ``ranked``: the same logistic fit on three features of a hit *within its query's ranked
  list*: its score, its score minus the query's top score, and 1 / its rank. A raw score
  means different things for different queries (BM25's grows with the query's terms; one
  relevant item among near-duplicates scores like them); its place in the list says more.
  Its probabilities need the whole list, best first, as searches return it.

A model is a small dict (kept in the collection's catalog meta) that :func:`probabilities`
reads back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgument

__all__ = ["METHODS", "fit", "probabilities"]

METHODS = ("isotonic", "platt", "ranked")


def fit(scores: np.ndarray, relevant: np.ndarray, method: str) -> dict[str, Any]:
    """The model of ``method`` fitted on labelled hits: ``scores`` and ``relevant`` of one
    shape, each row a query's hits best first (``-inf`` in empty slots, skipped), or one row
    of pairs (``isotonic`` and ``platt`` read only the scores)."""
    if method not in METHODS:
        raise InvalidArgument(f"method: expected one of {list(METHODS)}, got {method!r}")
    s = np.atleast_2d(np.asarray(scores, np.float64))
    y = np.atleast_2d(np.asarray(relevant, np.float64))
    filled = np.isfinite(s)
    if method == "isotonic":
        x, p = _isotonic(s[filled], y[filled])
        return {"method": method, "x": x.tolist(), "p": p.tolist()}
    if method == "platt":
        w = _logistic(s[filled][:, None], y[filled])
        return {"method": method, "a": w[0], "b": w[1]}
    return {"method": method, "w": _logistic(_ranked(s)[filled], y[filled], ridge=1e-3)}


def probabilities(model: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """The probability of relevance of each score (``-inf`` scores, empty slots: 0); for a
    ``ranked`` model ``scores`` are lists best first (one, or one row per query)."""
    s = np.asarray(scores, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if model["method"] == "isotonic":
            p = np.interp(s, model["x"], model["p"])
        elif model["method"] == "platt":
            p = 1 / (1 + np.exp(-(model["a"] * s + model["b"])))
        else:
            z = _ranked(np.atleast_2d(s)) @ np.asarray(model["w"][:-1]) + model["w"][-1]
            p = _sigmoid(z).reshape(s.shape)
    return np.where(np.isfinite(s), p, 0.0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # (1 / (1 + exp(-z)), without overflow)


def _ranked(s: np.ndarray) -> np.ndarray:
    """Each hit's features in its row (best first): score, score - the row's top score,
    1 / rank (``(nq, k, 3)``; empty slots give non-finite rows, never read)."""
    rank = np.arange(1, s.shape[1] + 1, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.stack([s, s - s[:, :1], np.broadcast_to(1 / rank, s.shape)], axis=-1)


def _isotonic(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool adjacent violators over the pairs sorted by score (equal scores pooled first):
    blocks of (lowest score, highest score, relevance sum, count), merged while a block's
    mean relevance is not below its successor's. Each block is flat from its lowest to its
    highest score; the curve is linear between blocks (scikit-learn's knots)."""
    xs, inv = np.unique(s, return_inverse=True)
    sums, counts = np.bincount(inv, weights=y), np.bincount(inv).astype(float)
    blocks: list[list[float]] = []  # [lowest score, highest score, relevance sum, count]
    for xi, yi, ni in zip(xs.tolist(), sums.tolist(), counts.tolist(), strict=True):
        blocks.append([xi, xi, yi, ni])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][3] >= blocks[-1][2] / blocks[-1][3]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0], last[1], blocks[-1][2] + last[2],
                          blocks[-1][3] + last[3]]
    x = np.array([e for b in blocks for e in (b[0], b[1])])
    p = np.array([b[2] / b[3] for b in blocks for _ in (0, 1)])
    return x, p


def _logistic(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> list[float]:
    """Weights ``[w_1..w_d, bias]`` of ``1 / (1 + exp(-(x @ w + bias)))`` minimising the
    log-loss against Platt's smoothed targets (plus ``ridge`` times the squared weights of
    the standardised features), by Newton's method."""
    pos, neg = float(y.sum()), float(len(y) - y.sum())
    t = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))  # Platt's smoothed targets
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = np.column_stack([(x - mu) / sd, np.ones(len(x))])  # (well-conditioned steps)
    w = np.zeros(z.shape[1])
    w[-1] = np.log((pos + 1) / (neg + 1))
    reg = ridge * len(x) * np.diag([1.0] * (z.shape[1] - 1) + [0.0])

    def loss(w: np.ndarray) -> float:
        zw = z @ w
        return float(np.sum(np.logaddexp(0, zw) - t * zw) + 0.5 * w @ reg @ w)

    for _ in range(100):
        p = _sigmoid(z @ w)
        g = z.T @ (p - t) + reg @ w
        h = (z * (p * (1 - p) + 1e-12)[:, None]).T @ z + reg
        step = np.linalg.solve(h + 1e-9 * np.eye(len(w)), g)
        rate, before = 1.0, loss(w)
        while rate > 1e-6 and loss(w - rate * step) > before:  # (damped: never uphill)
            rate /= 2
        w -= rate * step
        if np.abs(rate * step).max() < 1e-10:
            break
    scaled = w[:-1] / sd
    return [*scaled.tolist(), float(w[-1] - scaled @ mu)]
