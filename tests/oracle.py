"""Brute-force references and tie-tolerant comparison used by the oracle tests."""

from __future__ import annotations

import numpy as np


def dense_scores(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    q = q.astype(np.float64)
    x = x.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=-1, keepdims=True)
        return q @ x.T  # stored vectors are already normalized
    if metric == "dot":
        return q @ x.T
    return -(((q[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def maxsim(q: np.ndarray, doc: np.ndarray) -> float:
    return float((q.astype(np.float64) @ doc.astype(np.float64).T).max(axis=1).sum())


def assert_topk_matches(ids: np.ndarray, scores: np.ndarray, ref: dict, k: int,
                        atol: float = 1e-3) -> None:
    """``ids/scores`` (one query) is a valid top-k of ``ref`` (id -> exact score), ties allowed."""
    want = sorted(ref.values(), reverse=True)[:k]
    got = [i for i in ids if i is not None]
    assert len(got) == min(k, len(ref)), (len(got), min(k, len(ref)))
    assert len(set(got)) == len(got), "duplicate ids in a result"
    np.testing.assert_allclose(scores[: len(got)], want, atol=atol, rtol=1e-4)
    for i, s in zip(got, scores, strict=False):
        assert abs(ref[i] - s) <= atol + 1e-4 * abs(s), (i, ref[i], s)
    assert np.isneginf(scores[len(got):]).all()
