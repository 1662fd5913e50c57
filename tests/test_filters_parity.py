"""The three evaluators (reference, SQLite, numpy columns) agree on the filter contract."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyvec.filters import (
    Column,
    Node,
    compile_filter,
    dumps_payload,
    leaf_paths,
    matches,
    parse_filter,
    to_sql,
)
from polyvec.filters.reference import MISSING, resolve

Payload = dict[str, Any]


def reference_mask(node: Node, payloads: Sequence[Payload]) -> list[bool]:
    return [matches(node, p) for p in payloads]


def open_items(payloads: Sequence[Payload]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items(pos INTEGER PRIMARY KEY, payload TEXT)")
    rows = [(i, dumps_payload(p)) for i, p in enumerate(payloads)]
    db.executemany("INSERT INTO items(pos, payload) VALUES (?, ?)", rows)
    return db


def sql_mask(db: sqlite3.Connection, node: Node, n: int) -> np.ndarray:
    where, params = to_sql(node)
    mask = np.zeros(n, dtype=bool)
    hits = [pos for (pos,) in db.execute(f"SELECT pos FROM items WHERE {where}", params)]
    mask[hits] = True
    return mask


def column_mask(
    db: sqlite3.Connection,
    node: Node,
    payloads: Sequence[Payload],
    indexed: Iterable[tuple[str, ...]],
) -> np.ndarray:
    columns = {}
    for path in indexed:
        columns[path] = Column(path)
        columns[path].extend(payloads)
    n = len(payloads)
    return compile_filter(node, n=n, columns=columns, sql_mask=lambda sub: sql_mask(db, sub, n))


def assert_all_agree(
    node: Node, payloads: Sequence[Payload], indexed: Iterable[tuple[str, ...]]
) -> list[bool]:
    expected = reference_mask(node, payloads)
    with open_items(payloads) as db:
        assert sql_mask(db, node, len(payloads)).tolist() == expected, to_sql(node)
        assert column_mask(db, node, payloads, indexed).tolist() == expected
    return expected


SEMANTICS: list[tuple[dict[str, Any], Payload, bool]] = [
    ({"a": 1}, {"a": 1.0}, True),
    ({"a": 1}, {"a": True}, False),
    ({"a": True}, {"a": 1}, False),
    ({"a": 0}, {"a": False}, False),
    ({"a": False}, {"a": False}, True),
    ({"a": None}, {"a": None}, True),
    ({"a": None}, {}, False),
    ({"a": None}, {"a": [1, None]}, True),
    ({"a": "1"}, {"a": 1}, False),
    ({"a": "[1]"}, {"a": [1]}, False),
    ({"a": '{"x":1}'}, {"a": {"x": 1}}, False),
    ({"a": "x"}, {"a": {"x": 1}}, False),
    ({"a": {"$ne": 1}}, {}, True),
    ({"a": {"$ne": 1}}, {"a": [0, 1]}, False),
    ({"a": {"$exists": True}}, {"a": None}, True),
    ({"a": {"$exists": False}}, {"b": 1}, True),
    ({"a.b": 1}, {"a": {"b": 1}}, True),
    ({"a.b": 1}, {"a": [{"b": 1}]}, False),
    ({"a.b": {"$exists": True}}, {"a": 5}, False),
    ({"a": 2}, {"a": [1, 2]}, True),
    ({"a": 2}, {"a": [[2]]}, False),
    ({"a": 2}, {"a": [{"a": 2}]}, False),
    ({"a": {"$in": [1, "x"]}}, {"a": "x"}, True),
    ({"a": {"$in": [True, None]}}, {"a": [1, 0]}, False),
    ({"a": {"$in": ["x", 1, 2.5]}}, {"a": 2.5}, True),
    ({"a": {"$in": [1, "x", "y"]}}, {"a": ["z", "y"]}, True),
    ({"a": {"$in": [None, False]}}, {"a": False}, True),
    ({"a": {"$nin": [1]}}, {"a": [1, 2]}, False),
    ({"a": {"$gt": 1}}, {"a": "2"}, False),
    ({"a": {"$gt": "a"}}, {"a": "b"}, True),
    ({"a": {"$gt": "a"}}, {"a": 5}, False),
    ({"a": {"$lt": "é"}}, {"a": "z"}, True),
    ({"a": {"$lt": "😀"}}, {"a": "\uffff"}, True),
    ({"a": {"$lt": 5}}, {"a": [10, 3]}, True),
    ({"a": {"$gt": 1, "$lt": 3}}, {"a": [0, 5]}, True),  # each operator is its own "any"
    ({"a": {"$gt": 0}}, {"a": True}, False),
    ({"a": {"$gte": 0}}, {"a": -0.0}, True),
    ({"a": {"$gt": -1}}, {"a": {"b": 1}}, False),
    ({"a": {"$lte": "b"}}, {"a": ["c", "b"]}, True),
    ({"a": 0.1}, {"a": 0.1}, True),
    ({"a": 2**53}, {"a": 2**53 + 1}, False),
    ({"a": {"$lt": 2**53}}, {"a": 2**53 + 1}, False),
    ({"a": {"$gt": 9.007199254740992e15}}, {"a": 2**53 + 1}, True),
    ({"a": {"$gt": 2**53}}, {"a": [0, 2**62]}, True),
    ({"k y.é": "😀"}, {"k y": {"é": "😀"}}, True),
    ({"a": {"$gt": "b"}}, {"a": "b"}, False),
    ({"a": {"$gte": "b"}}, {"a": "b"}, True),
    ({"a": {"$lt": "b"}}, {"a": "b"}, False),
    ({"a": {"$lte": "b"}}, {"a": "b"}, True),
    ({"a": {"$lt": "b"}}, {"a": "ab"}, True),
    ({"a": {"$gt": "b"}}, {"a": "b\x01"}, True),
    ({"a": {"$gt": 1}}, {"a": 1.0}, False),
    ({"a": {"$gte": 1}}, {"a": 1.0}, True),
    ({"a": {"$lt": 1.0}}, {"a": 1}, False),
    ({"a": {"$lte": 1.0}}, {"a": 1}, True),
    ({"a": {"$gt": 1}}, {"a": [1, 1.0]}, False),
    ({"$not": {"a": 1}}, {}, True),
    ({"$or": [{"a": 1}, {"b": {"$exists": False}}]}, {"b": 0}, False),
]


@pytest.mark.parametrize(("raw", "payload", "expected"), SEMANTICS)
@pytest.mark.parametrize("indexed", [False, True], ids=["sql", "columns"])
def test_semantics_table(
    raw: dict[str, Any], payload: Payload, expected: bool, indexed: bool
) -> None:
    node = parse_filter(raw)
    paths = leaf_paths(node) if indexed else set()
    filler: list[Payload] = [{}, {"a": None}, {"a": [None, "b", 3.5]}]  # variety for the column
    assert assert_all_agree(node, [payload, *filler], paths)[0] is expected


# ---- property test -------------------------------------------------------------------------

KEYS = ["a", "b", "é"]
POOL = [None, True, False, 0, 1, -1, 2, 1.0, 0.5, -0.0, "", "a", "b", "é", "😀", "1"]
TEXT = st.sampled_from(["", "a", "b", "ab", "é", "Z", "😀", "a\x7f", "1"]) | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=4
)
INTS = st.integers(-3, 3) | st.integers(-(2**53), 2**53)
FLOATS = st.sampled_from([0.0, -0.0, 0.5, 1.0, -2.5, 3.0, 0.1]) | st.floats(
    allow_nan=False, allow_infinity=False
)
SCALARS = st.sampled_from(POOL) | st.none() | st.booleans() | INTS | FLOATS | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS), inner, min_size=1, max_size=3)
    ),
    max_leaves=4,
)
PAYLOADS = st.lists(
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3), min_size=3, max_size=10
)
PATHS = st.sampled_from(KEYS) | st.builds(
    "{}.{}".format, st.sampled_from(KEYS), st.sampled_from(KEYS)
)


def seen_at(payloads: Sequence[Payload], path: str) -> list[Any]:
    """The scalars found at ``path`` (list elements included), so filters ask about them."""
    seen = []
    for payload in payloads:
        value = resolve(payload, tuple(path.split(".")))
        for item in value if isinstance(value, list) else [value]:
            if item is not MISSING and not isinstance(item, (dict, list)):
                seen.append(item)
    return seen


RANGE_OPS = st.sampled_from(["$gt", "$gte", "$lt", "$lte"])
BOUNDS = INTS | FLOATS | TEXT
Draw = Callable[[st.SearchStrategy[Any]], Any]


def draw_operand(draw: Draw, seen: list[Any], fallback: st.SearchStrategy[Any]) -> Any:
    if seen and draw(st.booleans()):
        return seen[draw(st.integers(0, len(seen) - 1))]
    return draw(fallback)


def draw_field(draw: Draw, payloads: Sequence[Payload]) -> dict[str, Any]:
    """One path and its operators, whose operands are often values found at that path."""
    path = draw(PATHS)
    seen = seen_at(payloads, path)
    ranged = [v for v in seen if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    spec: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 2))):  # 0 operators: the {"path": value} shorthand
        kind = draw(st.integers(0, 3))
        if kind == 0:
            spec[draw(st.sampled_from(["$eq", "$ne"]))] = draw_operand(draw, seen, SCALARS)
        elif kind == 1:
            size = draw(st.integers(1, 3))
            items = [draw_operand(draw, seen, SCALARS) for _ in range(size)]
            spec[draw(st.sampled_from(["$in", "$nin"]))] = items
        elif kind == 2:
            spec[draw(RANGE_OPS)] = draw_operand(draw, ranged, BOUNDS)
        else:
            spec["$exists"] = draw(st.booleans())
    return {path: spec or draw_operand(draw, seen, SCALARS)}


def draw_filter(draw: Draw, payloads: Sequence[Payload], depth: int = 2) -> dict[str, Any]:
    """A random valid filter, nested at most ``depth`` logical operators deep."""
    kind = draw(st.integers(0, 6)) if depth else 0
    if kind <= 1:
        return {**draw_field(draw, payloads), **(draw_field(draw, payloads) if kind else {})}
    if kind == 5:
        return {"$not": draw_filter(draw, payloads, depth - 1)}
    if kind == 6:
        return {**draw_field(draw, payloads), "$or": [draw_filter(draw, payloads, depth - 1)]}
    children = [draw_filter(draw, payloads, depth - 1) for _ in range(draw(st.integers(1, 3)))]
    return {"$and" if kind == 2 else "$or": children}


@settings(max_examples=200, deadline=None)
@given(payloads=PAYLOADS, data=st.data())
def test_reference_sql_and_columns_agree(payloads: list[Payload], data: st.DataObject) -> None:
    raw = draw_filter(data.draw, payloads)
    node = parse_filter(raw)
    paths = sorted(leaf_paths(node))
    indexed = data.draw(
        st.sets(st.sampled_from(paths)) if paths else st.just(set()), label="indexed"
    )
    assert_all_agree(node, payloads, indexed)


@settings(max_examples=100, deadline=None)
@given(payloads=PAYLOADS, data=st.data())
def test_column_take_and_growth(payloads: list[Payload], data: st.DataObject) -> None:
    node = parse_filter(draw_filter(data.draw, payloads))
    columns = {}
    for path in leaf_paths(node):
        columns[path] = Column(path)
        for payload in payloads:  # one row at a time: exercises the buffer growth
            columns[path].extend([payload])
    order = data.draw(st.lists(st.integers(0, len(payloads) - 1), max_size=12), label="order")
    taken = {path: col.take(np.array(order, dtype=np.int64)) for path, col in columns.items()}
    kept = [payloads[i] for i in order]
    mask = compile_filter(node, n=len(kept), columns=taken, sql_mask=_no_sql)
    assert mask.tolist() == reference_mask(node, kept)


def _no_sql(node: Node) -> np.ndarray:
    raise AssertionError(f"every path is indexed, yet SQL was asked for {node}")
