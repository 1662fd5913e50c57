"""Compile a filter tree into an SQLite boolean expression over a JSON payload column.

The expression uses the JSON1 functions built into SQLite (``json_type``, ``json_extract``,
``json_each``) and ``?`` parameters for every operand and JSON path; nothing the user wrote is
pasted into the SQL text. Every leaf evaluates to exactly 0 or 1 (never NULL), so ``NOT`` is
plain boolean negation, as in :func:`polyvec.filters.matches`.

The payload column must hold the text written by :func:`dumps_payload` (strict JSON with
non-ASCII characters unescaped): SQLite 3.40 matches a quoted path label against the raw,
still-escaped key text, so a key written as ``"\\u00e9"`` would not be found by ``$."é"``.

Examples
--------
>>> import sqlite3
>>> from polyvec.filters.parse import parse_filter
>>> db = sqlite3.connect(":memory:")
>>> _ = db.execute("CREATE TABLE items(pos INTEGER PRIMARY KEY, payload TEXT)")
>>> rows = [{"year": 1999}, {"year": [2001, 1990]}, {"year": True}]
>>> _ = db.executemany("INSERT INTO items VALUES (?, ?)", enumerate(map(dumps_payload, rows)))
>>> where, params = to_sql(parse_filter({"year": {"$gte": 2000}}))
>>> db.execute(f"SELECT pos FROM items WHERE {where}", params).fetchall()
[(1,)]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .ast import And, Compare, Exists, In, MatchAll, Node, Not, Or, Path, Scalar
from .reference import is_number

__all__ = ["to_sql", "json_path", "dumps_payload"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
# Columns of the json_each table: an unqualified column of the same name would be shadowed.
_EACH_COLUMNS = {"key", "value", "type", "atom", "id", "parent", "fullkey", "path", "json", "root"}
_EACH = "_pv_each"
_RANGE_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def dumps_payload(payload: Mapping[str, Any]) -> str:
    """Serialize a payload the way :func:`to_sql` expects it stored.

    Parameters
    ----------
    payload : dict
        A JSON object.

    Returns
    -------
    str
        Compact JSON with non-ASCII characters kept as is.

    Raises
    ------
    ValueError
        If the payload holds NaN or infinity (not JSON).

    Examples
    --------
    >>> dumps_payload({"name": "é", "n": [1, 2.5]})
    '{"name":"é","n":[1,2.5]}'
    """
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def json_path(path: Path) -> str:
    """Return the SQLite JSON path of a payload path, e.g. ``$."meta"."author"``.

    Segments never contain ``"`` or ``\\`` (the parser rejects them), so quoting is exact.

    Examples
    --------
    >>> json_path(("meta", "author"))
    '$."meta"."author"'
    """
    return "$" + "".join(f'."{seg}"' for seg in path)


def to_sql(node: Node, column: str = "payload") -> tuple[str, list[Any]]:
    """Compile ``node`` into an SQLite boolean expression and its parameters.

    Parameters
    ----------
    node : Node
        A tree from :func:`polyvec.filters.parse_filter`.
    column : str, default "payload"
        The TEXT column holding the JSON payload; a plain or ``table.column`` identifier.

    Returns
    -------
    sql : str
        An expression usable as ``SELECT ... FROM items WHERE <sql>``.
    params : list
        The values of its ``?`` placeholders, in order.

    Raises
    ------
    ValueError
        If ``column`` is not a plain identifier or collides with a ``json_each`` column.
    """
    if not _IDENT.fullmatch(column) or column.lower() in _EACH_COLUMNS:
        raise ValueError(
            f"column must be an identifier like 'payload' or 'items.payload' and not one of "
            f"json_each's columns {sorted(_EACH_COLUMNS)}, got {column!r}"
        )
    params: list[Any] = []
    return _emit(node, column, params), params


def _emit(node: Node, col: str, params: list[Any]) -> str:
    if isinstance(node, MatchAll):
        return "1"
    if isinstance(node, (And, Or)):
        glue = " AND " if isinstance(node, And) else " OR "
        return "(" + glue.join(_emit(child, col, params) for child in node.children) + ")"
    if isinstance(node, Not):
        return f"(NOT {_emit(node.child, col, params)})"
    if isinstance(node, Exists):
        params.append(json_path(node.path))
        return f"(json_type({col}, ?) IS NOT NULL)"
    if isinstance(node, In):
        return _emit_equal(node.path, node.values, col, params)
    if isinstance(node, Compare):
        if node.op == "eq":
            return _emit_equal(node.path, (node.value,), col, params)
        return _emit_range(node, col, params)
    raise TypeError(f"expected a filter Node, got {type(node).__name__}")


def _placeholders(values: list[Any], params: list[Any]) -> str:
    params.extend(values)
    return "(" + ", ".join("?" * len(values)) + ")"


def _emit_equal(path: Path, values: tuple[Scalar, ...], col: str, params: list[Any]) -> str:
    """``CASE json_type ... END`` matching a scalar in ``values`` or a list holding one."""
    nums = [v for v in values if is_number(v)]
    texts = [v for v in values if isinstance(v, str)]
    atoms = sorted({_atom(v) for v in values if v is None or isinstance(v, bool)})
    jpath = json_path(path)
    params.append(jpath)
    parts = [f"CASE json_type({col}, ?)"]
    element: list[str] = []
    if nums:
        for kind in ("integer", "real"):
            params.append(jpath)
            parts.append(
                f"WHEN '{kind}' THEN json_extract({col}, ?) IN {_placeholders(nums, params)}"
            )
    if texts:
        params.append(jpath)
        parts.append(f"WHEN 'text' THEN json_extract({col}, ?) IN {_placeholders(texts, params)}")
    parts.extend(f"WHEN '{atom}' THEN 1" for atom in atoms)
    params.append(jpath)
    if nums:
        element.append(
            f"({_EACH}.type IN ('integer', 'real') AND {_EACH}.value IN "
            f"{_placeholders(nums, params)})"
        )
    if texts:
        element.append(
            f"({_EACH}.type = 'text' AND {_EACH}.value IN {_placeholders(texts, params)})"
        )
    if atoms:
        quoted = ", ".join(f"'{atom}'" for atom in atoms)
        element.append(f"{_EACH}.type IN ({quoted})")
    parts.append(f"WHEN 'array' THEN {_exists_element(col, ' OR '.join(element))}")
    parts.append("ELSE 0 END")
    return "(" + " ".join(parts) + ")"


def _atom(value: None | bool) -> str:
    return "null" if value is None else ("true" if value else "false")


def _emit_range(node: Compare, col: str, params: list[Any]) -> str:
    """``CASE json_type ... END`` for ``gt``/``gte``/``lt``/``lte`` on a number or a str."""
    jpath = json_path(node.path)
    sign = _RANGE_SQL[node.op]
    kinds = ("text",) if isinstance(node.value, str) else ("integer", "real")
    params.append(jpath)
    parts = [f"CASE json_type({col}, ?)"]
    for kind in kinds:
        params.extend((jpath, node.value))
        parts.append(f"WHEN '{kind}' THEN json_extract({col}, ?) {sign} ?")
    params.extend((jpath, node.value))
    type_sql = ", ".join(f"'{kind}'" for kind in kinds)
    cond = f"{_EACH}.type IN ({type_sql}) AND {_EACH}.value {sign} ?"
    parts.append(f"WHEN 'array' THEN {_exists_element(col, cond)}")
    parts.append("ELSE 0 END")
    return "(" + " ".join(parts) + ")"


def _exists_element(col: str, cond: str) -> str:
    # The path parameter was appended by the caller just before the condition's parameters.
    return f"EXISTS (SELECT 1 FROM json_each({col}, ?) AS {_EACH} WHERE {cond})"
