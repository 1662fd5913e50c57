"""Parse a JSON filter (MongoDB-like) into the typed syntax tree of :mod:`.ast`.

This is the validation boundary of the filter language: every malformed filter raises
:class:`polyvec.errors.FilterError` whose ``path`` names the offending node, e.g.
``$and[1].year.$gte``. The tree it returns is canonical: ``$ne``, ``$nin`` and
``$exists: false`` become :class:`Not` of the positive leaf, one-child ``And``/``Or`` collapse,
nested ``And`` in ``And`` (``Or`` in ``Or``) flatten, and double negation cancels.

Examples
--------
>>> parse_filter({"meta.year": {"$gte": 2000}})
Compare(path=('meta', 'year'), op='gte', value=2000)
>>> parse_filter({"tags": {"$nin": ["x"]}})
Not(child=In(path=('tags',), values=('x',)))
>>> parse_filter(None)
MatchAll()
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from polyvec import limits
from polyvec.errors import FilterError

from .ast import And, Compare, CompareOp, Exists, In, MatchAll, Node, Not, Or, Path, Scalar

__all__ = ["parse_filter", "MAX_SAFE_INT"]

MAX_SAFE_INT = 2**53
"""Integer operands must lie in ``[-MAX_SAFE_INT, MAX_SAFE_INT]`` (exact in float64)."""

_RANGE_OPS: dict[str, CompareOp] = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}


def parse_filter(obj: Any) -> Node:
    """Parse a JSON filter into a canonical syntax tree.

    Parameters
    ----------
    obj : dict or None
        The filter. ``None`` and ``{}`` match everything. Keys are dotted payload paths
        (``"meta.author"``) or the logical operators ``$and``, ``$or`` (non-empty lists of
        filters) and ``$not`` (a filter); several keys are an implicit AND. A path maps to a
        scalar (shorthand for ``$eq``) or to a dict of operators ``$eq $ne $in $nin $gt $gte
        $lt $lte $exists`` that are ANDed.

    Returns
    -------
    Node
        The canonical tree.

    Raises
    ------
    FilterError
        If the filter is malformed; ``.path`` names the bad node.

    Examples
    --------
    >>> parse_filter({"$or": [{"a": 1}, {"b.c": {"$exists": False}}]})
    Or(children=(Compare(path=('a',), op='eq', value=1), Not(child=Exists(path=('b', 'c')))))
    >>> parse_filter({"$and": [{"a": 1}, {"year": {"$gt": None}}]})
    Traceback (most recent call last):
    polyvec.errors.FilterError: $gt expects a number or a str, got NoneType (at $and[1].year.$gt)
    """
    if obj is None:
        return MatchAll()
    _check_size(obj)
    return _filter(obj, "")


def _check_size(obj: Any) -> None:
    """Refuse a filter past :data:`polyvec.limits.MAX_FILTER_DEPTH` (nesting of dicts and
    lists) or :data:`polyvec.limits.MAX_FILTER_NODES` (every dict, list and scalar), walking
    it without recursion (a filter nested 2,000 deep raised ``RecursionError``)."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > limits.MAX_FILTER_NODES:
            raise FilterError(f"expected at most polyvec.limits.MAX_FILTER_NODES = "
                              f"{limits.MAX_FILTER_NODES:,} nodes, got more")
        if isinstance(value, dict | list):
            if depth > limits.MAX_FILTER_DEPTH:
                raise FilterError(f"expected nesting of at most polyvec.limits."
                                  f"MAX_FILTER_DEPTH = {limits.MAX_FILTER_DEPTH} levels, got "
                                  "deeper")
            if isinstance(value, list) and set(map(type, value)) <= _FLAT:
                nodes += len(value)  # a list of ids or names: counted without a loop
                continue
            for key, v in (value.items() if isinstance(value, dict) else enumerate(value)):
                if key in _LISTS and isinstance(v, list):  # its own parser refuses any
                    nodes += 1 + len(v)  # container in it, so its items are only counted
                    if depth + 1 > limits.MAX_FILTER_DEPTH:
                        stack.append((v, depth + 1))  # (refused at the next pop)
                elif isinstance(v, dict | list):
                    stack.append((v, depth + 1))
                else:  # scalars counted here: a list of 10,000 ids pushes nothing
                    nodes += 1
            if nodes > limits.MAX_FILTER_NODES:
                raise FilterError(f"expected at most polyvec.limits.MAX_FILTER_NODES = "
                                  f"{limits.MAX_FILTER_NODES:,} nodes, got more")


_INT = {int}
_LISTS = ("$in", "$nin")  # operators whose operand is a list of scalars
_FLAT = {int, float, str, bool, type(None)}  # the types of a list that nests nothing


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _filter(obj: Any, where: str) -> Node:
    if not isinstance(obj, dict):
        raise FilterError(f"expected a filter object (dict), got {type(obj).__name__}", where)
    parts: list[Node] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise FilterError(
                f"filter keys must be str, got {type(key).__name__}", _join(where, str(key))
            )
        here = _join(where, key)
        if key in ("$and", "$or"):
            parts.append(_logical(key, value, here))
        elif key == "$not":
            parts.append(_not(_filter(value, here)))
        elif key.startswith("$"):
            raise FilterError(f"unknown logical operator {key!r}, expected $and, $or or $not", here)
        else:
            parts.append(_field(_path(key, here), value, here))
    return _and(parts)


