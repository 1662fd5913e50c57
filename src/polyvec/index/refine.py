"""Exact refine: rescore an index's candidates against full-precision vectors.

A compressed stage (codec or transform) fetches ``ceil(k * oversample)`` candidates; only
those rows of the ``rerank`` vectors are gathered (they may be a memory-mapped float16 file)
and scored exactly, and the best ``k`` are returned.

>>> import numpy as np
>>> x = np.eye(4, dtype=np.float32)
>>> s, r = rerank_candidates(x[:1], np.array([[3, 0, -1]]), x, 2, "dot")
>>> r.tolist()
[[0, 3]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["rerank_candidates"]


def rerank_candidates(q: np.ndarray, cand: np.ndarray, rerank: np.ndarray, k: int,
                      metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``cand`` (nq, c) rows (``-1`` = none) by exact score: ``(scores, rows)``.

    Scores are inner products for ``cosine``/``dot`` and minus squared distances for ``l2``.
    """
    nq, c = cand.shape
    valid = cand >= 0
    uniq, inv = np.unique(np.where(valid, cand, 0), return_inverse=True)
    vecs = np.asarray(rerank[uniq], dtype=np.float32)  # one gather of the distinct rows
    g = vecs[inv.reshape(nq, c)]  # (nq, c, d)
    s = np.einsum("qcd,qd->qc", g, q, dtype=np.float32)
    if metric == "l2":
        s = 2.0 * s - np.einsum("qcd,qcd->qc", g, g) - np.einsum("qd,qd->q", q, q)[:, None]
    s = np.where(valid, s, -np.inf).astype(np.float32)
    kk = min(k, c)
    order = np.argsort(-s, axis=1, kind="stable")[:, :kk]
    out_s = np.full((nq, k), -np.inf, np.float32)
    out_r = np.full((nq, k), -1, np.int64)
    out_s[:, :kk] = np.take_along_axis(s, order, axis=1)
    out_r[:, :kk] = np.take_along_axis(cand, order, axis=1)
    out_r[out_s == -np.inf] = -1
    return out_s, out_r
