"""Parser of the payload filter language: valid forms and malformed filters."""

from __future__ import annotations

from typing import Any

import pytest

from polyvec.errors import FilterError
from polyvec.filters import (
    And,
    Compare,
    Exists,
    In,
    MatchAll,
    Node,
    Not,
    Or,
    leaf_paths,
    parse_filter,
)

A = ("a",)
Y = ("year",)

VALID: list[tuple[Any, Node]] = [
    (None, MatchAll()),
    ({}, MatchAll()),
    ({"a": 5}, Compare(A, "eq", 5)),
    ({"a": "x"}, Compare(A, "eq", "x")),
    ({"a": None}, Compare(A, "eq", None)),
    ({"a": True}, Compare(A, "eq", True)),
    ({"a": -0.5}, Compare(A, "eq", -0.5)),
    ({"a": {"$eq": 2**53}}, Compare(A, "eq", 2**53)),
    ({"a": {"$ne": 1}}, Not(Compare(A, "eq", 1))),
    ({"a": {"$in": [1, "x", None, False]}}, In(A, (1, "x", None, False))),
    ({"a": {"$nin": ["x"]}}, Not(In(A, ("x",)))),
    ({"a": {"$gt": 1}}, Compare(A, "gt", 1)),
    ({"a": {"$gte": 1.5}}, Compare(A, "gte", 1.5)),
    ({"a": {"$lt": "m"}}, Compare(A, "lt", "m")),
    ({"a": {"$lte": -3}}, Compare(A, "lte", -3)),
    ({"a": {"$exists": True}}, Exists(A)),
    ({"a": {"$exists": False}}, Not(Exists(A))),
    ({"meta.author.name": "ann"}, Compare(("meta", "author", "name"), "eq", "ann")),
    ({"é.k y": 1}, Compare(("é", "k y"), "eq", 1)),
    (
        {"year": {"$gte": 2000, "$lt": 2010}},
        And((Compare(Y, "gte", 2000), Compare(Y, "lt", 2010))),
    ),
    ({"a": 1, "b": 2}, And((Compare(A, "eq", 1), Compare(("b",), "eq", 2)))),
    ({"$and": [{"a": 1}]}, Compare(A, "eq", 1)),
    (
        {"$and": [{"a": 1}, {"$and": [{"b": 2}, {}]}]},
        And((Compare(A, "eq", 1), Compare(("b",), "eq", 2))),
    ),
    ({"$or": [{"a": 1}, {"b": 2}]}, Or((Compare(A, "eq", 1), Compare(("b",), "eq", 2)))),
    ({"$or": [{"a": 1}, {}]}, MatchAll()),
    ({"$or": [{"$or": [{"a": 1}]}, {"b": 2}]}, Or((Compare(A, "eq", 1), Compare(("b",), "eq", 2)))),
    ({"$not": {"a": 1}}, Not(Compare(A, "eq", 1))),
    ({"$not": {"a": {"$ne": 1}}}, Compare(A, "eq", 1)),
    ({"$not": {}}, Not(MatchAll())),
    (
        {"a": 1, "$or": [{"b": {"$exists": True}}, {"c": {"$lt": 0}}]},
        And((Compare(A, "eq", 1), Or((Exists(("b",)), Compare(("c",), "lt", 0))))),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_parse_valid(raw: Any, expected: Node) -> None:
    node = parse_filter(raw)
    assert node == expected
    assert repr(node) == repr(expected)  # == treats 1, 1.0 and True operands alike; repr does not


BAD: list[tuple[Any, str]] = [
    ([{"a": 1}], ""),
    ("a", ""),
    ({"$and": {"a": 1}}, "$and"),
    ({"$and": []}, "$and"),
    ({"$or": "x"}, "$or"),
    ({"$and": [{"a": 1}, 5]}, "$and[1]"),
    ({"$and": [{}, {"year": {"$gte": 2000, "$lt": None}}]}, "$and[1].year.$lt"),
    ({"$and": [{"a": 1}, {"year": {"$gte": True}}]}, "$and[1].year.$gte"),
    ({"tags": {"$in": []}}, "tags.$in"),
    ({"tags": {"$in": "x"}}, "tags.$in"),
    ({"tags": {"$in": [1, [2]]}}, "tags.$in[1]"),
    ({"tags": {"$nin": [float("nan")]}}, "tags.$nin[0]"),
    ({"a": {"$in": [None, {"x": 1}]}}, "a.$in[1]"),
    ({"$not": {"$or": [3]}}, "$not.$or[0]"),
    ({"$not": [{"a": 1}]}, "$not"),
    ({"$not": None}, "$not"),
    ({"a": {"$regex": "x"}}, "a.$regex"),
    ({"a": {"$eq": 1, "$nope": 2}}, "a.$nope"),
    ({"$regex": "x"}, "$regex"),
    ({"$or": [{"$nor": []}]}, "$or[0].$nor"),
    ({"a": {"$eq": {"b": 1}}}, "a.$eq"),
    ({"a": {"$eq": [1]}}, "a.$eq"),
    ({"a": [1, 2]}, "a"),
    ({"a": (1,)}, "a"),
    ({"a": float("nan")}, "a"),
    ({"a": {"$gt": float("inf")}}, "a.$gt"),
    ({"a": {"$gt": [1]}}, "a.$gt"),
    ({"a": {"$lte": None}}, "a.$lte"),
    ({"a": {"$eq": 2**53 + 1}}, "a.$eq"),
    ({"a": {"$lt": -(2**60)}}, "a.$lt"),
    ({"a": {"$exists": 1}}, "a.$exists"),
    ({"a": {"$exists": None}}, "a.$exists"),
    ({1: 5}, "1"),
    ({"$or": [{"a": {2: 1}}]}, "$or[0].a.2"),
    ({"a": {}}, "a"),
    ({"a": {"b": 1}}, "a.b"),
    ({"a..b": 1}, "a..b"),
    ({"x.": 1}, "x."),
    ({"a.$b": 1}, "a.$b"),
    ({'a"b': 1}, 'a"b'),
    ({"a\\b": 1}, "a\\b"),
    ({"a\tb": 1}, "a\tb"),
    ({"a": "\ud800"}, "a"),
    ({"$and": [{"b": {"$in": ["ok", "\udfff"]}}]}, "$and[0].b.$in[1]"),
]


@pytest.mark.parametrize(("raw", "path"), BAD)
def test_parse_invalid_names_the_bad_node(raw: Any, path: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(raw)
    assert info.value.path == path


def test_filter_error_is_a_value_error_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match=r"non-empty list.*\(at tags\.\$in\)"):
        parse_filter({"tags": {"$in": []}})


def test_leaf_paths() -> None:
    node = parse_filter({"a.b": 1, "$or": [{"c": {"$nin": [1]}}, {"$not": {"a.b": 2}}]})
    assert leaf_paths(node) == {("a", "b"), ("c",)}
    assert node.paths() == {("a", "b"), ("c",)}
    assert MatchAll().paths() == set()


def test_nodes_are_frozen_and_hashable() -> None:
    node = parse_filter({"a": {"$in": [1, 2]}})
    assert hash(node) == hash(In(A, (1, 2)))
    with pytest.raises(AttributeError):
        node.path = ("b",)  # type: ignore[attr-defined]
