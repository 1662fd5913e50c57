"""The supervised adapter: a new->old linear map trained so mapped new-model queries retrieve
their relevant old-space documents.

Given relevance pairs (new-model query vector ``q_i``, old-model vector ``d_i`` of a relevant
document), the map ``f(q) = normalize(W q + b)`` is trained with the in-batch contrastive
(InfoNCE) loss: in a batch of B pairs, query i must score its own document above the other
B-1 documents, ``-log softmax_j(f(q_i)·d_j / τ)[i]``. ``W, b`` start from an unsupervised map
(fitted on paired items) and a penalty ``μ·||W - W₀||²`` keeps the map close to it, so
documents never seen in training still land where the pairs put them. Plain numpy with
hand-written gradients and Adam; shuffles come from ``default_rng(seed)``, so a fit is
deterministic. The number of epochs is chosen on a held-out 10 % of the pairs (MRR@10 of each
held-out query finding its document among the held-out and training documents), then the
map is refitted on all pairs for that many epochs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DimensionMismatch, InvalidArgument
from .mappings import LinearMap, normalize, one_blas_thread, split

__all__ = ["fit_supervised", "infonce_loss"]


def infonce_loss(w: np.ndarray, b: np.ndarray, q: np.ndarray, d: np.ndarray, tau: float
                 ) -> tuple[float, np.ndarray, np.ndarray]:
    """In-batch InfoNCE loss of ``normalize(q Wᵀ + b)`` against ``d`` and its gradients."""
    f = q @ w.T + b
    norms = np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    fn = f / norms
    logits = fn @ d.T / tau
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    n = len(q)
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(n), np.arange(n)], 1e-30))))
    g = p
    g[np.arange(n), np.arange(n)] -= 1.0
    g /= n * tau
    dfn = g @ d                                             # (n, d_old)
    df = (dfn - fn * np.sum(dfn * fn, axis=1, keepdims=True)) / norms
    return loss, df.T @ q, df.sum(0)


def _mrr(w: np.ndarray, b: np.ndarray, q: np.ndarray, d: np.ndarray,
         extra: np.ndarray | None = None) -> float:
    """MRR@10 of query i finding document i among ``d`` (and the ``extra`` documents)."""
    f = normalize(q @ w.T + b)
    own = np.sum(f * d, axis=1)
    s = f @ (d if extra is None else np.vstack([d, extra])).T
    rank = (s > own[:, None]).sum(1)
    return float(np.mean(np.where(rank < 10, 1.0 / (rank + 1), 0.0)))


def _train(w0: np.ndarray, b0: np.ndarray, q: np.ndarray, d: np.ndarray, *, epochs: int,
           batch: int, lr: float, tau: float, mu: float, seed: int,
           val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
           ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    w, b = w0.copy(), b0.copy()
    mw, vw = np.zeros_like(w), np.zeros_like(w)
    mb, vb = np.zeros_like(b), np.zeros_like(b)
    rng = np.random.default_rng(seed)
    curve: list[float] = []
    step = 0
    for _ in range(epochs):
        perm = rng.permutation(len(q))
        for i in range(0, len(q) - 1, batch):
            rows = perm[i:i + batch]
            if len(rows) < 2:
                continue
            _, gw, gb = infonce_loss(w, b, q[rows], d[rows], tau)
            gw = gw + 2 * mu * (w - w0)
            step += 1
            for p_, g_, m_, v_ in ((w, gw, mw, vw), (b, gb, mb, vb)):
                m_ *= 0.9
                m_ += 0.1 * g_
                v_ *= 0.999
                v_ += 0.001 * g_ * g_
                p_ -= lr * (m_ / (1 - 0.9 ** step)) / (np.sqrt(v_ / (1 - 0.999 ** step)) + 1e-8)
        if val is not None:
            curve.append(_mrr(w, b, *val))
    return w, b, curve


@one_blas_thread
def fit_supervised(init: LinearMap, queries: np.ndarray, docs: np.ndarray, *, seed: int = 0,
                   max_epochs: int = 30, batch: int = 256, lr: float = 1e-3,
                   tau: float = 0.02, mu: float = 1e-3) -> LinearMap:
    """Train the contrastive adapter from ``init`` on (new query, old relevant doc) pairs.

    Parameters
    ----------
    init : LinearMap
        The unsupervised map to start from (and to stay near).
    queries : (m, d_new) array
        New-model query vectors.
    docs : (m, d_old) array
        Old-model vectors of each query's relevant document.
    """
    q = np.asarray(queries, np.float64)
    d = normalize(np.asarray(docs, np.float32)).astype(np.float64)
    d_new, d_old = init.dims
    if q.ndim != 2 or d.ndim != 2 or len(q) != len(d) or q.shape[1] != d_new \
            or d.shape[1] != d_old:
        raise DimensionMismatch(f"relevance pairs: expected (m, {d_new}) queries and "
                                f"(m, {d_old}) documents, got {q.shape} and {d.shape}")
    if len(q) < 20:
        raise InvalidArgument(f"relevance: expected at least 20 pairs, got {len(q)}")
    w0, b0 = init.W.astype(np.float64), init.b.astype(np.float64)
    kw: dict[str, Any] = {"batch": batch, "lr": lr, "tau": tau, "mu": mu, "seed": seed}
    tr, ho = split(len(q), seed, 0.1)
    val = (q[ho], d[ho], d[tr])
    _, _, curve = _train(w0, b0, q[tr], d[tr], epochs=max_epochs, val=val, **kw)
    start = _mrr(w0, b0, *val)
    best = int(np.argmax(curve)) + 1
    if curve[best - 1] <= start:
        best = 0
    w, b, _ = _train(w0, b0, q, d, epochs=best, **kw)
    params = {"base": init.kind, "epochs": best, "tau": tau, "mu": mu, "lr": lr,
              "batch": batch, "pairs": len(q), "held_out_mrr10_start": start,
              "held_out_mrr10_curve": [round(c, 4) for c in curve]}
    return LinearMap("supervised", w, b, init.normalize, params)
