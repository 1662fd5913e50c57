"""Indexed columns and the mixed column/SQL compiler."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from polyvec.filters import (
    And,
    Column,
    Compare,
    Exists,
    In,
    MatchAll,
    Node,
    Not,
    Or,
    compile_filter,
    matches,
    parse_filter,
)

A = ("a",)
ROWS: list[dict[str, Any]] = [
    {"a": "pear"},
    {"a": 3},
    {},
    {"a": None},
    {"a": ["fig", 7, True]},
    {"a": "apple"},
    {"a": {"pear": 1}},
    {"a": False},
    {"a": 2**60},
    {"a": 3.0},
    {"b": "pear"},
    {"a": "pear"},
]


def column(rows: list[dict[str, Any]], path: tuple[str, ...] = A) -> Column:
    col = Column(path)
    col.extend(rows)
    return col


LEAVES: list[Node] = [
    Compare(A, "eq", "pear"),
    Compare(A, "eq", 3),
    Compare(A, "eq", True),
    Compare(A, "eq", False),
    Compare(A, "eq", None),
    Compare(A, "gt", 2**53),
    Compare(A, "gt", "b"),
    Compare(A, "lte", "pear"),
    Compare(A, "gte", 3),
    Compare(A, "lt", 2**53),
    In(A, ("apple", 7, None, "kiwi")),
    In(A, ("kiwi", 2.0, 3, "pear")),
    In(A, ("pear", "apple")),
    Exists(A),
]


@pytest.mark.parametrize("leaf", LEAVES, ids=repr)
def test_evaluate_matches_reference(leaf: Compare | In | Exists) -> None:
    expected = [matches(leaf, row) for row in ROWS]
    assert column(ROWS).evaluate(leaf).tolist() == expected
    assert any(expected) and not all(expected)  # the table makes every leaf discriminate


def test_take_reorders_and_compacts_strings() -> None:
    col = column(ROWS)
    positions = np.array([5, 2, 5, 4, 9])  # drops every "pear": codes must be renumbered
    taken = col.take(positions)
    kept = [ROWS[i] for i in positions]
    assert len(taken) == 5
    for leaf in LEAVES:
        assert taken.evaluate(leaf).tolist() == [matches(leaf, row) for row in kept]  # type: ignore[arg-type]
    assert repr(taken) == "Column(path=('a',), rows=5, strings=1)"  # "fig" is in a list
    taken.extend([{"a": "pear"}, {"a": "zebra"}])  # the taken column keeps growing on its own
    assert taken.evaluate(Compare(A, "gt", "pear")).tolist() == [False] * 6 + [True]
    assert len(col) == len(ROWS)  # the source is untouched


def test_take_of_nothing_and_bad_positions() -> None:
    col = column(ROWS)
    assert len(col.take(np.array([], dtype=np.int64))) == 0
    with pytest.raises(IndexError):
        col.take(np.array([len(ROWS)]))
    with pytest.raises(IndexError):
        col.take(np.array([-1]))
    with pytest.raises(TypeError):
        col.take(np.array([0.5]))


def test_extend_one_row_at_a_time_grows_past_capacity() -> None:
    col = Column(("n",))
    for i in range(1000):
        col.extend([{"n": i} if i % 3 else {"n": str(i)}])
    assert len(col) == 1000
    got = col.evaluate(Compare(("n",), "gte", 990))
    assert np.flatnonzero(got).tolist() == [991, 992, 994, 995, 997, 998]
    assert col.evaluate(Compare(("n",), "eq", "999")).sum() == 1


def test_evaluate_rejects_foreign_leaves() -> None:
    col = column(ROWS)
    with pytest.raises(ValueError, match="path"):
        col.evaluate(Exists(("b",)))
    with pytest.raises(TypeError):
        col.evaluate(Not(Exists(A)))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Column(())


class SqlSpy:
    """Stands in for SQLite: answers with the reference and records what it was asked."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.asked: list[Node] = []

    def __call__(self, node: Node) -> np.ndarray:
        self.asked.append(node)
        return np.array([matches(node, row) for row in self.rows], dtype=bool)


ROWS2 = [{"a": i % 4, "b": i % 3, "c": i % 2, "d": str(i)} for i in range(24)]
COLS2: dict[tuple[str, ...], Column] = {
    ("a",): column(ROWS2, ("a",)),
    ("b",): column(ROWS2, ("b",)),
}

ROUTING: list[tuple[dict[str, Any], list[Node]]] = [
    ({"a": 1}, []),
    ({"c": 1}, [Compare(("c",), "eq", 1)]),
    ({"a": 1, "c": 1, "d": "5"}, [And((Compare(("c",), "eq", 1), Compare(("d",), "eq", "5")))]),
    ({"$or": [{"a": 1}, {"c": 1}]}, [Compare(("c",), "eq", 1)]),
    (
        {"$not": {"$or": [{"c": 1}, {"d": "3"}]}},
        [parse_filter({"$not": {"$or": [{"c": 1}, {"d": "3"}]}})],
    ),
    (
        {"$or": [{"b": 1, "c": 1}, {"d": "3", "c": 0}]},
        [Compare(("c",), "eq", 1), parse_filter({"d": "3", "c": 0})],
    ),
    ({"a": 9, "c": 1}, []),  # the column already rules out every row: SQL is skipped
    ({"$or": [{"a": {"$gte": 0}}, {"c": 1}]}, []),  # ... or already accepts every row
]


@pytest.mark.parametrize(("raw", "asked"), ROUTING)
def test_compile_filter_routes_non_indexed_subtrees_to_sql(
    raw: dict[str, Any], asked: list[Node]
) -> None:
    node = parse_filter(raw)
    spy = SqlSpy(ROWS2)
    mask = compile_filter(node, n=len(ROWS2), columns=COLS2, sql_mask=spy)
    assert mask.dtype == np.bool_
    assert mask.tolist() == [matches(node, row) for row in ROWS2]
    assert spy.asked == asked


def test_compile_filter_edges() -> None:
    spy = SqlSpy(ROWS2)
    n = len(ROWS2)
    assert compile_filter(MatchAll(), n=n, columns={}, sql_mask=spy).all()
    assert not compile_filter(Not(MatchAll()), n=n, columns={}, sql_mask=spy).any()
    assert compile_filter(Or((Exists(A),)), n=n, columns={}, sql_mask=spy).all()
    assert spy.asked == [Not(MatchAll()), Or((Exists(A),))]
    with pytest.raises(ValueError, match="shape"):
        compile_filter(Exists(A), n=n, columns={}, sql_mask=lambda node: np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="rows"):
        compile_filter(Exists(A), n=n + 1, columns=COLS2, sql_mask=spy)
    with pytest.raises(ValueError, match="n must"):
        compile_filter(Exists(A), n=-1, columns=COLS2, sql_mask=spy)
