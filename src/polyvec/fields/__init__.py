"""Vector field kinds: a registry from a spec's ``kind`` to the object that handles it.

>>> from polyvec.spec import Dense
>>> kind_of(Dense(4)).name
'dense'
"""

from __future__ import annotations

from ..errors import InvalidArgument
from ..spec import FieldSpec
from .base import FieldKind
from .bm25 import BM25Kind
from .dense import DenseKind
from .multi import MultiKind
from .sparse import SparseKind

__all__ = ["FieldKind", "KINDS", "kind_of", "register"]

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


register(DenseKind())
register(MultiKind())
register(SparseKind())
register(BM25Kind())
