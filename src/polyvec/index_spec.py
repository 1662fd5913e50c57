"""Frozen settings of a vector index: the stack a factory string describes.

A stack is, in order: an optional *transform* (:class:`Proj`, :class:`Prefix`), an *index*
(:class:`Flat`, :class:`HNSW`, :class:`IVF`), an optional *codec* (:class:`SQ8`, :class:`F16`,
:class:`Binary`, :class:`PQ`) and an optional :class:`Refine` (rescore the candidates with the
stored full-precision vectors). :class:`IndexSpec` holds one stack; ``polyvec.factory`` turns it
into a string and back. Every class round-trips through ``to_dict``/``from_dict`` (JSON-safe).

Only build-time settings live here; query-time knobs (``ef``, ``nprobe``, ``oversample``) are
passed per search. ``Refine(oversample=...)`` is the index's *default* oversampling, ``None``
meaning the query-time default :data:`DEFAULT_OVERSAMPLE`.

A ``Refine`` without a transform or codec before it is allowed: the candidates are then already
exact, so refining only recomputes the same scores (an index may skip it).

Settings that depend on the data (``PQ(m)`` must divide the dimension, a projection may not
grow it) are checked by :meth:`IndexSpec.check_dim` when an index is built, not here.

>>> spec = IndexSpec(index=HNSW(32), codec=SQ8(), refine=Refine())
>>> IndexSpec.from_dict(spec.to_dict()) == spec
True
>>> spec.check_dim(384)
384
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from .errors import InvalidArgument

__all__ = [
    "DEFAULT_OVERSAMPLE",
    "Proj", "Prefix", "Flat", "HNSW", "IVF", "SQ8", "F16", "Binary", "PQ", "Refine",
    "IndexSpec", "TransformSpec", "IndexKind", "CodecSpec", "SPEC_TYPES", "stage_from_dict",
    "TokenIndexStage", "FDESpec", "MultiIndexSpec",
]

DEFAULT_OVERSAMPLE = 4.0  # candidates = k * oversample when neither the query nor the spec says


def _int(owner: str, name: str, value: object, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):  # type: ignore[operator]
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise InvalidArgument(f"{owner}: expected {name} an int {bound}, got {value!r}")


def _float(owner: str, name: str, value: object, lo: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < lo:  # type: ignore[arg-type,operator]
        raise InvalidArgument(f"{owner}: expected {name} a finite number >= {lo}, got {value!r}")


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


class _Stage:
    """Shared ``to_dict``; ``type`` names the class, the other keys are its fields."""

    name: ClassVar[str]
    role: ClassVar[str]  # "transform" | "index" | "codec" | "refine"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name, **asdict(self)}  # type: ignore[call-overload]


@dataclass(frozen=True)
class Proj(_Stage):
    """LeanVec projection to ``dim`` dims: ``kind="id"`` (PCA of the database second moment,
    one matrix for both sides) or ``"ood"`` (separate query/database matrices fitted with a
    query sample; ``reg`` shrinks the query second moment towards a multiple of I)."""

    dim: int
    kind: str = "id"
    reg: float = 0.01
    name: ClassVar[str] = "Proj"
    role: ClassVar[str] = "transform"

    def __post_init__(self) -> None:
        _int("Proj", "dim", self.dim, 1)
        if self.kind not in ("id", "ood"):
            raise InvalidArgument(f"Proj: expected kind 'id' or 'ood', got {self.kind!r}")
        _float("Proj", "reg", self.reg, 0.0)
        object.__setattr__(self, "reg", float(self.reg))
        if self.kind == "id" and self.reg != Proj.reg:
            raise InvalidArgument(f"Proj: reg applies to kind='ood' only, got reg={self.reg!r} "
                                  "with kind='id'")


@dataclass(frozen=True)
class Prefix(_Stage):
    """Matryoshka truncation: keep the first ``dim`` dims (no fitting)."""

    dim: int
    name: ClassVar[str] = "Prefix"
    role: ClassVar[str] = "transform"

    def __post_init__(self) -> None:
        _int("Prefix", "dim", self.dim, 1)


@dataclass(frozen=True)
class Flat(_Stage):
    """Exhaustive scan (the oracle when nothing is compressed)."""

    name: ClassVar[str] = "Flat"
    role: ClassVar[str] = "index"


HNSW_ORDERS = ("natural", "lid")


@dataclass(frozen=True)
class HNSW(_Stage):
    """Graph index with ``M`` links per node, built with ``ef_construction``.

    ``order``: the insertion order of a bulk build, ``"natural"`` (row order) or ``"lid"``
    (descending local intrinsic dimensionality, hardest points first).
    """

    M: int = 32
    ef_construction: int = 200
    order: str = "natural"
    name: ClassVar[str] = "HNSW"
    role: ClassVar[str] = "index"

    def __post_init__(self) -> None:
        _int("HNSW", "M", self.M, 2, 512)
        _int("HNSW", "ef_construction", self.ef_construction, 1)
        if self.order not in HNSW_ORDERS:
            raise InvalidArgument(f"HNSW: expected order one of {list(HNSW_ORDERS)}, got "
                                  f"{self.order!r}")


@dataclass(frozen=True)
class IVF(_Stage):
    """Inverted file over ``nlist`` k-means cells, trained with ``seed``."""

    nlist: int
    seed: int = 0
    name: ClassVar[str] = "IVF"
    role: ClassVar[str] = "index"

    def __post_init__(self) -> None:
        _int("IVF", "nlist", self.nlist, 1)
        _int("IVF", "seed", self.seed, 0, 2**31 - 1)


@dataclass(frozen=True)
class SQ8(_Stage):
    """Scalar int8: per-dimension min/max fitted on the collection, 1 byte per dim."""

    name: ClassVar[str] = "SQ8"
    role: ClassVar[str] = "codec"


@dataclass(frozen=True)
class F16(_Stage):
    """IEEE half precision, 2 bytes per dim."""

    name: ClassVar[str] = "F16"
    role: ClassVar[str] = "codec"


@dataclass(frozen=True)
class Binary(_Stage):
    """One sign bit per dim, compared by Hamming distance."""

    name: ClassVar[str] = "Binary"
    role: ClassVar[str] = "codec"


@dataclass(frozen=True)
class PQ(_Stage):
    """Product quantization: ``m`` sub-vectors of ``nbits`` bits each, k-means with ``seed``."""

    m: int
    nbits: int = 8
    seed: int = 0
    name: ClassVar[str] = "PQ"
    role: ClassVar[str] = "codec"

    def __post_init__(self) -> None:
        _int("PQ", "m", self.m, 1)
        _int("PQ", "nbits", self.nbits, 1, 16)
        _int("PQ", "seed", self.seed, 0, 2**31 - 1)


@dataclass(frozen=True)
class Refine(_Stage):
    """Rescore ``k * oversample`` candidates with the stored full-precision vectors.

    ``oversample=None`` defers to the query (or :data:`DEFAULT_OVERSAMPLE`).
    """

    oversample: float | None = None
    name: ClassVar[str] = "Refine"
    role: ClassVar[str] = "refine"

    def __post_init__(self) -> None:
        if self.oversample is not None:
            _float("Refine", "oversample", self.oversample, 1.0)
            object.__setattr__(self, "oversample", float(self.oversample))

    def effective(self, query_oversample: float | None = None) -> float:
        """The oversampling a search uses: the query's, else this spec's, else the default."""
        if query_oversample is not None:
            _float("search", "oversample", query_oversample, 1.0)
            return float(query_oversample)
        return DEFAULT_OVERSAMPLE if self.oversample is None else self.oversample


TransformSpec = Proj | Prefix
IndexKind = Flat | HNSW | IVF
CodecSpec = SQ8 | F16 | Binary | PQ

SPEC_TYPES: dict[str, type[_Stage]] = {
    c.name: c for c in (Proj, Prefix, Flat, HNSW, IVF, SQ8, F16, Binary, PQ, Refine)
}


def stage_from_dict(d: object, role: str | None = None) -> Any:
    """One stage from its ``to_dict`` form; ``role`` (optional) is the slot it must fill."""
    if not isinstance(d, dict) or d.get("type") not in SPEC_TYPES:
        got = d.get("type") if isinstance(d, dict) else d
        raise InvalidArgument(f"index stage: expected a dict with 'type' in {list(SPEC_TYPES)}, "
                              f"got {got!r}")
    cls = SPEC_TYPES[d["type"]]
    if role is not None and cls.role != role:
        raise InvalidArgument(f"index stage: expected {_a(role)}, got {cls.name} "
                              f"({_a(cls.role)})")
    kwargs = {k: v for k, v in d.items() if k != "type"}
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if set(kwargs) - known:
        raise InvalidArgument(f"{cls.name}: expected keys among {sorted(known)}, got "
                              f"{sorted(kwargs)}")
    try:
        return cls(**kwargs)
    except TypeError as e:  # a missing required field
        raise InvalidArgument(f"{cls.name}: {e}") from None


_SLOTS = (("transform", "transform"), ("index", "index"), ("codec", "codec"),
          ("refine", "refine"))


@dataclass(frozen=True)
class IndexSpec:
    """A whole stack: ``transform -> index -> codec -> refine``."""

    transform: TransformSpec | None = None
    index: IndexKind = Flat()
    codec: CodecSpec | None = None
    refine: Refine | None = None

    def __post_init__(self) -> None:
        for slot, role in _SLOTS:
            value = getattr(self, slot)
            if value is None and slot != "index":
                continue
            if not isinstance(value, _Stage) or value.role != role:
                raise InvalidArgument(f"IndexSpec({slot}=...): expected {_a(role)} stage, got "
                                      f"{value!r}")

    @property
    def compressed(self) -> bool:
        """Whether candidates come from anything but the full vectors (a transform or codec)."""
        return self.transform is not None or self.codec is not None

    def check_dim(self, dim: int) -> int:
        """Build-time checks against the field's dimension; returns the dimension the index sees.

        >>> IndexSpec(transform=Proj(128), codec=PQ(7)).check_dim(384)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        polyvec.errors.InvalidArgument: PQ7: expected m to divide the indexed dimension 128, ...
        """
        _int("IndexSpec.check_dim", "dim", dim, 1)
        out = dim
        if self.transform is not None:
            if self.transform.dim > dim:
                raise InvalidArgument(f"{self.transform.name}{self.transform.dim}: expected a "
                                      f"dim <= the field's {dim}, got {self.transform.dim}")
            out = self.transform.dim
        if isinstance(self.codec, PQ) and out % self.codec.m:
            raise InvalidArgument(f"PQ{self.codec.m}: expected m to divide the indexed dimension "
                                  f"{out}, got {out} % {self.codec.m} = {out % self.codec.m}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {slot: (None if getattr(self, slot) is None else getattr(self, slot).to_dict())
                for slot, _ in _SLOTS}

    @classmethod
    def from_dict(cls, d: object) -> IndexSpec:
        if not isinstance(d, dict) or set(d) - {s for s, _ in _SLOTS}:
            raise InvalidArgument(f"IndexSpec: expected a dict with keys among "
                                  f"{[s for s, _ in _SLOTS]}, got {d!r}")
        kwargs = {slot: stage_from_dict(d[slot], role) for slot, role in _SLOTS
                  if d.get(slot) is not None}
        return cls(**kwargs)


# --------------------------------------------------------------------------- multi-vector fields
# A Multi field's index is a first stage (FDE vectors in a single-vector stack, or the
# compressed token index) whose candidates are always reranked by exact MaxSim.


@dataclass(frozen=True)
class TokenIndexStage(_Stage):
    """Compressed token index (ColBERTv2 residual codes, WARP-style candidate scoring) with
    ``nbits`` bits per residual dimension; ``n_centroids=None`` is the K rule of ALGORITHMS.md."""

    nbits: int = 2
    n_centroids: int | None = None
    seed: int = 0
    name: ClassVar[str] = "TokenIndex"
    role: ClassVar[str] = "first_stage"

    def __post_init__(self) -> None:
        if self.nbits not in (1, 2, 4):
            raise InvalidArgument(f"TokenIndex: expected nbits 1, 2 or 4, got {self.nbits!r}")
        if self.n_centroids is not None:
            _int("TokenIndex", "n_centroids", self.n_centroids, 1)
        _int("TokenIndex", "seed", self.seed, 0, 2**31 - 1)


@dataclass(frozen=True)
class FDESpec:
    """MUVERA parameters; the paper's setting is ``(r_reps, k_sim, d_proj) = (20, 5, 16)``.

    >>> FDESpec().dim_out(128), FDESpec(d_final=1024).dim_out(128)
    (10240, 1024)
    >>> FDESpec.from_dict(FDESpec(d_final=512, seed=3).to_dict()) == FDESpec(d_final=512, seed=3)
    True
    """

    k_sim: int = 5
    d_proj: int = 16
    r_reps: int = 20
    d_final: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _int("FDESpec", "k_sim", self.k_sim, 0, 12)
        _int("FDESpec", "d_proj", self.d_proj, 1)
        _int("FDESpec", "r_reps", self.r_reps, 1)
        if self.d_final is not None:
            _int("FDESpec", "d_final", self.d_final, 1)
        _int("FDESpec", "seed", self.seed, 0, 2**63 - 1)

    @property
    def n_buckets(self) -> int:
        return 1 << self.k_sim

    def dim_out(self, dim: int) -> int:
        """Length of the encoding of ``dim``-d tokens."""
        return self.d_final or self.r_reps * self.n_buckets * min(self.d_proj, dim)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> FDESpec:
        if not isinstance(d, dict) or set(d) - set(asdict(FDESpec())):
            raise InvalidArgument(f"FDESpec: expected a dict with keys among "
                                  f"{sorted(asdict(FDESpec()))}, got {d!r}")
        return cls(**d)



@dataclass(frozen=True)
class MultiIndexSpec:
    """The index of a Multi field: ``fde`` + ``stack`` (MUVERA encodings searched with a
    single-vector stack) or ``token_index``; candidates are reranked by exact MaxSim.

    >>> spec = MultiIndexSpec(fde=FDESpec(), stack=IndexSpec(index=HNSW(32)))
    >>> MultiIndexSpec.from_dict(spec.to_dict()) == spec
    True
    """

    fde: FDESpec | None = None
    stack: IndexSpec | None = None
    token_index: TokenIndexStage | None = None

    def __post_init__(self) -> None:
        if (self.fde is None) == (self.token_index is None):
            raise InvalidArgument("MultiIndexSpec: expected exactly one first stage, fde=... "
                                  f"or token_index=..., got {self!r}")
        if self.fde is not None:
            if not isinstance(self.fde, FDESpec):
                raise InvalidArgument(f"MultiIndexSpec: expected fde an FDESpec, got "
                                      f"{self.fde!r}")
            if self.stack is None:
                object.__setattr__(self, "stack", IndexSpec())
            if not isinstance(self.stack, IndexSpec):
                raise InvalidArgument(f"MultiIndexSpec: expected stack an IndexSpec, got "
                                      f"{self.stack!r}")
            if self.stack.refine is not None:
                raise InvalidArgument("MultiIndexSpec: FDE candidates are always reranked by "
                                      "exact MaxSim; expected a stack without Refine, got "
                                      f"{self.stack!r}")
        elif self.stack is not None:
            raise InvalidArgument("MultiIndexSpec: a single-vector stack goes with fde=..., "
                                  "not with token_index")
        elif not isinstance(self.token_index, TokenIndexStage):
            raise InvalidArgument(f"MultiIndexSpec: expected token_index a TokenIndexStage, "
                                  f"got {self.token_index!r}")

    def to_dict(self) -> dict[str, Any]:
        if self.token_index is not None:
            return {"token_index": self.token_index.to_dict()}
        return {"fde": (self.fde or FDESpec()).to_dict(),
                "stack": (self.stack or IndexSpec()).to_dict()}

    @classmethod
    def from_dict(cls, d: object) -> MultiIndexSpec:
        if not isinstance(d, dict) or not ({"token_index"} == set(d) or {"fde", "stack"} == set(d)):
            raise InvalidArgument(f"MultiIndexSpec: expected a dict with keys 'token_index' or "
                                  f"'fde' and 'stack', got {d!r}")
        if "token_index" in d:
            t = d["token_index"]
            if not isinstance(t, dict) or t.get("type") != TokenIndexStage.name:
                raise InvalidArgument(f"MultiIndexSpec: expected a TokenIndex stage, got {t!r}")
            try:
                stage = TokenIndexStage(**{k: v for k, v in t.items() if k != "type"})
            except TypeError as e:
                raise InvalidArgument(f"TokenIndex: {e}") from None
            return cls(token_index=stage)
        return cls(fde=FDESpec.from_dict(d["fde"]), stack=IndexSpec.from_dict(d["stack"]))
