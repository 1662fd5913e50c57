"""Frozen settings of a collection's schema. Each round-trips through ``to_dict``/``from_dict``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .errors import InvalidArgument
from .types import Metric

__all__ = ["BM25", "Dense", "Multi", "Sparse", "FieldSpec", "CollectionSchema", "ModelSpec",
           "field_from_dict"]

_DTYPES = ("f32", "f16")


def _check_common(kind: str, dim: int, metric: str, dtype: str) -> None:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise InvalidArgument(f"{kind}(dim=...): expected a positive int, got {dim!r}")
    if metric not in {m.value for m in Metric}:
        raise InvalidArgument(
            f"{kind}(metric=...): expected one of {[m.value for m in Metric]}, got {metric!r}"
        )
    if dtype not in _DTYPES:
        raise InvalidArgument(f"{kind}(dtype=...): expected one of {list(_DTYPES)}, got {dtype!r}")


@dataclass(frozen=True)
class _VectorField:
    """What every vector field has: a dimension, a metric and a storage dtype."""

    dim: int
    metric: str = "cosine"
    dtype: str = "f32"
    kind: ClassVar[str]

    def __post_init__(self) -> None:
        if isinstance(self.metric, Metric):
            object.__setattr__(self, "metric", self.metric.value)
        _check_common(type(self).__name__, self.dim, self.metric, self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class Dense(_VectorField):
    """One vector per item.

    >>> Dense(384).to_dict()
    {'kind': 'dense', 'dim': 384, 'metric': 'cosine', 'dtype': 'f32'}
    """

    kind: ClassVar[str] = "dense"


@dataclass(frozen=True)
class Multi(_VectorField):
    """A set of token vectors per item, scored by MaxSim (late interaction).

    ``pool_factor`` > 1 pools each item's tokens when it is written (the first token kept,
    Ward clusters of the rest, see :mod:`polyvec.multivector.pooling`): about ``1 /
    pool_factor`` of the vectors are stored and searched.

    >>> Multi(128).to_dict()
    {'kind': 'multi', 'dim': 128, 'metric': 'cosine', 'dtype': 'f32'}
    >>> Multi(128, pool_factor=2).to_dict()["pool_factor"]
    2
    """

    pool_factor: int = field(default=1, kw_only=True)
    kind: ClassVar[str] = "multi"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metric == Metric.L2.value:
            raise InvalidArgument("Multi(metric=...): MaxSim needs 'cosine' or 'dot', got 'l2'")
        f = self.pool_factor
        if isinstance(f, bool) or not isinstance(f, int) or f < 1:
            raise InvalidArgument(f"Multi(pool_factor=...): expected an int >= 1, got {f!r}")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.pool_factor == 1:  # the pre-pooling form, so older readers keep working
            del d["pool_factor"]
        return d


SPARSE_MAX_DIM = 2**32  # sparse indices are stored as uint32


@dataclass(frozen=True)
class Sparse:
    """A sparse vector per item, ``(indices, values)``, scored by dot product (learned
    sparse models' term weights, a vocabulary's counts). ``dim`` bounds the indices
    (``0 <= index < dim``; a model's vocabulary size, or up to 2**32).

    ``dtype``: ``"f32"``, ``"f16"``, or ``"u8"``: weights in ``[0, max_weight]`` stored as
    ``round(weight / scale)`` with the collection's one ``scale = max_weight / 255`` (each
    weight off by at most ``scale / 2``; a weight outside the range is refused, not clipped).

    >>> Sparse(30522).to_dict()
    {'kind': 'sparse', 'dim': 30522, 'dtype': 'f32'}
    >>> Sparse(30522, dtype="u8", max_weight=5.1).scale
    0.02
    """

    dim: int = SPARSE_MAX_DIM
    dtype: str = "f32"
    max_weight: float | None = None
    kind: ClassVar[str] = "sparse"
    metric: ClassVar[str] = "dot"

    def __post_init__(self) -> None:
        d = self.dim
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= SPARSE_MAX_DIM:
            raise InvalidArgument(f"Sparse(dim=...): expected an int in [1, 2**32], got {d!r}")
        if self.dtype not in (*_DTYPES, "u8"):
            raise InvalidArgument(f"Sparse(dtype=...): expected one of {[*_DTYPES, 'u8']}, got "
                                  f"{self.dtype!r}")
        w = self.max_weight
        if self.dtype != "u8":
            if w is not None:
                raise InvalidArgument(f"Sparse(max_weight=...): only for dtype 'u8', got "
                                      f"dtype {self.dtype!r}")
        elif isinstance(w, bool) or not isinstance(w, int | float) or not (
                math.isfinite(w) and w > 0):
            raise InvalidArgument(f"Sparse(dtype='u8'): expected max_weight, a finite number "
                                  f"> 0 (the weight stored as 255), got {w!r}")

    @property
    def scale(self) -> float:
        """What one step of a stored ``u8`` weight is worth (1 for float dtypes)."""
        return float(self.max_weight) / 255 if self.dtype == "u8" else 1.0  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, **asdict(self)}
        if self.max_weight is None:
            del d["max_weight"]
        return d


@dataclass(frozen=True)
class BM25:
    """A text per item, scored by BM25 against queries given as text (Lucene's formula; see
    :mod:`polyvec.lexical.bm25`): ``k1`` (term-frequency saturation, default 0.9) and ``b``
    (length normalisation, default 0.4) as Lucene's and Anserini's defaults for passages. The
    ``analyzer`` (:class:`polyvec.lexical.Analyzer`, or its dict) turns texts and queries into
    terms. The collection stores the terms' ids and counts, not the text.

    >>> BM25().to_dict()["k1"], BM25(b=0.75).to_dict()["b"]
    (0.9, 0.75)
    """

    analyzer: Any = None
    k1: float = 0.9
    b: float = 0.4
    kind: ClassVar[str] = "bm25"
    metric: ClassVar[str] = "dot"
    dim: ClassVar[int] = SPARSE_MAX_DIM  # term ids are 32-bit hashes
    dtype: ClassVar[str] = "f32"

    def __post_init__(self) -> None:
        from .lexical import Analyzer

        a = self.analyzer
        if a is None:
            object.__setattr__(self, "analyzer", Analyzer())
        elif isinstance(a, dict):
            object.__setattr__(self, "analyzer", Analyzer.from_dict(a))
        elif not isinstance(a, Analyzer):
            raise InvalidArgument(f"BM25(analyzer=...): expected an Analyzer or its dict, got "
                                  f"{type(a).__name__}")
        for name, lo, hi in (("k1", 0.0, 100.0), ("b", 0.0, 1.0)):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, int | float) or not lo <= x <= hi:
                raise InvalidArgument(f"BM25({name}=...): expected a number in [{lo:g}, "
                                      f"{hi:g}], got {x!r}")
            object.__setattr__(self, name, float(x))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "analyzer": self.analyzer.to_dict(), "k1": self.k1,
                "b": self.b}


FieldSpec = Dense | Multi | Sparse | BM25
_KINDS: dict[str, type[Dense] | type[Multi] | type[Sparse] | type[BM25]] = {
    "dense": Dense, "multi": Multi, "sparse": Sparse, "bm25": BM25}


def field_from_dict(d: dict[str, Any]) -> FieldSpec:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _KINDS:
        raise InvalidArgument(f"unknown vector field kind {kind!r}; expected one of {list(_KINDS)}")
    return _KINDS[kind](**d)


@dataclass(frozen=True)
class CollectionSchema:
    """Vector fields by name, and the payload paths kept in memory columns for fast filters."""

    vectors: tuple[tuple[str, FieldSpec], ...]
    indexed: tuple[str, ...] = ()

    @classmethod
    def build(
        cls, vectors: dict[str, FieldSpec], indexed: Iterable[str] = ()
    ) -> CollectionSchema:
        if not isinstance(vectors, dict) or not vectors:
            raise InvalidArgument(
                f"vectors: expected a non-empty dict of name -> Dense/Multi/Sparse/BM25, got "
                f"{vectors!r}"
            )
        for name, spec in vectors.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise InvalidArgument(f"vector field name: expected an identifier, got {name!r}")
            if not isinstance(spec, Dense | Multi | Sparse | BM25):
                raise InvalidArgument(
                    f"vector field {name!r}: expected Dense, Multi, Sparse or BM25, got "
                    f"{spec!r}")
        if isinstance(indexed, str | bytes | Mapping) or not isinstance(indexed, Iterable):
            # (a str would index each of its characters)
            raise InvalidArgument(f"indexed: expected a list of dotted payload paths, got "
                                  f"{type(indexed).__name__} {indexed!r}")
        indexed = list(indexed)
        for path in indexed:
            if (
                not isinstance(path, str)
                or not path
                or any(not s or s.startswith("$") or '"' in s for s in path.split("."))
            ):
                raise InvalidArgument(f"indexed: expected dotted payload paths, got {path!r}")
        return cls(tuple(vectors.items()), tuple(dict.fromkeys(indexed)))

    @property
    def fields(self) -> dict[str, FieldSpec]:
        return dict(self.vectors)

    def to_dict(self) -> dict[str, Any]:
        return {"vectors": {n: s.to_dict() for n, s in self.vectors}, "indexed": list(self.indexed)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionSchema:
        return cls(
            tuple((n, field_from_dict(s)) for n, s in d["vectors"].items()),
            tuple(d.get("indexed", ())),
        )


@dataclass(frozen=True)
class ModelSpec:
    """What produced a vector field's vectors. Two specs are compatible only if equal.

    ``output`` is ``"dense"`` (one vector per text) or ``"tokens"`` (one vector per token,
    for :class:`Multi` fields). ``projection_dim``/``projection_seed`` describe an optional
    seeded orthonormal projection of token vectors (the matrix is rebuilt from the seed).

    >>> spec = ModelSpec("all-MiniLM-L6-v2", revision="gt-0.1.0", dim=384)
    >>> ModelSpec.from_dict(spec.to_dict()) == spec
    True
    """

    name: str
    revision: str
    dim: int
    metric: str = "cosine"
    normalize: bool = True
    output: str = "dense"
    query_prefix: str = ""
    document_prefix: str = ""
    max_tokens: int = 256
    projection_dim: int | None = None
    projection_seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgument(f"ModelSpec(name=...): expected a non-empty str, got "
                                  f"{self.name!r}")
        if self.output not in ("dense", "tokens"):
            raise InvalidArgument(f"ModelSpec(output=...): expected 'dense' or 'tokens', got "
                                  f"{self.output!r}")
        _check_common("ModelSpec", self.dim, self.metric, "f32")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**d)
