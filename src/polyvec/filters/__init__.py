"""Payload filters: parse a JSON filter, then evaluate it in Python, SQLite or numpy columns.

The three evaluators share one contract (see :mod:`polyvec.filters.reference`):
:func:`matches` is the reference, :func:`to_sql` compiles for SQLite's JSON1 functions, and
:func:`compile_filter` evaluates indexed paths on :class:`Column` arrays and hands the rest to
SQLite.

Examples
--------
>>> node = parse_filter({"$or": [{"tags": "news"}, {"year": {"$gte": 2020}}]})
>>> matches(node, {"tags": ["sport", "news"]})
True
"""

from __future__ import annotations

from .ast import And, Compare, Exists, In, MatchAll, Node, Not, Or, leaf_paths
from .columns import Column
from .compile import compile_filter, count_bound, rows_by_value
from .parse import parse_filter
from .reference import matches
from .sql import dumps_payload, to_sql

__all__ = [
    "parse_filter",
    "matches",
    "to_sql",
    "dumps_payload",
    "compile_filter",
    "count_bound",
    "rows_by_value",
    "leaf_paths",
    "Column",
    "Node",
    "MatchAll",
    "And",
    "Or",
    "Not",
    "Compare",
    "In",
    "Exists",
]