def _logical(key: str, value: Any, where: str) -> Node:
    if not isinstance(value, list) or not value:
        got = f"{len(value)} items" if isinstance(value, list) else type(value).__name__
        raise FilterError(f"{key} expects a non-empty list of filters, got {got}", where)
    children = [_filter(item, f"{where}[{i}]") for i, item in enumerate(value)]
    return _and(children) if key == "$and" else _or(children)


def _path(key: str, where: str) -> Path:
    segments = tuple(key.split("."))
    for seg in segments:
        problem = _segment_problem(seg)
        if problem:
            raise FilterError(f"bad path segment {seg!r} in {key!r}: {problem}", where)
    return segments


def _segment_problem(seg: str) -> str:
    if not seg:
        return "segments may not be empty"
    if seg.startswith("$"):
        return "segments may not start with '$'"
    if '"' in seg or "\\" in seg:
        return "segments may not contain '\"' or '\\'"
    if any(ord(ch) < 0x20 or 0xD800 <= ord(ch) <= 0xDFFF for ch in seg):
        return "segments may not contain control characters or lone surrogates"
    return ""


def _field(path: Path, spec: Any, where: str) -> Node:
    if not isinstance(spec, dict):
        return Compare(path, "eq", _scalar(spec, where))
    if not spec:
        raise FilterError("expected at least one operator like $eq, got an empty dict", where)
    parts: list[Node] = []
    for op, operand in spec.items():
        here = _join(where, str(op))
        if not isinstance(op, str) or not op.startswith("$"):
            raise FilterError(
                f"expected an operator like $eq, got {op!r} (nested fields use dotted paths)", here
            )
        handler = _FIELD_OPS.get(op)
        if handler is None:
            known = ", ".join(_FIELD_OPS)
            raise FilterError(f"unknown operator {op!r}, expected one of {known}", here)
        parts.append(handler(path, op, operand, here))
    return _and(parts)


def _scalar(value: Any, where: str) -> Scalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        _check_text(value, where)
        return value
    if isinstance(value, (int, float)):
        return _number(value, where)
    raise FilterError(f"expected str, int, float, bool or null, got {type(value).__name__}", where)


def _number(value: int | float, where: str) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"expected a finite number, got {value!r}", where)
    if isinstance(value, int) and abs(value) > MAX_SAFE_INT:
        raise FilterError(f"expected an int within +-2**53, got {value!r}", where)
    return value


def _check_text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError("expected valid Unicode text, got a lone surrogate", where) from None


def _op_eq(path: Path, op: str, operand: Any, where: str) -> Node:
    leaf = Compare(path, "eq", _scalar(operand, where))
    return _not(leaf) if op == "$ne" else leaf


def _op_in(path: Path, op: str, operand: Any, where: str) -> Node:
    if not isinstance(operand, list) or not operand:
        got = "an empty list" if isinstance(operand, list) else type(operand).__name__
        raise FilterError(f"{op} expects a non-empty list of scalars, got {got}", where)
    ids = None
    if set(map(type, operand)) == _INT:  # a list of ids, checked in numpy
        with contextlib.suppress(OverflowError):  # past int64: _scalar refuses it below
            ids = np.array(operand, dtype=np.int64)
        if ids is not None and not -MAX_SAFE_INT <= ids.min() <= ids.max() <= MAX_SAFE_INT:
            ids = None
    if ids is not None:
        values = tuple(operand)
    else:
        values = tuple(_scalar(v, f"{where}[{i}]") for i, v in enumerate(operand))
    leaf = In(path, values, ids)
    return _not(leaf) if op == "$nin" else leaf


def _op_range(path: Path, op: str, operand: Any, where: str) -> Node:
    if isinstance(operand, str):
        _check_text(operand, where)
        return Compare(path, _RANGE_OPS[op], operand)
    if isinstance(operand, (int, float)) and not isinstance(operand, bool):
        return Compare(path, _RANGE_OPS[op], _number(operand, where))
    raise FilterError(f"{op} expects a number or a str, got {type(operand).__name__}", where)


def _op_exists(path: Path, op: str, operand: Any, where: str) -> Node:
    if not isinstance(operand, bool):
        raise FilterError(f"$exists expects true or false, got {type(operand).__name__}", where)
    return Exists(path) if operand else Not(Exists(path))


_FIELD_OPS: dict[str, Callable[[Path, str, Any, str], Node]] = {
    "$eq": _op_eq,
    "$ne": _op_eq,
    "$in": _op_in,
    "$nin": _op_in,
    "$gt": _op_range,
    "$gte": _op_range,
    "$lt": _op_range,
    "$lte": _op_range,
    "$exists": _op_exists,
}


def _and(children: list[Node]) -> Node:
    flat: list[Node] = []
    for child in children:
        if isinstance(child, And):
            flat.extend(child.children)
        elif not isinstance(child, MatchAll):
            flat.append(child)
    if not flat:
        return MatchAll()
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def _or(children: list[Node]) -> Node:
    flat: list[Node] = []
    for child in children:
        if isinstance(child, MatchAll):
            return MatchAll()
        flat.extend(child.children if isinstance(child, Or) else (child,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def _not(child: Node) -> Node:
    return child.child if isinstance(child, Not) else Not(child)
