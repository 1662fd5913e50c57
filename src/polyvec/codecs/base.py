"""The two small base classes every codec and transform implements.

A :class:`Codec` turns float vectors into fixed-size ``uint8`` codes and back, and scores
queries against codes; a :class:`Transform` maps vectors to another (smaller) float space,
possibly differently for queries and documents. Both are *fitted* on a sample of the
collection, then frozen: nothing about an encoding depends on the batch being encoded, so a
vector gets the same code alone or in any batch. Fitted attributes end in ``_``; the fitted
state persists as a dict of numpy arrays (``to_arrays``/``from_arrays``, saved as ``.npy``
files by the storage layer; never pickle), which also records the spec it was fitted for.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np

from ..errors import CorruptFile, DimensionMismatch, DTypeMismatch, InvalidArgument
from ..index_spec import stage_from_dict

__all__ = ["Codec", "Transform", "FORMAT_VERSION", "METRICS", "exact_scores"]

FORMAT_VERSION = 1
METRICS = {"dot": "dot", "cosine": "dot", "l2": "l2"}  # cosine = dot on normalized vectors
_SCORE_BLOCK_BYTES = 64 << 20  # decoded floats held at once by the default ``scores``


def as_matrix(x: object, name: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, d) array; ``dim`` (optional) is the required d."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise DTypeMismatch(f"{name}: expected a float array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        want = f"(n, {dim})" if dim is not None else "(n, d)"
        raise DimensionMismatch(f"{name}: expected a 2-D array {want}, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatch(f"{name}: expected shape (n, {dim}), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def metric_of(metric: object) -> str:
    if metric not in METRICS:
        raise InvalidArgument(f"metric: expected one of {list(METRICS)}, got {metric!r}")
    return METRICS[str(metric)]


def exact_scores(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """Higher-is-better scores: ``q @ x.T`` for dot, minus squared distance for l2."""
    s = q @ x.T
    if metric == "l2":
        s *= 2.0
        s -= np.einsum("ij,ij->i", q, q)[:, None]
        s -= np.einsum("ij,ij->i", x, x)[None, :]
    return s.astype(np.float32, copy=False)


class _Fitted(ABC):
    """Spec holder, fitted-state checks and the array persistence shared by both kinds."""

    spec_type: ClassVar[type]
    dim_: int  # input dimension, set by ``fit``

    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, self.spec_type):
            raise InvalidArgument(f"{type(self).__name__}: expected a {self.spec_type.__name__} "
                                  f"spec, got {spec!r}")
        self.spec: Any = spec

    def __repr__(self) -> str:
        state = f"dim_={self.dim_}" if self.is_fitted else "unfitted"
        return f"{type(self).__name__}({self.spec!r}, {state})"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "dim_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise InvalidArgument(f"{type(self).__name__} is not fitted: call fit(x) on a "
                                  "sample of the collection first (or load it with from_arrays)")

    def _fit_input(self, x: object) -> np.ndarray:
        x = as_matrix(x, "fit(x)")
        if len(x) == 0 or not np.isfinite(x).all():
            raise InvalidArgument(f"fit(x): expected at least one row of finite values, got "
                                  f"shape {x.shape}" + (" with NaN/inf" if len(x) else ""))
        return x

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _load(self, arrays: dict[str, np.ndarray], get: Any) -> None: ...

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Fitted state as named numpy arrays (plus the format version and the spec)."""
        self._check_fitted()
        spec = json.dumps(self.spec.to_dict(), sort_keys=True).encode()
        return {"format": np.array([FORMAT_VERSION], dtype=np.int64),
                "spec": np.frombuffer(spec, dtype=np.uint8).copy(),
                "dim": np.array([self.dim_], dtype=np.int64), **self._arrays()}

    @classmethod
    def from_arrays(cls, spec: Any, arrays: dict[str, np.ndarray], *,
                    where: str = "codec arrays") -> Self:
        """Rebuild from ``to_arrays()``; bad arrays raise :class:`CorruptFile` naming ``where``."""
        obj = cls(spec)

        def get(key: str, dtype: Any, shape: tuple[int | None, ...]) -> np.ndarray:
            if key not in arrays:
                raise CorruptFile(where, f"missing array {key!r}")
            a = np.asarray(arrays[key])
            if a.dtype != np.dtype(dtype) or a.ndim != len(shape) or any(
                    s is not None and s != t for s, t in zip(shape, a.shape, strict=True)):
                raise CorruptFile(where, f"array {key!r}: expected {np.dtype(dtype)} of shape "
                                         f"{shape}, got {a.dtype} of shape {a.shape}")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise CorruptFile(where, f"array {key!r} holds NaN/inf")
            return np.ascontiguousarray(a)

        version = int(get("format", np.int64, (1,))[0])
        if version != FORMAT_VERSION:
            raise CorruptFile(where, f"expected format version {FORMAT_VERSION}, got {version}")
        try:
            stored = stage_from_dict(json.loads(get("spec", np.uint8, (None,)).tobytes()))
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptFile(where, f"unreadable spec: {e}") from None
        if stored != spec:
            raise CorruptFile(where, f"fitted for {stored!r}, not for {spec!r}")
        dim = int(get("dim", np.int64, (1,))[0])
        if dim < 1:
            raise CorruptFile(where, f"expected dim >= 1, got {dim}")
        obj.dim_ = dim
        try:
            obj._load(arrays, get)
        except InvalidArgument as e:
            raise CorruptFile(where, str(e)) from None
        return obj


