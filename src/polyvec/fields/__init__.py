"""Vector field kinds: a registry from a spec's ``kind`` to the object that handles it.

>>> from polyvec.spec import Dense
>>> kind_of(Dense(4)).name
'dense'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgument, ModelMismatch, UnknownField
from ..spec import FieldSpec, ModelSpec
from .base import FieldKind
from .bm25 import BM25Kind
from .dense import DenseKind
from .multi import MultiKind
from .sparse import SparseKind

__all__ = ["FieldKind", "KINDS", "check_compatible", "check_inputs", "kind_of", "register"]

KINDS: dict[str, FieldKind] = {}


def register(kind: FieldKind) -> FieldKind:
    """Register a field kind under its name (the ``kind`` of its spec class)."""
    KINDS[kind.name] = kind
    return kind


def kind_of(spec: FieldSpec) -> FieldKind:
    """The field kind that handles ``spec``."""
    try:
        return KINDS[spec.kind]
    except (KeyError, AttributeError):
        raise InvalidArgument(f"unknown vector field kind {getattr(spec, 'kind', spec)!r}; "
                              f"expected one of {list(KINDS)}") from None


def check_inputs(fields: Mapping[str, FieldSpec], vectors: Any, n: int, *,
                 stored: bool = False) -> dict[str, Any]:
    """Each of ``fields``' input among ``vectors`` (a dict by field; a collection of one
    field also takes the input alone) for ``n`` items, checked by its kind (not prepared:
    nothing pooled yet); ``stored``: items given back as ``get`` gives them, in their stored
    form (:meth:`FieldKind.restore`)."""
    if not isinstance(vectors, Mapping):
        if len(fields) != 1:
            raise UnknownField(f"vectors: expected a dict with fields {list(fields)}, "
                               f"got {type(vectors).__name__}")
        vectors = {next(iter(fields)): vectors}
    unknown = set(vectors) - set(fields)
    if unknown:
        raise UnknownField(f"unknown vector field(s) {sorted(unknown)}; this collection has "
                           f"{list(fields)}")
    missing = set(fields) - set(vectors)
    if missing:
        raise UnknownField(f"vectors: expected every field {list(fields)}, missing "
                           f"{sorted(missing)}")
    if stored:
        return {name: kind_of(spec).restore(name, spec, vectors[name], n)
                for name, spec in fields.items()}
    return {name: kind_of(spec).check_vectors(name, spec, vectors[name], n)
            for name, spec in fields.items()}


def check_compatible(field: str, spec: FieldSpec, model: ModelSpec) -> None:
    """A model fits a field when its output kind, dimension and metric match."""
    want = kind_of(spec).model_output
    if model.output != want or model.dim != spec.dim or model.metric != spec.metric:
        raise ModelMismatch(
            f"field {field!r} ({type(spec).__name__}, dim {spec.dim}, {spec.metric}) expects a "
            f"{want!r} model of dim {spec.dim} and metric {spec.metric!r}; got {model.name!r} "
            f"({model.output!r}, dim {model.dim}, {model.metric!r})")


register(DenseKind())
register(MultiKind())
register(SparseKind())
register(BM25Kind())
