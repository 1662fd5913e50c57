"""Exact search is the oracle: it must equal brute force, for every metric, dtype and layout."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import token_sets, unit
from oracle import assert_topk_matches, dense_scores, maxsim

import polyvec as pv
from polyvec.filters import matches, parse_filter


def _payload(rng: np.random.Generator, i: int) -> dict:
    return {"group": int(rng.integers(0, 4)), "lang": ["en", "fr", "de"][i % 3],
            "meta": {"year": int(2000 + rng.integers(0, 25))},
            **({"tags": ["a", "b"][: int(rng.integers(0, 3))]} if i % 2 else {})}


def _fill(coll: pv.Database, rng: np.random.Generator, n: int, dim: int, multi: bool = False):
    """Add n items in batches with flushes, then upsert and delete some; return the model."""
    model: dict = {}
    for lo in range(0, n, 37):
        ids = list(range(lo, min(n, lo + 37)))
        vec = unit(rng, len(ids), dim) * rng.uniform(0.5, 2.0, (len(ids), 1)).astype(np.float32)
        payloads = [_payload(rng, i) for i in ids]
        vectors = {"t": token_sets(rng, len(ids), dim)} if multi else {"v": vec}
        coll.add(ids, vectors, payloads)
        if lo % 111 == 0:
            coll.flush()
    up = list(range(0, n, 9))
    vectors = ({"t": token_sets(rng, len(up), dim)} if multi
               else {"v": unit(rng, len(up), dim)})
    coll.upsert(up, vectors, [_payload(rng, i) for i in up])
    coll.delete(list(range(3, n, 11)))
    for item in coll.get(list(coll)):
        model[item.id] = item
    return model


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_dense_exact_equals_brute_force(db, rng, metric: str, dtype: str) -> None:
    coll = db.create_collection("c", {"v": pv.Dense(16, metric=metric, dtype=dtype)},
                                segment_rows=100)
    model = _fill(coll, rng, 400, 16)
    assert len(coll.info()["segments"]) >= 2 and coll.info()["growing_rows"] > 0
    ids = list(model)
    x = np.stack([model[i].vectors["v"] for i in ids]).astype(np.float32)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    res = coll.search(q, k=10)
    assert res.ids.shape == (5, 10)
    ref = dense_scores(q, x, metric)
    for r in range(5):
        assert_topk_matches(res.ids[r], res.scores[r], dict(zip(ids, ref[r], strict=True)), 10)
    one = coll.search(q[0], k=10)  # 1-D in, 1-D out
    assert one.ids.shape == (10,)
    assert one.ids.tolist() == res.ids[0].tolist()


def test_stored_vectors_round_trip_in_their_dtype(db, rng) -> None:
    coll = db.create_collection("c", {"v": pv.Dense(8, metric="dot", dtype="f16")})
    x = rng.standard_normal((3, 8)).astype(np.float32)
    coll.add([1, 2, 3], {"v": x})
    got = np.stack([it.vectors["v"] for it in coll.get([1, 2, 3])])
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, x.astype(np.float16))


@pytest.mark.parametrize("flt", [
    {"lang": "fr"},
    {"group": {"$in": [1, 3]}, "meta.year": {"$gte": 2010}},
    {"$or": [{"tags": "a"}, {"meta.year": {"$lt": 2005}}]},
    {"$not": {"lang": {"$ne": "de"}}},
    {"tags": {"$exists": False}},
    {"lang": "none-such"},
])
@pytest.mark.parametrize("indexed", [(), ("lang", "group", "meta.year")])
def test_filtered_search_equals_search_over_subset(tmp_path, rng, flt, indexed) -> None:
    db = pv.connect(tmp_path)
    full = db.create_collection("full", {"v": pv.Dense(12)}, indexed=list(indexed),
                                segment_rows=90)
    model = _fill(full, rng, 300, 12)
    node = parse_filter(flt)
    keep = [i for i, it in model.items() if matches(node, it.payload)]
    sub = db.create_collection("sub", {"v": pv.Dense(12)}, segment_rows=90)
    if keep:
        sub.add(keep, {"v": np.stack([model[i].vectors["v"] for i in keep])},
                [model[i].payload for i in keep])
    q = rng.standard_normal((4, 12)).astype(np.float32)
    got, want = full.search(q, k=15, filter=flt), sub.search(q, k=15)
    assert got.info["selected"] == len(keep)
    for r in range(4):
        assert_topk_matches(got.ids[r], got.scores[r],
                            {i: s for i, s in zip(want.ids[r], want.scores[r], strict=True)
                             if i is not None}, 15, atol=1e-5)


def test_multi_vector_maxsim_equals_brute_force(db, rng) -> None:
    coll = db.create_collection("m", {"t": pv.Multi(8)}, indexed=["group"], segment_rows=60)
    model = _fill(coll, rng, 200, 8, multi=True)
    queries = token_sets(rng, 3, 8, lo=2, hi=5)
    res = coll.search(queries, k=7)
    for r, q in enumerate(queries):
        ref = {i: maxsim(q, it.vectors["t"]) for i, it in model.items()}
        assert_topk_matches(res.ids[r], res.scores[r], ref, 7)
    single = coll.search(queries[0], k=7, filter={"group": 2})
    ref = {i: maxsim(queries[0], it.vectors["t"]) for i, it in model.items()
           if it.payload["group"] == 2}
    assert_topk_matches(single.ids, single.scores, ref, 7)


def test_k_larger_than_the_matches_pads(db, rng) -> None:
    coll = db.create_collection("c", {"v": pv.Dense(4)})
    coll.add(["x", "y", "z", "w", "u"], {"v": unit(rng, 5, 4)},
             [{"g": 1}, {"g": 1}, {}, {}, {}])
    res = coll.search(unit(rng, 1, 4)[0], k=5, filter={"g": 1})
    assert res.ids[:2].tolist() != [None, None] and res.ids[2:].tolist() == [None] * 3
    assert np.isneginf(res.scores[2:]).all()
    assert len(list(res)) == 2


def test_k_is_capped_at_the_live_items(db, rng) -> None:
    coll = db.create_collection("c", {"v": pv.Dense(4)})
    coll.add(["x", "y"], {"v": unit(rng, 2, 4)})
    assert coll.search(unit(rng, 1, 4)[0], k=5).ids.shape == (2,)
    assert coll.search(unit(rng, 3, 4), k=5).ids.shape == (3, 2)


def test_search_sees_growing_and_sealed_and_survives_reopen(tmp_path, rng) -> None:
    db = pv.connect(tmp_path)
    coll = db.create_collection("c", {"v": pv.Dense(6)}, segment_rows=10)
    x = unit(rng, 25, 6)
    for lo in (0, 10, 20):
        coll.add(list(range(lo, min(25, lo + 10))), {"v": x[lo:lo + 10]})
        coll.wait_for_maintenance()  # each full growing segment sealed on its own
    assert len(coll.info()["segments"]) == 2 and coll.info()["growing_rows"] == 5
    before = coll.search(x[:3], k=4)
    assert [row[0] for row in before.ids.tolist()] == [0, 1, 2]
    db.close()
    again = pv.connect(tmp_path).get_collection("c")
    after = again.search(x[:3], k=4)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_allclose(before.scores, after.scores)
