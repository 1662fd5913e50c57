"""LeanVec projections: search in ``dim`` learned dims, rerank with the full vectors.

In-distribution (``Proj(dim)``): one matrix ``P`` (dim, D) for both sides, the top-``dim``
eigenvectors of the database second moment ``K_X = E[x x^T]`` (PCA without centering, which
is what inner products need).

Out-of-distribution (``Proj(dim, kind="ood")``), for queries unlike the documents: with
``K_Q = E[q q^T]`` from a query sample, shrunk as ``K_Q + reg * tr(K_Q) / D * I``, and
``U`` the top-``dim`` eigenvectors of ``K_Q^{1/2} K_X K_Q^{1/2}``, queries map by
``A = U^T K_Q^{-1/2}`` and documents by ``B = U^T K_Q^{1/2}``, so that
``<A q, B x> = q^T K_Q^{-1/2} U U^T K_Q^{1/2} x ~= <q, x>`` (exact when dim = D). When
``K_Q = K_X`` the products are those of the in-distribution projection. The pair is then
re-balanced (``B`` given orthonormal rows, its inverse moved into ``A``; the products do not
change) so that document vectors can carry a graph index.

The projected space is for inner products: with ``kind="ood"`` the two sides differ, so an
index over ``transform_docs`` must score by dot product (not l2, not re-normalized cosine).
Eigenvector signs are fixed (largest-magnitude entry positive) so refits are reproducible.

>>> import numpy as np
>>> from polyvec.index_spec import Proj
>>> x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
>>> t = ProjTransform(Proj(8)).fit(x)
>>> bool(np.allclose(t.transform_queries(x[:2]) @ t.transform_docs(x).T, x[:2] @ x.T, atol=1e-4))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgument
from ..index_spec import Proj
from .base import Transform

__all__ = ["ProjTransform", "second_moment", "top_eigenvectors"]


def second_moment(x: np.ndarray) -> np.ndarray:
    """``E[x x^T]`` in float64 (no centering)."""
    x64 = x.astype(np.float64)
    return (x64.T @ x64) / len(x64)


def top_eigenvectors(k: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of the symmetric ``k``, top ``dim``."""
    w, v = np.linalg.eigh((k + k.T) / 2)
    order = np.argsort(w)[::-1][:dim]
    w, v = w[order], v[:, order]
    flip = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    return w, v * np.where(flip == 0, 1.0, flip)


def _sqrt_and_inv_sqrt(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, v = np.linalg.eigh((k + k.T) / 2)
    w = np.maximum(w, w.max() * 1e-12)  # a singular K_Q (reg=0) stays invertible
    return (v * np.sqrt(w)) @ v.T, (v / np.sqrt(w)) @ v.T


class ProjTransform(Transform):
    """LeanVec projection. Fitted: ``docs_`` (B) and ``queries_`` (A), float32 (dim, D);
    for ``kind="id"`` they are the same matrix (stored once)."""

    spec_type = Proj
    spec: Proj
    docs_: np.ndarray
    queries_: np.ndarray

    def _fit(self, x: np.ndarray, queries: np.ndarray | None) -> None:
        kx = second_moment(x)
        if self.spec.kind == "id":
            _, p = top_eigenvectors(kx, self.spec.dim)
            self.docs_ = self.queries_ = p.T.astype(np.float32)
            return
        if queries is None:
            raise InvalidArgument("Proj(kind='ood'): expected a query sample, got none: call "
                                  "fit(x, queries=q)")
        kq = second_moment(queries)
        kq += self.spec.reg * np.trace(kq) / len(kq) * np.eye(len(kq))
        s, s_inv = _sqrt_and_inv_sqrt(kq)
        _, u = top_eigenvectors(s @ kx @ s, self.spec.dim)
        a, b = u.T @ s_inv, u.T @ s
        # <Aq, Bx> is unchanged by A -> G^{1/2} A, B -> G^{-1/2} B with G = B B^T; this
        # choice gives B orthonormal rows, so the documents keep the geometry of an orthogonal
        # projection, the one a graph index can navigate (raw B stretches some directions
        # by K_Q's eigenvalues, and an inner-product graph over it degenerates)
        g_half, g_inv_half = _sqrt_and_inv_sqrt(b @ b.T)
        self.queries_ = (g_half @ a).astype(np.float32)
        self.docs_ = (g_inv_half @ b).astype(np.float32)

    def _docs(self, x: np.ndarray) -> np.ndarray:
        return x @ self.docs_.T

    def _queries(self, q: np.ndarray) -> np.ndarray:
        return q @ self.queries_.T

    def _arrays(self) -> dict[str, np.ndarray]:
        if self.spec.kind == "id":
            return {"docs": self.docs_}
        return {"docs": self.docs_, "queries": self.queries_}

    def _load(self, arrays: dict[str, np.ndarray], get: Any) -> None:
        shape = (self.spec.dim, self.dim_)
        self.docs_ = get("docs", np.float32, shape)
        self.queries_ = self.docs_ if self.spec.kind == "id" else get("queries", np.float32,
                                                                       shape)
