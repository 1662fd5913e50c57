"""MUVERA fixed dimensional encodings (FDE): one vector per token set whose inner products
approximate MaxSim ("MUVERA: Multi-Vector Retrieval via Fixed Dimensional Encodings").

For each of ``r_reps`` repetitions ``r``:

* SimHash: a Gaussian ``G_r`` (dim x k_sim); the bucket of a token ``x`` is the integer whose
  bit ``j`` is ``<G_r[:, j], x> > 0`` (plain binary, ``B = 2**k_sim`` buckets);
* inner projection ``psi_r(x) = S_r x / sqrt(d_proj)`` with ``S_r`` a random +-1 matrix
  (d_proj x dim); the identity when ``d_proj == dim``;
* query block ``b`` = sum of ``psi_r(q)`` over the query tokens in bucket ``b`` (never
  normalized, never filled); document block ``b`` = mean of ``psi_r(p)`` over the document
  tokens in bucket ``b``, and for an empty bucket ``psi_r(p*)`` of the token ``p*`` whose
  bucket is nearest to ``b`` in Hamming distance (first token on ties).

The blocks of all repetitions are concatenated (``r_reps * B * d_proj`` dims). An optional
final projection to ``d_final`` dims is a random +-1 projection with one non-zero per input
coordinate (a count sketch, as Google's reference implementation applies it).

All random state (``G_r``, ``S_r``, the sketch) is drawn from ``np.random.default_rng(seed)``
and the token dimension, so an :class:`FDE` is fully described by its :class:`FDESpec` and
``dim`` and is never stored.

>>> rng = np.random.default_rng(0)
>>> q = rng.standard_normal((4, 32)).astype(np.float32)
>>> fde = FDE(FDESpec(k_sim=2, d_proj=8, r_reps=3), dim=32)
>>> fde.dim_out, fde.encode_queries([q]).shape, fde.encode_documents([q, q[:1]]).shape
(96, (1, 96), (2, 96))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._kernels.fde import fde_aggregate
from ..errors import DimensionMismatch, InvalidArgument
from ..index_spec import FDESpec  # the settings live in the spec layer

__all__ = ["FDESpec", "FDE", "pack_sets"]

_CHUNK_FLOATS = 1 << 24  # projected token floats (T x R x d_proj) held at once


def _int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (
            hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise InvalidArgument(f"FDESpec: expected {name} an int {bound}, got {value!r}")
    return value


def pack_sets(sets: Sequence[np.ndarray] | tuple[np.ndarray, np.ndarray], dim: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, offsets)`` from a list of ``(t_i, dim)`` arrays, or checked as given."""
    if isinstance(sets, tuple) and len(sets) == 2 and np.asarray(sets[1]).ndim == 1:
        tokens, offsets = np.asarray(sets[0]), np.asarray(sets[1], dtype=np.int64)
    else:
        arrs = [np.asarray(s) for s in sets]
        for i, s in enumerate(arrs):
            if s.ndim != 2 or s.shape[1] != dim:
                raise DimensionMismatch(f"token set {i}: expected shape (tokens, {dim}), got "
                                        f"{s.shape}")
        offsets = np.zeros(len(arrs) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in arrs], out=offsets[1:])
        tokens = np.concatenate(arrs) if arrs else np.zeros((0, dim), np.float32)
    if tokens.ndim != 2 or tokens.shape[1] != dim:
        raise DimensionMismatch(f"tokens: expected shape (n, {dim}), got {tokens.shape}")
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(tokens) or (
            np.diff(offsets) < 0).any():
        raise InvalidArgument(f"offsets: expected a non-decreasing array from 0 to "
                              f"{len(tokens)}, got {offsets[:3]}...{offsets[-1:]}")
    return tokens, offsets


