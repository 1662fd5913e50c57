"""Maps from a new embedding model's space into an old one's, fitted on paired vectors.

Every map here is affine, ``y = x @ W.T + b`` with ``W`` of shape ``(d_old, d_new)``; the kinds
differ in how ``W`` is fitted (see ALGORITHMS.md, "Model upgrades"):

- ``"procrustes"``: the orthogonal ``T = U Vᵀ`` from the SVD of ``Yᵀ X`` (both zero-padded to
  ``max(d_new, d_old)``), truncated to ``(d_old, d_new)``; ``b = 0``. Keeps the geometry.
- ``"ridge"``: least squares with an L2 penalty and an intercept; the penalty is chosen by the
  error on held-out pairs, then refitted on all of them.
- ``"lowrank"``: an orthogonal base with a low-rank residual adapter, ``T (x + L R x)``,
  fitted by alternating Procrustes and reduced-rank ridge regression; the rank is chosen on
  held-out pairs.
- ``"supervised"``: see :mod:`polyvec.models.adapter` (contrastive, on relevance pairs).

Mapped vectors are L2-normalized when the old space is cosine. :func:`fit_best` fits the
unsupervised kinds on a seeded 80/20 split, keeps the one whose mapped held-out items best
retrieve their own old vectors among the held-out old vectors (MRR@10; mean cosine breaks
ties), or the one named, and refits it on all pairs. :func:`fit_calibration` fits the score
calibration used when mapped and native results are merged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..errors import DimensionMismatch, InvalidArgument

__all__ = ["LinearMap", "KINDS", "fit_kind", "fit_best", "split", "held_out_metrics",
           "fit_calibration", "normalize"]

KINDS = ("procrustes", "ridge", "lowrank")
F = TypeVar("F", bound=Callable[..., Any])
_ALPHAS = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
_RANKS = (8, 32, 64)


def one_blas_thread(fn: F) -> F:
    """Run ``fn`` with BLAS limited to one thread when ``threadpoolctl`` is installed.

    The fits are many small ``(d, d)`` decompositions; BLAS threads only add synchronization
    there (measured 4x to 40x slower on a loaded 2-core machine).
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            limit: Any = contextlib.nullcontext()
        else:
            limit = threadpool_limits(1, user_api="blas")
        with limit:
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class LinearMap:
    """A fitted affine map ``new -> old``: ``W`` ``(d_old, d_new)``, ``b`` ``(d_old,)``.

    >>> m = LinearMap("ridge", np.eye(2, dtype=np.float32), np.zeros(2, np.float32))
    >>> m.transform(np.array([[3.0, 4.0]], np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """

    kind: str
    W: np.ndarray
    b: np.ndarray
    normalize: bool = True
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> tuple[int, int]:
        """``(d_new, d_old)``."""
        return int(self.W.shape[1]), int(self.W.shape[0])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map ``(n, d_new)`` vectors into the old space."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.W.shape[1]:
            raise DimensionMismatch(f"mapping input: expected (n, {self.W.shape[1]}), got "
                                    f"{x.shape}")
        y = x @ self.W.T.astype(np.float32) + self.b.astype(np.float32)
        return normalize(y) if self.normalize else y.astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"W": self.W.astype(np.float32), "b": self.b.astype(np.float32)}