class Codec(_Fitted):
    """Fixed-size ``uint8`` codes for float vectors.

    Subclasses implement ``_fit``, ``_encode``, ``_decode``, ``code_size`` and the array
    persistence; ``_scores`` defaults to scoring the decoded vectors (asymmetric: the query
    stays full precision).
    """

    def fit(self, x: object, *, queries: object = None) -> Self:
        """Fit on a sample of the collection (``queries`` is unused by codecs)."""
        x = self._fit_input(x)
        self._fit(x)
        self.dim_ = x.shape[1]
        return self

    @property
    @abstractmethod
    def code_size(self) -> int:
        """Bytes per vector."""

    def encode(self, x: object) -> np.ndarray:
        """Codes of ``x`` (n, dim_): uint8 (n, code_size)."""
        self._check_fitted()
        return self._encode(as_matrix(x, "encode(x)", self.dim_))

    def decode(self, codes: object) -> np.ndarray:
        """Approximate vectors of ``codes``: float32 (n, dim_)."""
        return self._decode(self._check_codes(codes))

    def scores(self, q: object, codes: object, *, metric: str = "dot") -> np.ndarray:
        """Approximate similarities of queries (nq, dim_) to codes (n, code_size): (nq, n).

        Higher is better: inner product for ``dot``/``cosine``, minus the squared
        distance for ``l2``.
        """
        codes = self._check_codes(codes)
        q = as_matrix(q, "scores(q)", self.dim_)
        return self._scores(q, codes, metric_of(metric))

    def _check_codes(self, codes: object) -> np.ndarray:
        self._check_fitted()
        c = np.asarray(codes)
        if c.dtype != np.uint8:
            raise DTypeMismatch(f"codes: expected uint8, got {c.dtype}")
        if c.ndim != 2 or c.shape[1] != self.code_size:
            raise DimensionMismatch(f"codes: expected shape (n, {self.code_size}), got "
                                    f"{c.shape}")
        return np.ascontiguousarray(c)

    def _scores(self, q: np.ndarray, codes: np.ndarray, metric: str) -> np.ndarray:
        out = np.empty((len(q), len(codes)), dtype=np.float32)
        block = max(1, _SCORE_BLOCK_BYTES // (4 * self.dim_))
        for lo in range(0, len(codes), block):
            out[:, lo:lo + block] = exact_scores(q, self._decode(codes[lo:lo + block]), metric)
        return out

    @abstractmethod
    def _fit(self, x: np.ndarray) -> None: ...

    @abstractmethod
    def _encode(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _decode(self, codes: np.ndarray) -> np.ndarray: ...


class Transform(_Fitted):
    """A linear map to ``dim_out`` dims, possibly different for queries and documents.

    Scores in the output space approximate the input-space inner product:
    ``transform_queries(q) @ transform_docs(x).T ~= q @ x.T``.
    """

    def fit(self, x: object, *, queries: object = None) -> Self:
        """Fit on a sample of the collection and, where the transform uses one, of queries."""
        x = self._fit_input(x)
        if self.spec.dim > x.shape[1]:
            raise InvalidArgument(f"{type(self).__name__}: expected an output dim <= the input "
                                  f"dim {x.shape[1]}, got {self.spec.dim}")
        q = None if queries is None else as_matrix(queries, "fit(queries)", x.shape[1])
        if q is not None and (len(q) == 0 or not np.isfinite(q).all()):
            raise InvalidArgument(f"fit(queries): expected at least one row of finite values, "
                                  f"got shape {q.shape}")
        self._fit(x, q)
        self.dim_ = x.shape[1]
        return self

    @property
    def dim_out(self) -> int:
        return int(self.spec.dim)

    def transform_docs(self, x: object) -> np.ndarray:
        """Documents (n, dim_) -> float32 (n, dim_out)."""
        self._check_fitted()
        return self._docs(as_matrix(x, "transform_docs(x)", self.dim_))

    def transform_queries(self, q: object) -> np.ndarray:
        """Queries (nq, dim_) -> float32 (nq, dim_out)."""
        self._check_fitted()
        return self._queries(as_matrix(q, "transform_queries(q)", self.dim_))

    @abstractmethod
    def _fit(self, x: np.ndarray, queries: np.ndarray | None) -> None: ...

    @abstractmethod
    def _docs(self, x: np.ndarray) -> np.ndarray: ...

    def _queries(self, q: np.ndarray) -> np.ndarray:
        return self._docs(q)
