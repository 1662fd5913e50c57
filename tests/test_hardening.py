"""Hardening (issue 12): stale handles, resource limits, hostile input, OS errors, honesty.

Each test here failed on the code before its fix; every rejection is a typed polyvec error
that subclasses a builtin, and leaves what is stored unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import unit

import polyvec as pv
from polyvec import errors as E


@pytest.fixture
def coll(db, rng):
    c = db.create_collection("re", {"v": pv.Dense(16)}, indexed=["n"])
    c.add([f"i{j}" for j in range(20)], unit(rng, 20, 16), [{"n": j} for j in range(20)])
    return c


# -- 1 and 3: handle lifetime ------------------------------------------------------------------

def test_stale_handle_cannot_acknowledge_a_write_to_a_replaced_collection(db, coll, rng):
    other = pv.connect(db.path)
    other.drop_collection("re")
    other.create_collection("re", {"v": pv.Dense(16)})
    with pytest.raises(E.CollectionDropped, match="created anew"):
        coll.add(["x"], unit(rng, 1, 16))
    for call in (lambda: coll.search(unit(rng, 1, 16)[0]), lambda: len(coll),
                 lambda: coll.get(["i1"]), lambda: coll.delete(["i1"]), coll.flush,
                 lambda: coll.search(unit(rng, 1, 16)[0], filter={"n": 1}), coll.info):
        with pytest.raises(E.CollectionDropped):
            call()
    fresh = db.get_collection("re")  # not the cached stale handle
    assert fresh is not coll and len(fresh) == 0
    fresh.add(["x"], unit(rng, 1, 16))
    assert len(pv.connect(db.path).get_collection("re")) == 1
    other.close()


def test_dropped_collection_raises_typed_error_on_every_handle(db, coll, rng):
    other = pv.connect(db.path).get_collection("re")
    db.drop_collection("re")
    q = unit(rng, 1, 16)[0]
    with pytest.raises(E.CollectionDropped):  # the handle that dropped it
        coll.search(q)
    with pytest.raises(E.CollectionDropped):  # a handle of another database object
        other.search(q)
    with pytest.raises(E.CollectionDropped):
        other.add(["x"], unit(rng, 1, 16))
    assert isinstance(E.CollectionDropped("x"), KeyError)
    with pytest.raises(E.UnknownCollection):
        db.get_collection("re")


def test_closed_handle_raises_typed_error(db, coll, rng):
    coll.close()
    with pytest.raises(E.CollectionClosed):
        coll.search(unit(rng, 1, 16)[0])
    with pytest.raises(E.CollectionClosed):
        coll.add(["x"], unit(rng, 1, 16))
    assert db.get_collection("re") is not coll


# -- 2: resource limits ------------------------------------------------------------------------

def test_huge_k_is_capped_before_anything_is_allocated(coll, rng):
    import tracemalloc

    q = unit(rng, 1, 16)[0]
    coll.search(q, k=5)  # warm up
    tracemalloc.start()
    try:
        res = coll.search(q, k=10**7)  # old code: 200 MB of padding
        batch = coll.search(unit(rng, 4, 16), k=10**12, filter={"n": {"$lt": 5}})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.ids.shape == (20,) and None not in res.ids.tolist()
    assert batch.ids.shape == (4, 20) and batch.ids[:, 5:].tolist() == [[None] * 15] * 4
    assert peak < 10 << 20


def test_result_memory_beyond_the_bound_is_refused(coll, rng, monkeypatch):
    from polyvec import limits

    monkeypatch.setattr(limits, "MAX_RESULT_SLOTS", 50)
    with pytest.raises(E.InvalidArgument, match="MAX_RESULT_SLOTS = 50") as info:
        coll.search(unit(rng, 3, 16), k=20)
    assert "3 × 20 = 60" in str(info.value)
    assert coll.search(unit(rng, 2, 16), k=20).ids.shape == (2, 20)


# -- 4: huge finite vectors --------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1e30, 3e38, 1e-30, 1e-36])
def test_huge_or_tiny_vectors_are_normalized_without_overflow(coll, rng, scale):
    v = unit(rng, 1, 16)
    coll.add(["big"], (v.astype(np.float64) * scale).astype(np.float32))
    stored = coll.get(["big"])[0].vectors["v"]
    np.testing.assert_allclose(stored, v[0], atol=1e-5)
    res = coll.search((v[0].astype(np.float64) * scale).astype(np.float32), k=1)
    assert res.ids.tolist() == ["big"] and res.scores[0] == pytest.approx(1.0, abs=1e-5)


def test_vector_whose_norm_overflows_is_rejected_under_dot(db, rng):
    c = db.create_collection("d", {"v": pv.Dense(4, metric="dot")})
    with pytest.raises(E.InvalidVector, match="squared norm fits float32"):
        c.add(["x"], np.full((1, 4), 1e30, np.float32))
    assert len(c) == 0
    with pytest.raises(E.InvalidVector, match="non-zero"):
        db.create_collection("e", {"v": pv.Dense(4)}).add(["x"], np.zeros((1, 4), np.float32))


# -- 5: deep nesting ---------------------------------------------------------------------------

def _nested(depth: int) -> dict:
    p: dict = {"leaf": 1}
    for _ in range(depth):
        p = {"a": p}
    return p


def test_deeply_nested_payload_is_a_typed_error(coll, rng):
    with pytest.raises(E.InvalidPayload, match="MAX_PAYLOAD_DEPTH"):
        coll.add(["deep"], unit(rng, 1, 16), [_nested(1000)])
    with pytest.raises(E.InvalidPayload, match="MAX_PAYLOAD_DEPTH"):
        coll.upsert(["deep"], unit(rng, 1, 16), [{"l": [[[[]]]] * 2, "x": _nested(70)}])
    assert "deep" not in coll and len(coll) == 20
    coll.add(["ok"], unit(rng, 1, 16), [_nested(50)])
    assert coll.get(["ok"])[0].payload == _nested(50)


def test_deeply_nested_or_huge_filter_is_a_typed_error(coll, rng):
    f: dict = {"n": 1}
    for _ in range(2000):
        f = {"$not": f}
    q = unit(rng, 1, 16)[0]
    with pytest.raises(E.FilterError, match="MAX_FILTER_DEPTH"):
        coll.search(q, filter=f)
    with pytest.raises(E.FilterError, match="MAX_FILTER_NODES"):
        coll.search(q, filter={"n": {"$in": list(range(200_000))}})


def test_payload_size_limit(coll, rng, monkeypatch):
    from polyvec import limits

    monkeypatch.setattr(limits, "MAX_PAYLOAD_BYTES", 1000)
    with pytest.raises(E.InvalidPayload, match="MAX_PAYLOAD_BYTES = 1,000 bytes of JSON, got"):
        coll.add(["big"], unit(rng, 1, 16), [{"t": "é" * 600}])
    assert "big" not in coll


# -- 6: a large filter on a non-indexed path ---------------------------------------------------

@pytest.mark.parametrize("shape", ["or", "in", "not-and"])
def test_large_filter_on_a_non_indexed_path_works(db, rng, shape):
    c = db.create_collection("big", {"v": pv.Dense(8)})
    c.add(list(range(50)), unit(rng, 50, 8), [{"t": str(i), "u": i} for i in range(50)])
    wanted = {str(i) for i in range(0, 18_000, 3)}  # 6,000 operands
    if shape == "or":
        f = {"$or": [{"t": t} for t in sorted(wanted)] + [{"u": {"$gte": 49}}]}
    elif shape == "in":
        f = {"t": {"$in": sorted(wanted)}}
    else:
        f = {"$not": {"$and": [{"t": {"$ne": t}} for t in sorted(wanted)]}}
    expect = {i for i in range(50) if str(i) in wanted or (shape == "or" and i >= 49)}
    assert set(c.select(f).tolist()) == expect  # seqs are 0..49 in insertion order
    res = c.search(unit(rng, 1, 8)[0], k=50, filter=f)
    assert {i for i in res.ids.tolist() if i is not None} == expect


# -- 7: lone surrogates ------------------------------------------------------------------------

def test_lone_surrogate_id_is_an_invalid_id_everywhere(coll):
    for call in (lambda: coll.get(["\ud800"]), lambda: coll.delete(["a", "\udc00"])):
        with pytest.raises(E.InvalidId, match="surrogate"):
            call()
    assert "\ud800" not in coll and len(coll) == 20