def _check_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise DimensionMismatch(f"pairs: expected (n, d_new) and (n, d_old) arrays, got "
                                f"{x.shape} and {y.shape}")
    if len(x) < 4:
        raise InvalidArgument(f"pairs: expected at least 4 paired vectors, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidArgument("pairs: vectors hold NaN or inf")
    return x, y


def _pad(a: np.ndarray, d: int) -> np.ndarray:
    return a if a.shape[1] == d else np.hstack([a, np.zeros((len(a), d - a.shape[1]))])


def _procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Orthogonal ``T`` ``(D, D)`` minimizing ``||pad(x) Tᵀ - pad(y)||``."""
    d = max(x.shape[1], y.shape[1])
    u, _, vt = np.linalg.svd(_pad(y, d).T @ _pad(x, d))
    return u @ vt


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``W`` ``(d_out, d_in)`` and ``b`` of ridge regression with penalty ``alpha·tr(XᵀX)/d``."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    g = xc.T @ xc
    lam = alpha * np.trace(g) / g.shape[0]
    w = np.linalg.solve(g + lam * np.eye(g.shape[0]), xc.T @ yc).T
    return w, my - w @ mx


def _lowrank(x: np.ndarray, y: np.ndarray, rank: int, alpha: float = 1e-3,
             iters: int = 3) -> np.ndarray:
    """``W = (T (I + M))[:d_old, :d_new]`` with ``T`` orthogonal and ``rank(M) <= rank``."""
    d_new, d_old = x.shape[1], y.shape[1]
    d = max(d_new, d_old)
    xp, yp = _pad(x, d), _pad(y, d)
    g = x.T @ x
    reg = g + alpha * np.trace(g) / d_new * np.eye(d_new)
    m = np.zeros((d, d_new))
    for _ in range(iters):
        t = _procrustes(xp + x @ m.T, yp)
        resid = yp @ t - xp            # rotate the targets back; fit the residual from x
        full = np.linalg.solve(reg, x.T @ resid)                      # (d_new, d)
        # reduced-rank regression: project on the top right singular vectors of x @ full,
        # the top eigenvectors of fullᵀ (xᵀx) full (d x d, never n x d)
        _, vecs = np.linalg.eigh(full.T @ g @ full)
        v = vecs[:, ::-1][:, :rank]
        m = (full @ v @ v.T).T                                        # (d, d_new)
    t = _procrustes(xp + x @ m.T, yp)
    return (t @ (np.eye(d)[:, :d_new] + m))[:d_old]


def split(n: int, seed: int, frac: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / held-out row split (at least 2 held out)."""
    perm = np.random.default_rng(seed).permutation(n)
    h = max(2, int(round(n * frac)))
    return np.sort(perm[h:]), np.sort(perm[:h])


def held_out_metrics(m: LinearMap, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean cosine of mapped vs true old vectors, and self-retrieval MRR@10 among the pairs."""
    p = m.transform(x)
    yn = normalize(np.asarray(y, np.float32))
    cos = float(np.mean(np.sum(normalize(p) * yn, axis=1)))
    s = p @ yn.T
    rank = (s > np.diag(s)[:, None]).sum(1)
    mrr = float(np.mean(np.where(rank < 10, 1.0 / (rank + 1), 0.0)))
    return {"cosine": cos, "self_mrr10": mrr}


@one_blas_thread
def fit_kind(kind: str, x: np.ndarray, y: np.ndarray, *, normalize_out: bool = True,
             seed: int = 0) -> LinearMap:
    """Fit one unsupervised kind on paired ``x`` (new) / ``y`` (old) vectors.

    Hyper-parameters (ridge penalty, adapter rank) are chosen on a seeded held-out split and
    the map is refitted on all pairs.
    """
    x, y = _check_pairs(x, y)
    d_new, d_old = x.shape[1], y.shape[1]
    if kind == "procrustes":
        t = _procrustes(x, y)
        return LinearMap(kind, t[:d_old, :d_new], np.zeros(d_old), normalize_out)
    tr, ho = split(len(x), seed)
    if kind == "ridge":
        best = min(_ALPHAS, key=lambda a: _err(LinearMap(kind, *_ridge(x[tr], y[tr], a)),
                                               x[ho], y[ho]))
        w, b = _ridge(x, y, best)
        return LinearMap(kind, w, b, normalize_out, {"alpha": best})
    if kind == "lowrank":
        ranks = [r for r in _RANKS if r < min(d_new, len(tr))] or [1]
        best = min(ranks, key=lambda r: _err(
            LinearMap(kind, _lowrank(x[tr], y[tr], r), np.zeros(d_old)), x[ho], y[ho]))
        return LinearMap(kind, _lowrank(x, y, best), np.zeros(d_old), normalize_out,
                         {"rank": best})
    raise InvalidArgument(f"kind: expected one of {list(KINDS) + ['supervised']}, got {kind!r}")


def _err(m: LinearMap, x: np.ndarray, y: np.ndarray) -> float:
    p = x @ m.W.T + m.b
    return float(np.mean((p - y) ** 2))


@one_blas_thread
def fit_best(x: np.ndarray, y: np.ndarray, *, kind: str | None = None, seed: int = 0,
             normalize_out: bool = True) -> tuple[LinearMap, dict[str, dict[str, float]]]:
    """Fit every unsupervised kind (or ``kind``) and keep the best on held-out pairs.

    Returns the map refitted on all pairs and the held-out metrics of each kind tried.
    """
    x, y = _check_pairs(x, y)
    kinds = KINDS if kind is None else (kind,)
    tr, ho = split(len(x), seed)
    scores = {k: held_out_metrics(fit_kind(k, x[tr], y[tr], normalize_out=normalize_out,
                                           seed=seed), x[ho], y[ho]) for k in kinds}
    best = max(kinds, key=lambda k: (scores[k]["self_mrr10"], scores[k]["cosine"]))
    m = fit_kind(best, x, y, normalize_out=normalize_out, seed=seed)
    m.params["held_out"] = scores
    return m, scores


@one_blas_thread
def fit_calibration(m: LinearMap, x: np.ndarray, y: np.ndarray, *, seed: int = 0,
                    top: int = 20) -> tuple[float, float]:
    """Linear map ``a·s + b`` from mapped-space scores to native new-space scores.

    Fitted by least squares on the paired items used as queries against each other: for each
    pair i, its ``top`` best mapped candidates j (self included) give the mapped score
    ``map(x_i)·y_j`` and the native score ``x_i·x_j``, so the fit is accurate where top-k
    merging happens.
    """
    x = normalize(np.asarray(x, np.float32))
    y = normalize(np.asarray(y, np.float32))
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(x))[:2000]
    p = m.transform(x[rows])
    mapped = p @ y.T
    native = x[rows] @ x.T
    t = min(top, len(x))
    idx = np.argpartition(-mapped, t - 1, axis=1)[:, :t]
    s = np.take_along_axis(mapped, idx, 1).ravel()
    n = np.take_along_axis(native, idx, 1).ravel()
    if np.ptp(s) < 1e-9:
        return 1.0, 0.0
    a, b = np.polyfit(s.astype(np.float64), n.astype(np.float64), 1)
    return float(a), float(b)
