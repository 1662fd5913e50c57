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

from .._kernels.refine import refine_topk

__all__ = ["rerank_candidates"]


def rerank_candidates(q: np.ndarray, cand: np.ndarray, rerank: np.ndarray, k: int,
                      metric: str, *, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``cand`` (nq, c) rows (``-1`` = none) by exact score: ``(scores, rows)``.

    Scores are inner products for ``cosine``/``dot`` and minus squared distances for ``l2``.
    """
    return refine_topk(q, cand, rerank, k, l2=metric == "l2", backend=backend)
