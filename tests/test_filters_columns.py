"""Indexed columns and the mixed column/SQL compiler."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    rows = np.random.default_rng(1).integers(0, len(ROWS), 3 * len(ROWS))  # some, repeated
    assert column(ROWS).evaluate(leaf, rows).tolist() == [expected[r] for r in rows]


def test_take_reorders_and_compacts_strings() -> None:
    col = column(ROWS)
    positions = np.array([5, 2, 5, 4, 9])  # drops every "pear": codes must be renumbered
    taken = col.take(positions)
    kept = [ROWS[i] for i in positions]
    assert len(taken) == 5
    for leaf in LEAVES:
        assert taken.evaluate(leaf).tolist() == [matches(leaf, row) for row in kept]  # type: ignore[arg-type]
    assert repr(taken) == "Column(path=('a',), rows=5, strings=2)"  # "apple", and "fig" in a list
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


# ---- list values: elements are evaluated with the same vectorized code as scalar rows ----

L = ("l",)
LIST_ROWS: list[dict[str, Any]] = [
    {"l": ["gpu", "cpu"]},
    {"l": []},
    {"l": [1, "1", True, None, 2.5]},
    {"l": [[2], {"l": 2}, [], {}]},  # nested lists and dicts never match (no recursion)
    {"l": [False, 0]},
    {"l": [True]},
    {"l": [-0.0, "b"]},
    {"l": ["apple", "pear", "fig"]},
    {"l": [3, 2**60]},  # a huge int: the reference decides this row
    {"l": [[2**60], {"x": 2**60}, 7]},  # nested huge ints are not elements: still vectorized
    {"l": "pear"},
    {"l": 2},
    {},
    {"l": None},
    {"l": [None]},
    {"l": ["Zed", "ab", "b"]},
    {"l": [-(2**53), 2**53, 1e300]},
]

LIST_LEAVES: list[Compare | In | Exists] = [
    Compare(L, "eq", "gpu"),
    Compare(L, "eq", "pear"),
    Compare(L, "eq", 1),
    Compare(L, "eq", 2),
    Compare(L, "eq", 0),
    Compare(L, "eq", True),
    Compare(L, "eq", False),
    Compare(L, "eq", None),
    Compare(L, "eq", 3),
    Compare(L, "eq", 7),
    Compare(L, "eq", "1"),
    Compare(L, "gt", 2),
    Compare(L, "gte", 2),
    Compare(L, "lt", 0.5),
    Compare(L, "lte", -0.0),
    Compare(L, "gt", 2**53 - 1),
    Compare(L, "lt", -(2**53) + 1),
    Compare(L, "gt", 1e299),
    Compare(L, "gt", "b"),
    Compare(L, "gte", "b"),
    Compare(L, "lt", "b"),
    Compare(L, "lte", "apple"),
    Compare(L, "lt", "a"),
    In(L, ("fig", 2.5, "nope")),
    In(L, (None, False)),
    In(L, (True, "cpu", 7)),
    In(L, (0, "zzz")),
    Exists(L),
]


def expected_mask(leaf: Node, rows: list[dict[str, Any]]) -> list[bool]:
    return [matches(leaf, row) for row in rows]


@pytest.mark.parametrize("leaf", LIST_LEAVES, ids=repr)
def test_list_rows_match_reference(leaf: Compare | In | Exists) -> None:
    expected = expected_mask(leaf, LIST_ROWS)
    assert column(LIST_ROWS, L).evaluate(leaf).tolist() == expected
    rows = np.arange(len(LIST_ROWS))[::-2]
    assert column(LIST_ROWS, L).evaluate(leaf, rows).tolist() == [expected[r] for r in rows]
    assert any(expected) and not all(expected)  # the table makes every leaf discriminate
    one_by_one = Column(L)
    for row in LIST_ROWS:  # element buffers grow one list at a time
        one_by_one.extend([row])
    assert one_by_one.evaluate(leaf).tolist() == expected


def test_only_huge_int_rows_use_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    from polyvec.filters import columns as module

    calls: list[object] = []

    def spy(leaf: Node, value: object) -> bool:
        calls.append(value)
        return matches(leaf, {"l": value})

    monkeypatch.setattr(module, "leaf_matches_value", spy)
    col = column(LIST_ROWS, L)
    assert col.evaluate(Compare(L, "eq", 3)).tolist() == expected_mask(
        Compare(L, "eq", 3), LIST_ROWS
    )
    assert calls == [[3, 2**60]]  # the one row holding a huge int as an element
    calls.clear()
    col.evaluate(Exists(L))
    assert calls == []


def test_lists_of_a_batch_with_a_huge_int_in_the_middle() -> None:
    rows: list[dict[str, Any]] = [
        {"l": ["a", 1]},
        {"l": [2, -(2**60), "b"]},
        {"l": []},
        {"l": ["b", None]},
    ]
    col = column(rows, L)
    leaves: list[Compare | In | Exists] = [
        Compare(L, "eq", "b"),
        Compare(L, "lt", 0),
        In(L, (None, 1)),
        Exists(L),
    ]
    for leaf in leaves:
        assert col.evaluate(leaf).tolist() == expected_mask(leaf, rows), leaf


def test_take_carries_list_elements() -> None:
    col = column(LIST_ROWS, L)
    positions = np.array([7, 1, 8, 7, 0, 15, 3, 9, 0, 13, 2])  # repeats, any order
    taken = col.take(positions)
    kept = [LIST_ROWS[i] for i in positions]
    for leaf in LIST_LEAVES:
        assert taken.evaluate(leaf).tolist() == expected_mask(leaf, kept), leaf
    again = taken.take(np.array([10, 5, 5, 0, 1]))  # a take of a take, then growth
    kept = [kept[i] for i in [10, 5, 5, 0, 1]]
    more: list[dict[str, Any]] = [{"l": ["zebra", "gpu"]}, {"l": [2**60]}, {"l": ["apple"]}]
    again.extend(more)
    kept += more
    for leaf in LIST_LEAVES:
        assert again.evaluate(leaf).tolist() == expected_mask(leaf, kept), leaf
    assert again.evaluate(Compare(L, "gt", "pear")).tolist() == [False] * 5 + [True, False, False]


def test_take_compacts_strings_of_elements() -> None:
    col = column([{"l": ["x", "y"]}, {"l": "y"}, {"l": ["z"]}, {"l": ["w", "x"]}], L)
    taken = col.take(np.array([3, 2, 3]))  # "y" is dropped, "w", "x", "z" are kept
    assert repr(taken) == "Column(path=('l',), rows=3, strings=3)"
    assert taken.evaluate(Compare(L, "gte", "x")).tolist() == [True, True, True]
    assert taken.evaluate(Compare(L, "lt", "x")).tolist() == [True, False, True]
    assert taken.evaluate(In(L, ("y", "z"))).tolist() == [False, True, False]
    assert repr(col.take(np.array([1, 1]))) == "Column(path=('l',), rows=2, strings=1)"


LIST_SCALARS = st.sampled_from(
    [None, True, False, 0, 1, -1, 2, 0.5, -0.0, 2**53, -(2**53), 2**60, "", "a", "b", "é"]
)
LIST_ITEMS = LIST_SCALARS | st.lists(LIST_SCALARS, max_size=2) | st.just({"k": 1})
LIST_PAYLOADS = st.lists(
    st.one_of(
        st.just({}),
        st.builds(lambda v: {"l": v}, LIST_SCALARS),
        st.builds(lambda v: {"l": v}, st.lists(LIST_ITEMS, max_size=4)),
    ),
    min_size=1,
    max_size=12,
)
LIST_OPERANDS = st.sampled_from([None, True, False, 0, 1, 2, -1, 0.5, 2**53, "", "a", "b", "ab"])


@st.composite
def list_leaves(draw: st.DrawFn) -> Compare | In | Exists:
    kind = draw(st.sampled_from(["eq", "range", "in", "exists"]))
    if kind == "eq":
        return Compare(L, "eq", draw(LIST_OPERANDS))
    if kind == "in":
        return In(L, tuple(draw(st.lists(LIST_OPERANDS, min_size=1, max_size=3))))
    if kind == "exists":
        return Exists(L)
    operand = draw(LIST_OPERANDS.filter(lambda v: v is not None and not isinstance(v, bool)))
    return Compare(L, draw(st.sampled_from(["gt", "gte", "lt", "lte"])), operand)


@settings(max_examples=300, deadline=None)
@given(rows=LIST_PAYLOADS, data=st.data())
def test_list_columns_extend_take_property(rows: list[dict[str, Any]], data: st.DataObject) -> None:
    col = Column(L)
    cut = data.draw(st.integers(0, len(rows)), label="cut")
    col.extend(rows[:cut])  # two batches
    col.extend(rows[cut:])
    order = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=15), label="order")
    taken = col.take(np.array(order, dtype=np.int64))
    kept = [rows[i] for i in order]
    for leaf in data.draw(st.lists(list_leaves(), min_size=1, max_size=4), label="leaves"):
        assert col.evaluate(leaf).tolist() == expected_mask(leaf, rows)
        assert taken.evaluate(leaf).tolist() == expected_mask(leaf, kept)


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
    rows = np.array([5, 0, 23, 5, 11], dtype=np.intp)  # a search's candidates, checked after
    some = compile_filter(node, n=len(ROWS2), columns=COLS2, sql_mask=spy, rows=rows)
    assert some.tolist() == mask[rows].tolist()


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
    for bad in ([n], [-1, 0]):
        with pytest.raises(ValueError, match="rows must lie"):
            compile_filter(Exists(A), n=n, columns=COLS2, sql_mask=spy, rows=np.array(bad))
    assert compile_filter(MatchAll(), n=n, columns={}, sql_mask=spy,
                          rows=np.array([1, 2])).tolist() == [True, True]


def test_a_frozen_column_keeps_its_answers_while_the_column_grows() -> None:
    """Readers evaluate filters on ``Column.frozen()`` while the live column takes appends:
    new rows, new strings (interned after the copy), list elements and reallocated arrays
    must not change what the frozen copy answers."""
    col = Column(A)
    col.extend(ROWS)
    frozen = col.frozen()
    leaves = [Compare(A, "eq", "pear"), Compare(A, "gte", "b"), Compare(A, "lt", 4),
              In(A, ("zebra", "pear", 3)), Exists(A), Compare(A, "eq", "zebra")]
    before = [frozen.evaluate(leaf).copy() for leaf in leaves]
    assert [b.tolist() for b in before] == [[matches(leaf, r) for r in ROWS] for leaf in leaves]
    col.extend([{"a": "zebra"}, {"a": ["apple", "zebra", 1]}, {"a": 2.5}] * 3000)
    assert len(col) == len(ROWS) + 9000 and len(frozen) == len(ROWS)
    for leaf, b in zip(leaves, before, strict=True):
        np.testing.assert_array_equal(frozen.evaluate(leaf), b)
    assert compile_filter(parse_filter({"a": "zebra"}), n=len(ROWS), columns={A: frozen},
                          sql_mask=lambda sub: np.zeros(len(ROWS), bool)).sum() == 0


def test_in_over_many_integers_equals_isin() -> None:
    """``$in`` with many numbers takes a lookup table where they are integers on a modest
    span (cluster ids, tenants): the same rows as ``np.isin``, NaN, infinities, fractions
    and out-of-range values included; a wide span or a fraction goes back to ``np.isin``."""
    from polyvec.filters.columns import LUT_SPAN, _isin_numbers

    rng = np.random.default_rng(3)
    num = rng.integers(-50, 1050, 5000).astype(np.float64)
    num[::7] += 0.5
    num[::11] = np.nan
    num[1], num[2], num[3] = np.inf, -np.inf, -0.0
    for wanted in ([float(v) for v in rng.choice(1000, 300, replace=False)] + [0.0, -3.0],
                   [0.0, 1.0], [5.0, 2.0 * LUT_SPAN], [1.0, 2.5, 7.0], [2**52, 2**52 + 3]):
        np.testing.assert_array_equal(_isin_numbers(num, wanted), np.isin(num, wanted))


def test_in_over_ids_through_the_kept_ints_while_the_column_grows() -> None:
    """A column keeps its rows' numbers as small ints for ``$in`` over ids (one table
    lookup a row). The answers equal the reference's for ids, negatives, fractions, huge
    numbers, strings, lists and missing values; rows added after a lookup are covered by the
    next one, and a frozen copy made before the growth keeps its own rows' answers."""
    from polyvec.filters.columns import LUT_SPAN

    rng = np.random.default_rng(8)
    pool: list[Any] = [int(v) for v in rng.integers(0, 40, 30)] + [
        -1, 2.0, 2.5, LUT_SPAN, LUT_SPAN - 1, 2**40, "7", True, None, [3, 9], [], {"x": 1}]
    rows = [{"a": pool[int(i)]} if i < len(pool) else {} for i in rng.integers(0, 45, 400)]
    col = Column(A)
    leaves = [In(A, (3, 9, 17)), In(A, (0, LUT_SPAN - 1)), In(A, (2, 39, 7)),
              In(A, (-1, 3)), In(A, (LUT_SPAN, 5))]
    frozen = None
    for lo in range(0, len(rows), 100):
        col.extend(rows[lo:lo + 100])
        for leaf in leaves:
            assert col.evaluate(leaf).tolist() == [matches(leaf, r) for r in rows[:lo + 100]]
        if lo == 100:
            frozen = col.frozen()
    assert frozen is not None and len(frozen) == 200
    assert frozen.evaluate(leaves[0]).tolist() == [matches(leaves[0], r) for r in rows[:200]]


