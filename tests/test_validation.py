"""Bad input gets a typed error naming expected vs got, and stored data stays exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import token_sets, unit

import polyvec as pv
from polyvec import errors as E


@pytest.fixture
def coll(db, rng):
    c = db.create_collection("c", {"v": pv.Dense(4), "t": pv.Multi(3)}, indexed=["n"],
                             segment_rows=5)
    c.add(list(range(8)), {"v": unit(rng, 8, 4), "t": token_sets(rng, 8, 3)},
          [{"n": i} for i in range(8)])
    return c


def _state(c) -> list:
    return [(it.id, it.payload, it.vectors["v"].tolist(), it.vectors["t"].tolist())
            for it in c.get(sorted(c))]


def _vec(n: int = 1, d: int = 4) -> np.ndarray:
    return np.ones((n, d), dtype=np.float32)


def _toks(n: int = 1) -> list[np.ndarray]:
    return [np.ones((2, 3), dtype=np.float32)] * n


BAD_WRITES = [
    # (description, kwargs for add, expected error, words the message must contain)
    ("wrong dim", dict(ids=[100], vectors={"v": _vec(1, 5), "t": _toks()}),
     E.DimensionMismatch, ["(1, 4)", "(1, 5)"]),
    ("wrong row count", dict(ids=[100, 101], vectors={"v": _vec(1), "t": _toks(2)}),
     E.DimensionMismatch, ["(2, 4)", "(1, 4)"]),
    ("int dtype", dict(ids=[100], vectors={"v": np.ones((1, 4), dtype=np.int64), "t": _toks()}),
     E.DTypeMismatch, ["float", "int64"]),
    ("string dtype", dict(ids=[100], vectors={"v": np.array([["a"] * 4]), "t": _toks()}),
     E.DTypeMismatch, ["float", "<U1"]),
    ("nan", dict(ids=[100], vectors={"v": np.array([[1, np.nan, 0, 0]], np.float32),
                                    "t": _toks()}), E.InvalidVector, ["finite", "NaN"]),
    ("inf", dict(ids=[100], vectors={"v": np.array([[1, np.inf, 0, 0]]), "t": _toks()}),
     E.InvalidVector, ["finite"]),
    ("zero vector under cosine", dict(ids=[100], vectors={"v": np.zeros((1, 4)), "t": _toks()}),
     E.InvalidVector, ["non-zero"]),
    ("nan token", dict(ids=[100], vectors={"v": _vec(), "t": [np.full((2, 3), np.nan)]}),
     E.InvalidVector, ["finite"]),
    ("empty token set", dict(ids=[100], vectors={"v": _vec(), "t": [np.zeros((0, 3))]}),
     E.InvalidVector, ["at least one token"]),
    ("ragged token set", dict(ids=[100], vectors={"v": _vec(), "t": [[[1.0, 0, 0], [1.0]]]}),
     E.InvalidVector, ["ragged"]),
    ("token dim", dict(ids=[100], vectors={"v": _vec(), "t": [np.ones((2, 4))]}),
     E.DimensionMismatch, ["(tokens, 3)", "(2, 4)"]),
    ("token count", dict(ids=[100, 101], vectors={"v": _vec(2), "t": _toks(1)}),
     E.InvalidVector, ["expected 2 token sets, got 1"]),
    ("duplicate ids in batch", dict(ids=[100, 100], vectors={"v": _vec(2), "t": _toks(2)}),
     E.DuplicateId, ["100"]),
    ("id exists", dict(ids=[100, 3], vectors={"v": _vec(2), "t": _toks(2)}),
     E.DuplicateId, ["3", "upsert"]),
    ("bool id", dict(ids=[True], vectors={"v": _vec(), "t": _toks()}), E.InvalidId, ["bool"]),
    ("float id", dict(ids=[1.5], vectors={"v": _vec(), "t": _toks()}), E.InvalidId, ["float"]),
    ("huge id", dict(ids=[2**70], vectors={"v": _vec(), "t": _toks()}), E.InvalidId, ["int64"]),
    ("lone surrogate id", dict(ids=["\ud800"], vectors={"v": _vec(), "t": _toks()}),
     E.InvalidId, ["Unicode", "surrogate"]),
    ("payload lone surrogate", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                                    payloads=[{"a": ["x\udfff"]}]), E.InvalidPayload,
     ["surrogate"]),
    ("payload key lone surrogate", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                                        payloads=[{"\ud800": 1}]), E.InvalidPayload,
     ["surrogate"]),
    ("unknown field", dict(ids=[100], vectors={"v": _vec(), "t": _toks(), "x": _vec()}),
     E.UnknownField, ["'x'"]),
    ("missing field", dict(ids=[100], vectors={"v": _vec()}), E.UnknownField, ["'t'"]),
    ("payload not dict", dict(ids=[100], vectors={"v": _vec(), "t": _toks()}, payloads=[[1]]),
     E.InvalidPayload, ["dict", "list"]),
    ("payload nan", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                         payloads=[{"a": float("nan")}]), E.InvalidPayload, ["finite"]),
    ("payload int key", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                             payloads=[{1: "a"}]), E.InvalidPayload, ["str keys"]),
    ("payload set", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                         payloads=[{"a": {1, 2}}]), E.InvalidPayload, ["set"]),
    ("payload NUL", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                         payloads=[{"a": "x\x00y"}]), E.InvalidPayload, ["NUL"]),
    ("payload huge int", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                              payloads=[{"a": [2**64]}]), E.InvalidPayload, ["int64"]),
    ("payload flat huge int", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                                   payloads=[{"a": 2**64}]), E.InvalidPayload, ["int64"]),
    ("payload NUL key", dict(ids=[100], vectors={"v": _vec(), "t": _toks()},
                             payloads=[{"a\x00": 1}]), E.InvalidPayload, ["NUL"]),
    ("payload count", dict(ids=[100], vectors={"v": _vec(), "t": _toks()}, payloads=[{}, {}]),
     E.InvalidPayload, ["expected 1", "got 2"]),
]


# upsert replaces existing ids by design, so "id exists" is an error of add only
CASES = [(m, *b) for m in ("add", "upsert") for b in BAD_WRITES
         if not (m == "upsert" and b[0] == "id exists")]


@pytest.mark.parametrize(("method", "what", "kwargs", "error", "words"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_write_is_rejected_and_changes_nothing(coll, method, what, kwargs, error, words):
    before = _state(coll)
    with pytest.raises(error) as info:
        getattr(coll, method)(**kwargs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert isinstance(info.value, E.PolyvecError)
    assert _state(coll) == before
    assert 100 not in coll


BAD_SEARCHES = [
    ("query dim", dict(query=np.ones(5)), E.DimensionMismatch, ["(4,)", "(5,)"]),
    ("query 3-d", dict(query=np.ones((1, 1, 4))), E.DimensionMismatch, ["(4,)"]),
    ("query nan", dict(query=np.array([np.nan, 1, 1, 1])), E.InvalidVector, ["finite"]),
    ("query ints", dict(query=np.ones(4, dtype=np.int32)), E.DTypeMismatch, ["int32"]),
    ("k zero", dict(query=np.ones(4), k=0), E.InvalidArgument, ["k", "0"]),
    ("k float", dict(query=np.ones(4), k=2.5), E.InvalidArgument, ["2.5"]),
    ("unknown field", dict(query=np.ones(4), field="nope"), E.UnknownField, ["'nope'"]),
    ("bad filter", dict(query=np.ones(4), filter={"n": {"$regex": "x"}}), E.FilterError,
     ["n.$regex"]),
    ("multi query dim", dict(query=np.ones((2, 4)), field="t"), E.DimensionMismatch,
     ["(tokens, 3)"]),
    ("multi empty", dict(query=np.zeros((0, 3)), field="t"), E.InvalidVector,
     ["at least one token"]),
]


@pytest.mark.parametrize(("what", "kwargs", "error", "words"), BAD_SEARCHES,
                         ids=[b[0] for b in BAD_SEARCHES])
def test_bad_search_is_rejected(coll, what, kwargs, error, words):
    before = _state(coll)
    kwargs = {"field": "v", **kwargs}
    with pytest.raises(error) as info:
        coll.search(**kwargs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert _state(coll) == before


def test_errors_subclass_builtins() -> None:
    assert issubclass(E.DimensionMismatch, ValueError)
    assert issubclass(E.DTypeMismatch, TypeError)
    assert issubclass(E.UnknownField, KeyError)
    assert issubclass(E.CorruptFile, OSError)
    assert issubclass(E.Locked, TimeoutError)
    assert issubclass(E.FilterError, ValueError)


def test_bad_schema_and_names(db) -> None:
    with pytest.raises(E.InvalidArgument, match="positive int"):
        pv.Dense(0)
    with pytest.raises(ValueError, match="metric"):
        pv.Dense(3, metric="hamming")
    with pytest.raises(ValueError, match="l2"):
        pv.Multi(3, metric="l2")
    with pytest.raises(E.InvalidArgument, match="collection name"):
        db.create_collection("../evil", {"v": pv.Dense(3)})
    db.create_collection("ok", {"v": pv.Dense(3)})
    with pytest.raises(E.CollectionExists):
        db.create_collection("ok", {"v": pv.Dense(3)})
    with pytest.raises(E.UnknownCollection):
        db.get_collection("missing")


def test_error_messages_keep_their_reason() -> None:
    e = E.CorruptFile("/x/seg.npy", "checksum mismatch")
    assert str(e) == "corrupt file /x/seg.npy: checksum mismatch"
    assert e.filename == "/x/seg.npy" and e.reason == "checksum mismatch"
    assert str(E.UnknownField("no field 'x'")) == "no field 'x'"


def test_query_knobs_are_checked_even_when_an_equal_value_was_used(coll) -> None:
    # knobs are cached per value and type: True must not pass for 1, nor 24.0 for 24
    q = np.ones(4, np.float32)
    coll.search(q, 3, field="v", ef=1)
    coll.search(q, 3, field="v", ef=24)
    for bad in (True, 24.0, [24]):
        with pytest.raises(E.InvalidArgument, match="ef"):
            coll.search(q, 3, field="v", ef=bad)


def test_batch_payload_texts_equal_item_by_item_dumps() -> None:
    """A batch of flat payloads is dumped in one call and split; the texts must be exactly
    the per-item canonical texts, whatever the strings hold (braces, control characters,
    the separator characters the split uses, escapes)."""
    from polyvec._validate import check_payloads, dumps

    rng = np.random.default_rng(0)
    pieces = ["}", "{", "\x1e", "\x1f", "}\x1e{", ",", '"', "\\", "\\u0000", "é", "\n", ""]
    values = [1, -7, 2**62, 1.5, -0.0, 1e300, True, False, None]
    for _ in range(200):
        batch: list[dict | None] = []
        for _ in range(int(rng.integers(1, 12))):
            if rng.random() < 0.1:
                batch.append(None)
                continue
            p = {}
            for _ in range(int(rng.integers(0, 4))):
                key = "".join(rng.choice(pieces, 2))
                p[key] = ("".join(rng.choice(pieces, 3)) if rng.random() < 0.5
                          else values[int(rng.integers(len(values)))])
            batch.append(p)
        texts, objs = check_payloads(batch, len(batch))
        assert texts == [dumps(p or {}) for p in batch]
        assert objs == [p or {} for p in batch]