class FDE:
    """The encoder of one :class:`FDESpec` for ``dim``-d tokens (state rebuilt from the seed)."""

    def __init__(self, spec: FDESpec, dim: int) -> None:
        if not isinstance(spec, FDESpec):
            raise InvalidArgument(f"FDE: expected an FDESpec, got {spec!r}")
        self.spec = spec
        self.dim = _int("dim", dim, 1)
        self.d_proj = min(spec.d_proj, dim)
        rng = np.random.default_rng(spec.seed)
        r, k = spec.r_reps, spec.k_sim
        #: SimHash Gaussians, all repetitions side by side: column r*k_sim + j is g_{r,j}
        self.gaussians = rng.standard_normal((dim, r * k)).astype(np.float32)
        self.projection: np.ndarray | None = None  # (dim, R * d_proj), None = identity
        if spec.d_proj < dim:
            signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=(r, self.d_proj, dim))
            self.projection = np.ascontiguousarray(
                (signs / np.float32(math.sqrt(self.d_proj))).transpose(2, 0, 1).reshape(
                    dim, r * self.d_proj))
        self.raw_dim = r * spec.n_buckets * self.d_proj
        self.sketch: tuple[np.ndarray, np.ndarray] | None = None
        if spec.d_final is not None:
            self.sketch = (rng.integers(0, spec.d_final, self.raw_dim),
                           rng.choice(np.array([-1.0, 1.0], np.float32), self.raw_dim))
        self._weights = (1 << np.arange(k, dtype=np.int32)) if k else np.zeros(0, np.int32)

    @property
    def dim_out(self) -> int:
        return self.spec.dim_out(self.dim)

    def __repr__(self) -> str:
        return f"FDE({self.spec!r}, dim={self.dim})"

    # -- the two stages before aggregation --------------------------------------------------
    def bucket_ids(self, tokens: np.ndarray) -> np.ndarray:
        """(T, R) int32 bucket of each token per repetition (bit j = sign of g_{r,j})."""
        x = np.asarray(tokens, dtype=np.float32)
        k = self.spec.k_sim
        if k == 0:
            return np.zeros((len(x), self.spec.r_reps), dtype=np.int32)
        bits = (x @ self.gaussians > 0).reshape(len(x), self.spec.r_reps, k)
        return (bits.astype(np.int32) @ self._weights).astype(np.int32)

    def project(self, tokens: np.ndarray) -> np.ndarray:
        """(T, R, d_proj) float32 inner projections psi_r of each token."""
        x = np.asarray(tokens, dtype=np.float32)
        if self.projection is None:
            return np.ascontiguousarray(np.broadcast_to(
                x[:, None, :], (len(x), self.spec.r_reps, self.dim)))
        return (x @ self.projection).reshape(len(x), self.spec.r_reps, self.d_proj)

    # -- encodings ---------------------------------------------------------------------------
    def encode_documents(self, sets: Sequence[np.ndarray] | tuple[np.ndarray, np.ndarray], *,
                         backend: str = "auto") -> np.ndarray:
        """(n, dim_out) float32: bucket means, empty buckets filled from the Hamming-nearest
        token. ``sets``: a list of ``(t_i, dim)`` arrays or a ``(tokens, offsets)`` pair."""
        return self._encode(sets, average=True, fill=True, backend=backend)

    def encode_queries(self, sets: Sequence[np.ndarray] | tuple[np.ndarray, np.ndarray], *,
                       backend: str = "auto") -> np.ndarray:
        """(n, dim_out) float32: bucket sums, no fill. ``sets`` as for documents."""
        return self._encode(sets, average=False, fill=False, backend=backend)

    def _encode(self, sets: Any, *, average: bool, fill: bool, backend: str) -> np.ndarray:
        tokens, offsets = pack_sets(sets, self.dim)
        n = len(offsets) - 1
        out = np.empty((n, self.raw_dim), dtype=np.float32)
        per_token = self.spec.r_reps * self.d_proj
        lo = 0
        while lo < n:  # chunks of sets whose projections fit the budget (at least one set)
            hi = int(np.searchsorted(offsets, offsets[lo] + _CHUNK_FLOATS // per_token,
                                     side="right")) - 1
            hi = min(max(hi, lo + 1), n)
            t0, t1 = int(offsets[lo]), int(offsets[hi])
            x = np.asarray(tokens[t0:t1], dtype=np.float32)
            blocks = fde_aggregate(self.bucket_ids(x), self.project(x), offsets[lo:hi + 1] - t0,
                                   self.spec.n_buckets, average=average, fill=fill,
                                   backend=backend)
            out[lo:hi] = blocks.reshape(hi - lo, -1)
            lo = hi
        return self._final(out)

    def _final(self, raw: np.ndarray) -> np.ndarray:
        if self.sketch is None:
            return raw
        idx, sign = self.sketch
        d_final = self.dim_out
        out = np.empty((len(raw), d_final), dtype=np.float32)
        for i, row in enumerate(raw):
            out[i] = np.bincount(idx, weights=row * sign, minlength=d_final)
        return out
