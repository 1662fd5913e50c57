"""Pure-Python reference evaluator: the oracle that the SQL and column evaluators must match.

Semantics (the filter contract):

* The value at a path walks dicts by key; a missing key or a non-dict step gives MISSING.
* Equality is type-strict: numbers compare numerically (``1 == 1.0``) but bool is not a
  number; str equals str; null equals only null. Dicts never match ``eq``/``in``/ranges.
* A range with a number operand matches number values; with a str operand, str values
  (code point order). Other value types never match.
* A list value matches ``eq``/``in``/ranges when ANY scalar element does (no recursion).
* ``Exists`` is true iff the path resolves (null included); ``Not`` is boolean negation.

Examples
--------
>>> from polyvec.filters.parse import parse_filter
>>> matches(parse_filter({"tags": "b", "n": {"$gt": 1}}), {"tags": ["a", "b"], "n": 1.5})
True
>>> matches(parse_filter({"flag": 1}), {"flag": True})
False
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

from .ast import And, Compare, Exists, In, Leaf, MatchAll, Node, Not, Or, Path, Scalar

__all__ = ["MISSING", "resolve", "matches", "leaf_matches_value", "is_number"]


class _Missing:
    """Type of :data:`MISSING`."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""Sentinel for "the path does not resolve" (distinct from JSON null, i.e. ``None``)."""

_RANGE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def is_number(value: object) -> bool:
    """Return whether ``value`` is a JSON number (an int or float that is not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def resolve(payload: object, path: Path) -> Any:
    """Return the value at ``path`` in ``payload``, or :data:`MISSING`.

    Examples
    --------
    >>> resolve({"a": {"b": None}}, ("a", "b")) is None
    True
    >>> resolve({"a": [{"b": 1}]}, ("a", "b"))
    MISSING
    """
    current: Any = payload
    for key in path:
        if not isinstance(current, dict) or key not in current:
            return MISSING
        current = current[key]
    return current


def _scalar_eq(value: object, operand: Scalar) -> bool:
    if operand is None:
        return value is None
    if isinstance(operand, bool):
        return isinstance(value, bool) and value == operand
    if isinstance(operand, str):
        return isinstance(value, str) and value == operand
    return is_number(value) and value == operand


def _scalar_range(value: object, op: str, operand: Scalar) -> bool:
    same_kind = isinstance(value, str) if isinstance(operand, str) else is_number(value)
    return same_kind and _RANGE[op](value, operand)


def _scalar_leaf(leaf: Compare | In, value: object) -> bool:
    if isinstance(leaf, In):
        return any(_scalar_eq(value, v) for v in leaf.values)
    if leaf.op == "eq":
        return _scalar_eq(value, leaf.value)
    return _scalar_range(value, leaf.op, leaf.value)


def leaf_matches_value(leaf: Leaf, value: object) -> bool:
    """Return whether a leaf matches the already-resolved ``value`` (may be :data:`MISSING`).

    Parameters
    ----------
    leaf : Compare, In or Exists
        The leaf node; its path is ignored.
    value : object
        The value found at the leaf's path.

    Returns
    -------
    bool
    """
    if isinstance(leaf, Exists):
        return value is not MISSING
    if isinstance(value, list):
        return any(_scalar_leaf(leaf, item) for item in value)
    return _scalar_leaf(leaf, value)


def matches(node: Node, payload: object) -> bool:
    """Return whether ``payload`` satisfies the filter ``node``.

    Parameters
    ----------
    node : Node
        A tree from :func:`polyvec.filters.parse_filter`.
    payload : dict
        The item's JSON payload.

    Returns
    -------
    bool
    """
    if isinstance(node, (Compare, In, Exists)):
        return leaf_matches_value(node, resolve(payload, node.path))
    if isinstance(node, And):
        return all(matches(child, payload) for child in node.children)
    if isinstance(node, Or):
        return any(matches(child, payload) for child in node.children)
    if isinstance(node, Not):
        return not matches(node.child, payload)
    if isinstance(node, MatchAll):
        return True
    raise TypeError(f"expected a filter Node, got {type(node).__name__}")
