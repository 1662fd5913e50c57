"""From a score to the probability that the hit is relevant, fitted on labelled queries.

- ``isotonic``: the pool-adjacent-violators fit of relevance (0/1) on score: non-decreasing,
  flat across each pooled block of scores, linear between blocks, flat beyond them (the
  function scikit-learn's ``IsotonicRegression`` fits).
- ``platt``: a logistic curve ``1 / (1 + exp(-(a * score + b)))``, fitted by Newton's method
  on the log-loss (with Platt's target smoothing).

A model is a small dict (kept in the collection's catalog meta) that :func:`probabilities`
reads back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgument

__all__ = ["METHODS", "fit", "probabilities"]

METHODS = ("isotonic", "platt")


def fit(scores: np.ndarray, relevant: np.ndarray, method: str) -> dict[str, Any]:
    """The model of ``method`` fitted on ``(score, relevant)`` pairs."""
    if method not in METHODS:
        raise InvalidArgument(f"method: expected one of {list(METHODS)}, got {method!r}")
    s = np.asarray(scores, np.float64)
    y = np.asarray(relevant, np.float64)
    if method == "isotonic":
        x, p = _isotonic(s, y)
        return {"method": method, "x": x.tolist(), "p": p.tolist()}
    a, b = _platt(s, y)
    return {"method": method, "a": a, "b": b}


def probabilities(model: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """The probability of relevance of each score (``-inf`` scores, empty slots: 0)."""
    s = np.asarray(scores, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if model["method"] == "isotonic":
            p = np.interp(s, model["x"], model["p"])
        else:
            p = 1 / (1 + np.exp(-(model["a"] * s + model["b"])))
    return np.where(np.isfinite(s), p, 0.0)


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


def _platt(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    pos, neg = float(y.sum()), float(len(y) - y.sum())
    t = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))  # Platt's smoothed targets
    mu, sd = float(s.mean()), float(s.std()) or 1.0
    z = (s - mu) / sd  # (fitted on standardised scores, for a well-conditioned Newton step)
    a, b = 0.0, float(np.log((pos + 1) / (neg + 1)))
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a * z + b)))
        g = np.array([np.sum((p - t) * z), np.sum(p - t)])
        w = p * (1 - p) + 1e-12
        h = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        a, b = a - float(step[0]), b - float(step[1])
        if np.abs(step).max() < 1e-10:
            break
    return a / sd, b - a * mu / sd
