"""Exact rescoring of ANN candidates: gather the candidate rows, score them, keep the top k.

``refine_numpy`` is the reference twin (one gather of the distinct rows, an einsum, a stable
argsort). The numba kernel scores each query's candidates straight from the (possibly
memory-mapped) float32 matrix, with no gathered copy and no sort: a ``k``-slot insertion
list per query. Both break ties by candidate position, so they agree row for row whenever
the scores differ by more than rounding.

Scores are inner products (``l2=False``) or minus squared Euclidean distances (``l2=True``);
candidate ``-1`` means none, and output slots beyond the valid candidates are ``(-inf, -1)``.

>>> import numpy as np
>>> x = np.eye(4, dtype=np.float32)
>>> s, r = refine_topk(x[:1], np.array([[3, 0, -1]]), x, 2, l2=False, backend="numba")
>>> r.tolist(), s.tolist()
([[0, 3]], [[1.0, 0.0]])
"""

from __future__ import annotations

import numpy as np

from ._numba import lazy_njit, register_warmer, resolve_backend

__all__ = ["refine_numpy", "refine_topk"]


def refine_numpy(q: np.ndarray, cand: np.ndarray, x: np.ndarray, k: int, l2: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Reference: ``(scores, rows)``, each (nq, k), best first."""
    nq, c = cand.shape
    valid = cand >= 0
    uniq, inv = np.unique(np.where(valid, cand, 0), return_inverse=True)
    vecs = np.asarray(x[uniq], dtype=np.float32)  # one gather of the distinct rows
    g = vecs[inv.reshape(nq, c)]  # (nq, c, d)
    s = np.einsum("qcd,qd->qc", g, q, dtype=np.float32)
    if l2:
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


def _refine_loop(q, cand, x, l2, k):  # pragma: no cover
    nq, c = cand.shape
    d = q.shape[1]
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_r = np.full((nq, k), -1, dtype=np.int64)
    for i in range(nq):
        filled = 0
        qq = np.float32(0.0)
        if l2:
            for t in range(d):
                qq += q[i, t] * q[i, t]
        for j in range(c):
            r = cand[i, j]
            if r < 0:
                continue
            acc = np.float32(0.0)
            if l2:
                for t in range(d):
                    diff = q[i, t] - x[r, t]
                    acc += diff * diff
                acc = -acc
            else:
                for t in range(d):
                    acc += q[i, t] * x[r, t]
            if filled == k and acc <= out_s[i, k - 1]:
                continue
            p = filled if filled < k else k - 1  # insertion keeps earlier candidates first on ties
            while p > 0 and out_s[i, p - 1] < acc:
                out_s[i, p] = out_s[i, p - 1]
                out_r[i, p] = out_r[i, p - 1]
                p -= 1
            out_s[i, p] = acc
            out_r[i, p] = r
            if filled < k:
                filled += 1
    return out_s, out_r


_refine_serial = lazy_njit(fastmath=False)(_refine_loop)


@register_warmer
def _warm_refine() -> None:
    x = np.zeros((2, 4), np.float32)
    x.flags.writeable = False  # sealed vectors are read-only memory maps
    _refine_serial(np.zeros((1, 4), np.float32), np.zeros((1, 2), np.int64), x, False, 1)


def refine_topk(q: np.ndarray, cand: np.ndarray, x: np.ndarray, k: int, *, l2: bool,
                backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of the candidate rows ``cand`` (nq, c) of ``x`` by exact score.

    ``q`` float32 (nq, d); ``x`` float32 or float16 (n, d), may be memory-mapped. float16
    rows are gathered and widened first (numba has no float16 arithmetic).
    """
    if resolve_backend(backend, light=True) == "numpy":
        return refine_numpy(q, cand, x, k, l2)
    rows = np.ascontiguousarray(cand, dtype=np.int64)
    widened = x.dtype != np.float32
    if widened:  # score positions in a gathered float32 copy, then map back to rows
        valid = rows >= 0
        x = np.asarray(x[np.where(valid, rows, 0).ravel()], dtype=np.float32)
        cand = np.where(valid, np.arange(rows.size).reshape(rows.shape), -1)
    else:
        cand = rows
    out_s, out_r = _refine_serial(np.ascontiguousarray(q, dtype=np.float32), cand, x,
                                  bool(l2), int(k))
    if widened:
        out_r = np.where(out_r >= 0, rows.ravel()[np.maximum(out_r, 0)], -1)
    return out_s, out_r