def test_count_and_rows_from_the_kept_values_equal_the_reference() -> None:
    """``Column.count`` and ``Column.rows_of`` answer ``$in``/``eq`` over ids from the value
    counts and the rows kept by value, while the column grows (the kept rows made again or
    extended by a lookup) and on frozen copies shorter and longer than what is kept: the
    reference's count and rows; ``None`` where they cannot say (strings, a range, an id
    outside ``[0, LUT_SPAN)`` such as -2, a column with lists); ``count_bound`` takes the
    least of an ``$and``'s counts."""
    from polyvec.filters import count_bound

    rng = np.random.default_rng(2)
    col = Column(A)
    rows: list[dict[str, Any]] = []
    copies: list[tuple[Column, int]] = []
    later: list[tuple[Column, int]] = []
    leaves = (In(A, (3, 7, 7, 49, 500)), Compare(A, "eq", 3), In(A, (60,)),
              In(A, tuple(range(0, 50, 2))), In(A, (3, 2**20 - 1)))

    def check(copy: Column, size: int) -> None:
        for leaf in leaves:
            want = [i for i, r in enumerate(rows[:size]) if matches(leaf, r)]
            assert copy.count(leaf) == len(want), (leaf, size)
            got = copy.rows_of(leaf)
            assert got is not None and got.tolist() == want, (leaf, size)

    for _ in range(12):
        part = [{"a": int(v)} for v in rng.integers(0, 50, rng.integers(1, 300))] + [
            {"a": 3.0}, {"a": "3"}, {"a": -2}, {"a": 7.5}, {}]
        col.extend(part)
        rows += part
        copies.append((col.frozen(), len(rows)))
        later.append((col.frozen(), len(rows)))  # first asked once the kept cover more
        for copy, size in [copies[-1], *(copies[j] for j in rng.permutation(len(copies))[:3])]:
            check(copy, size)
    for copy, size in later:
        check(copy, size)
    for leaf in (In(A, (3, -2)), Compare(A, "eq", -2), Compare(A, "eq", 2**20)):
        assert col.count(leaf) is None and col.rows_of(leaf) is None
    assert col.count(Compare(A, "lt", 3)) is None and col.count(In(A, ("3",))) is None
    assert col.count(In(A, (True,))) is None
    lists = column([{"a": [1, 2]}, {"a": 1}])
    assert lists.count(In(A, (1,))) is None
    cols = {A: col, ("b",): column([{"b": i % 2} for i in range(len(col))], ("b",))}
    node = parse_filter({"a": {"$in": [3, 7]}, "b": 1})
    assert count_bound(node, cols) == min(col.count(In(A, (3, 7))),
                                          cols[("b",)].count(Compare(("b",), "eq", 1)))
    assert count_bound(parse_filter({"$or": [{"a": 1}, {"b": 1}]}), cols) is None


@pytest.mark.parametrize("share", [1, 10**9])
def test_an_id_list_matching_a_few_rows_reads_them_by_value(monkeypatch: Any,
                                                           share: int) -> None:
    """``Column.evaluate`` of an id list matching at most ``1/FEW_SHARE`` of the rows sets
    the rows ``rows_of`` reads (``share`` 1: always; 10**9: never); both equal the
    reference, for whole, fractional, negative, text and missing values."""
    import polyvec.filters.columns as columns

    monkeypatch.setattr(columns, "FEW_SHARE", share)
    rng = np.random.default_rng(3)
    rows = [{"a": int(v)} for v in rng.integers(0, 400, 3_000)] + [
        {"a": 5.0}, {"a": 5.5}, {"a": -5}, {"a": "5"}, {}, {"a": 2**40}]
    col = column(rows)
    for ids in ([5, 9], [5, 9, 9, 399, 10_000], list(range(0, 400, 7))):
        leaf = In(A, tuple(ids), np.array(ids, dtype=np.int64))
        want = [i for i, r in enumerate(rows) if matches(leaf, r)]
        assert np.flatnonzero(col.evaluate(leaf)).tolist() == want
