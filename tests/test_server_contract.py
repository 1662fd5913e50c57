"""One contract, two ways in: every test runs against an embedded database and against
``pv.Client`` of a real ``polyvec serve`` subprocess, and must pass unchanged on both (same
ids, scores to 1e-6, payloads, errors by type). The last test runs one script through both and
compares every answer."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import Server, token_sets, unit

import polyvec as pv
from polyvec.client import Client
from polyvec.errors import (
    CollectionExists,
    DimensionMismatch,
    DTypeMismatch,
    DuplicateId,
    FilterError,
    InvalidArgument,
    InvalidId,
    InvalidPayload,
    InvalidVector,
    UnknownCollection,
    UnknownField,
)

_names = itertools.count()


@pytest.fixture(scope="module", params=["embedded", "client"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp(request.param) / "db"
    database = pv.connect(folder)
    if request.param == "embedded":
        yield database
        database.close()
        return
    database.close()
    server = Server(folder)
    client = Client(server.url)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def _new(db: Any, vectors: dict[str, Any] | None = None, **kw: Any) -> Any:
    name = f"c{next(_names)}"
    return db.create_collection(name, vectors or {"v": pv.Dense(8)}, **kw)


def _exact(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q)
    return np.argsort(-(xn @ qn), kind="stable")[:k]


def test_collections_are_created_listed_opened_and_dropped(db: Any) -> None:
    c = _new(db)
    assert c.name in db.list_collections()
    assert db.get_collection(c.name).name == c.name
    assert c.schema.fields == {"v": pv.Dense(8)}
    with pytest.raises(CollectionExists):
        db.create_collection(c.name, {"v": pv.Dense(8)})
    assert db.create_collection(c.name, {"v": pv.Dense(8)}, exist_ok=True).name == c.name
    with pytest.raises(CollectionExists, match="another schema"):
        db.create_collection(c.name, {"v": pv.Dense(4)}, exist_ok=True)
    db.drop_collection(c.name)
    assert c.name not in db.list_collections()
    with pytest.raises(UnknownCollection):
        db.get_collection(c.name)
    with pytest.raises(UnknownCollection):
        db.drop_collection(c.name)
    with pytest.raises(InvalidArgument):
        db.create_collection("bad name!", {"v": pv.Dense(8)})


def test_items_round_trip_with_payloads_and_vectors(db: Any) -> None:
    rng = np.random.default_rng(1)
    c = _new(db, {"v": pv.Dense(8), "h": pv.Dense(4, metric="l2", dtype="f16")})
    v, h = unit(rng, 5, 8), rng.standard_normal((5, 4)).astype(np.float32)
    payloads = [{"n": i, "tag": "é" * i, "nested": {"a": [1, 2.5, None]}} for i in range(4)]
    c.add([1, 2, "x", "ü🙂", -(2**63)], {"v": v, "h": h}, payloads + [None])
    assert len(c) == 5
    assert 1 in c and "ü🙂" in c and 3 not in c and 1.5 not in c and object() not in c
    for call in (c.get, c.delete):  # values JSON cannot carry: typed as embedded
        with pytest.raises(InvalidId):
            call([2, object()])
    assert sorted(map(str, c)) == sorted(map(str, [1, 2, "x", "ü🙂", -(2**63)]))
    got = c.get([2, "missing", "ü🙂", -(2**63)])
    assert got[1] is None
    assert got[0].id == 2 and got[0].payload == payloads[1]
    np.testing.assert_array_equal(got[0].vectors["v"], v[1] / np.linalg.norm(v[1]))
    assert got[0].vectors["h"].dtype == np.float16
    np.testing.assert_array_equal(got[0].vectors["h"], h[1].astype(np.float16))
    assert got[2].payload == payloads[3] and got[3].payload == {}
    c.upsert([2], {"v": v[:1], "h": h[:1]}, [{"n": 99}])
    assert c.get([2])[0].payload == {"n": 99}
    assert c.delete([2, "x", "never"]) == 2
    assert len(c) == 3 and 2 not in c


@pytest.mark.parametrize(("ids", "vectors", "payloads", "error"), [
    ([1], None, None, DuplicateId),  # 1 exists
    ([7, 7], "two", None, DuplicateId),
    ([1.5], "one", None, InvalidId),
    ([True], "one", None, InvalidId),
    ([2**63], "one", None, InvalidId),
    ([7], "nan", None, InvalidVector),
    ([7], "zero", None, InvalidVector),
    ([7], "short", None, DimensionMismatch),
    ([7], "ints", None, DTypeMismatch),
    ([7], "one", [{"x": float("nan")}], InvalidPayload),
    ([7], "one", ["not an object"], InvalidPayload),
    ([7], "one", [{}, {}], InvalidPayload),
    ([7], {"nope": "one"}, None, UnknownField),
    # values JSON cannot carry: the client raises what the embedded call does
    ([object()], "one", None, InvalidId),
    ([7], "one", [{"tags": {"a", "b"}}], InvalidPayload),
    ([7], "one", [{"raw": b"x"}], InvalidPayload),
    ([7], "one", [object()], InvalidPayload),
])
def test_bad_writes_raise_the_same_typed_error_and_change_nothing(
        db: Any, ids: list[Any], vectors: Any, payloads: Any, error: type) -> None:
    c = _new(db)
    c.add([1], {"v": np.ones((1, 8), np.float32)})
    one = np.ones((1, 8), np.float32)
    made = {"one": one, "two": np.ones((2, 8), np.float32), "nan": one * np.nan,
            "zero": one * 0, "short": np.ones((1, 7), np.float32),
            "ints": np.ones((1, 8), np.int64), None: None}
    if isinstance(vectors, dict):
        data = {f: made[v] for f, v in vectors.items()}
    else:
        data = {"v": made[vectors]} if vectors is not None else {"v": one}
    with pytest.raises(error):
        c.add(ids, data, payloads)
    assert len(c) == 1 and list(c) == [1]


def test_search_matches_exact_and_keeps_the_query_shape(db: Any) -> None:
    rng = np.random.default_rng(2)
    x = unit(rng, 300, 8)
    c = _new(db, indexed=["g"])
    c.add(list(range(300)), {"v": x}, [{"g": i % 3, "s": f"t{i % 5}"} for i in range(300)])
    q = rng.standard_normal(8).astype(np.float32)
    res = c.search(q, k=7)
    assert res.ids.shape == (7,) and res.scores.dtype == np.float32
    assert res.ids.tolist() == _exact(x, q, 7).tolist()
    np.testing.assert_allclose(res.scores, (x @ (q / np.linalg.norm(q)))[_exact(x, q, 7)],
                               atol=1e-6)
    batch = c.search(np.stack([q, -q]), k=4)
    assert batch.ids.shape == (2, 4) and batch.ids[0].tolist() == res.ids[:4].tolist()
    flt = c.search(q, k=5, filter={"g": 1, "s": {"$in": ["t1", "t2"]}})
    keep = [i for i in _exact(x, q, 300) if i % 3 == 1 and i % 5 in (1, 2)][:5]
    assert flt.ids.tolist() == keep and flt.info["selected"] == 40
    few = c.search(q, k=5, filter={"s": "t1", "g": 0, "$not": {"g": 0}})
    assert few.ids.tolist() == [None] * 5 or len(few.ids) == 0 or \
        all(i is None for i in few.ids)
    assert np.isneginf(few.scores).all()
    big = c.search(q, k=10**6)  # capped at the live count
    assert len(big.ids) == 300


def test_find_gives_the_ids_a_filter_selects_in_order(db: Any) -> None:
    rng = np.random.default_rng(4)
    c = _new(db, indexed=["g"])
    c.add([5, "b", 3, "a"], {"v": unit(rng, 4, 8)},
          [{"g": 1, "t": "x"}, {"g": 2}, {"g": 1}, {"g": 1, "t": "y"}])
    c.upsert([5], {"v": unit(rng, 1, 8)}, [{"g": 1}])  # an update: 5 moves last
    c.delete([3])
    assert c.find({"g": 1}) == ["a", 5]
    assert c.find() == c.find(None) == ["b", "a", 5] == list(c)
    assert c.find({"t": {"$exists": True}}) == ["a"]  # a path without a column
    assert c.find({"g": 9}) == []
    with pytest.raises(FilterError):
        c.find({"g": {"$bogus": 1}})


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"query": np.ones(7, np.float32)}, DimensionMismatch),
    ({"query": np.full(8, np.nan, np.float32)}, InvalidVector),
    ({"k": 0}, InvalidArgument),
    ({"k": "3"}, InvalidArgument),
    ({"filter": {"g": {"$bogus": 1}}}, FilterError),
    ({"filter": {"$and": "x"}}, FilterError),
    ({"field": "nope"}, UnknownField),
    ({"field": {}}, UnknownField),  # found by the fuzzer: was a TypeError (a 500)
    ({"target_recall": 1.5}, InvalidArgument),
    ({"k": object()}, InvalidArgument),  # values JSON cannot carry (a client must not send)
    ({"filter": {"g": {"$in": {1, 2}}}}, FilterError),
    ({"filter": {"g": b"1"}}, FilterError),
])
def test_bad_searches_raise_the_same_typed_error(db: Any, kwargs: dict[str, Any],
                                                error: type) -> None:
    c = _new(db, indexed=["g"])
    c.add([1, 2], {"v": np.eye(8, dtype=np.float32)[:2]}, [{"g": 1}, {"g": 2}])
    args = {"query": np.ones(8, np.float32), "k": 2, **kwargs}
    with pytest.raises(error) as info:
        c.search(args.pop("query"), **args)
    if error is FilterError:
        assert info.value.path


def test_bad_text_calls_are_typed_before_any_embedder(db: Any) -> None:
    c = _new(db)
    with pytest.raises(InvalidArgument):  # found by the fuzzer: was a ValueError (a 500)
        c.add_texts(["a"], [1], vectors=[1.0, 2.0])
    with pytest.raises(InvalidArgument):
        c.add_texts("not a list", [1])
    with pytest.raises(InvalidArgument):
        c.search_text("q", model={})
    assert len(c) == 0


def test_model_versions_register_and_their_errors(db: Any) -> None:
    c = _new(db, {"v": pv.Dense(8)})
    spec = pv.spec.ModelSpec("tiny-test-model", revision="r1", dim=8)
    assert c.model_versions("v")["versions"] == {}
    got = c.register_model("v", spec, "v2")
    assert got == spec
    versions = c.model_versions("v")["versions"]
    assert set(versions) == {"v2"}
    assert (versions["v2"] if isinstance(versions["v2"], dict) else versions["v2"].to_dict()) \
        == spec.to_dict()
    with pytest.raises(pv.errors.ModelMismatch):  # no such version
        c.fit_mapping("v", "v9", "v2")
    with pytest.raises(InvalidArgument):
        c.register_model("v", "not a spec")
    with pytest.raises(UnknownField):
        c.register_model("nope", spec, "v3")
    assert c.backfill_status("v") is None


def test_indexed_search_with_knobs_and_target_recall(db: Any) -> None:
    rng = np.random.default_rng(3)
    x = unit(rng, 3000, 16)
    c = _new(db, {"v": pv.Dense(16)})
    c.add(list(range(3000)), {"v": x})
    c.create_index("v", "HNSW16,SQ8,Refine", sample_queries=unit(rng, 50, 16))
    info = c.index_info()
    assert info["v"]["spec"] == "HNSW16,SQ8,Refine"
    q = unit(rng, 20, 16)
    hits = 0
    for qi in q:
        res = c.search(qi, k=10, ef=64, oversample=2.0)
        assert res.info["strategy"] == "index"
        hits += len(set(res.ids.tolist()) & set(_exact(x, qi, 10).tolist()))
    assert hits / 200 >= 0.9
    res = c.search(q, k=10, target_recall=0.9)
    assert res.ids.shape == (20, 10) and res.info["recall_estimate"] is not None
    c.flush()
    c.compact()
    c.verify()
    assert c.wait_for_maintenance(30)
    assert c.info()["count"] == 3000


def test_multi_vector_fields(db: Any) -> None:
    rng = np.random.default_rng(4)
    sets = token_sets(rng, 30, 8)
    c = _new(db, {"t": pv.Multi(8)})
    c.add(list(range(30)), {"t": sets})
    res = c.search(sets[3], k=3)
    assert res.ids[0] == 3
    batch = c.search(sets[:2], k=2)
    assert batch.ids.shape == (2, 2) and batch.ids[:, 0].tolist() == [0, 1]
    got = c.get([5])[0]
    assert got.vectors["t"].shape == sets[5].shape
    with pytest.raises(DimensionMismatch):
        c.search(np.ones((2, 7), np.float32), k=1)


def test_sparse_fields(db: Any) -> None:
    import scipy.sparse as sp

    c = _new(db, {"w": pv.Sparse(100), "d": pv.Dense(4)})
    rows = [{1: 1.0, 5: 2.0}, ([5, 9], [1.0, 3.0]),
            pv.SparseVector(np.array([9, 2], np.int64), np.array([0.5, 0.5], np.float32)),
            (np.array([7]), np.array([4.0]))]
    c.add(["a", "b", "c", "d"], {"w": rows, "d": np.eye(4, dtype=np.float32)},
          [{"n": i} for i in range(4)])
    c.upsert(["e"], {"w": sp.csr_matrix(([2.5], ([0], [5])), shape=(1, 100)),
                     "d": np.ones((1, 4), np.float32)}, [{"n": 4}])
    res = c.search({5: 1.0, 9: 1.0}, k=4, field="w")
    assert res.ids.tolist() == ["b", "e", "a", "c"]
    np.testing.assert_allclose(res.scores, [4.0, 2.5, 2.0, 0.5])
    assert c.search(([5], [1.0]), k=5, field="w", filter={"n": {"$lt": 2}}).ids.tolist() == \
        ["a", "b", None, None, None]
    batch = c.search([{7: 1.0}, pv.SparseVector(np.array([2]), np.array([1.0]))], k=1,
                     field="w")
    assert batch.ids.tolist() == [["d"], ["c"]]
    got = c.get(["c"])[0].vectors["w"]
    assert isinstance(got, pv.SparseVector)
    assert (got.indices.tolist(), got.values.tolist()) == ([2, 9], [0.5, 0.5])
    assert (got.indices.dtype, got.values.dtype) == (np.uint32, np.float32)
    for bad, error in (({1: float("inf")}, InvalidVector), (([3, 3], [1.0, 1.0]), InvalidVector),
                       (([100], [1.0]), InvalidVector)):
        with pytest.raises(error):
            c.add(["z"], {"w": [bad], "d": np.ones((1, 4), np.float32)})
        with pytest.raises(error):
            c.search(bad, k=1, field="w")
    with pytest.raises(InvalidArgument, match="searched exactly"):
        c.create_index("w", "HNSW32")
    assert len(c) == 5


def test_bm25_fields(db: Any) -> None:
    spec = pv.BM25(pv.lexical.Analyzer(split_identifiers=True), k1=1.2)
    c = _new(db, {"text": spec})
    assert c.schema.fields == {"text": spec}
    c.add([1, 2, 3], {"text": ["read a CSV with pandas.read_csv", "plot a chart",
                               "the csv module reads CSV files"]}, [{"n": i} for i in range(3)])
    res = c.search("read_csv", k=3)
    assert res.ids.tolist() == [1, 3, None]
    assert c.search(["chart", "csv"], k=1).ids.tolist() == [[2], [3]]
    assert c.search("csv", k=3, filter={"n": 0}).ids.tolist() == [1, None, None]
    with pytest.raises(InvalidVector, match="non-empty text"):
        c.add([4], {"text": [" "]})
    h = _new(db, {"text": pv.BM25(), "v": pv.Dense(2), "w": pv.Sparse(10)})
    h.add(["a", "b", "c"], {"text": ["red apple", "green apple", "red car"],
                            "v": np.array([[1, 0], [0, 1], [1, 1]], np.float32),
                            "w": [{1: 1.0}, {2: 1.0}, {1: 0.5, 2: 0.5}]})
    got = h.search({"text": "red", "v": np.array([0, 1], np.float32), "w": {2: 1.0}}, k=3,
                   fusion="rrf", weights={"text": 2.0})
    # text: a, c (a tie, in write order); v: b, c, a; w: b, c
    assert got.ids.tolist() == ["c", "a", "b"]
    np.testing.assert_allclose(got.scores, [4 / 62, 2 / 61 + 1 / 63, 2 / 61], rtol=1e-6)
    hit = got.info["hits"][0]
    assert {f: h["rank"] for f, h in hit.items()} == {"text": 2, "v": 2, "w": 2}
    assert hit["v"]["score"] == pytest.approx(2 ** -0.5, rel=1e-5) and hit["w"]["score"] == 0.5
    with pytest.raises(InvalidArgument, match="fusion: expected one of"):
        h.search({"text": "red"}, k=1, fusion="max")
    # the hybrid operations: labelled queries in, weights and a calibration out
    queries = [{"text": "red", "v": np.array([0, 1], np.float32)},
               {"text": "apple", "v": np.array([1, 0], np.float32)},
               {"text": "car", "v": np.array([1, 1], np.float32)}]
    fit = h.fit_fusion(queries, ["c", ["a", "b"], {"c": 2}], step=0.5, k=2)
    assert fit["fusion"] == "weighted" and set(fit["weights"]) == {"text", "v"}
    assert fit["queries"] == 3 and 0 < fit["ndcg@2"] <= 1
    cal = h.calibrate_relevance(["red", "apple", "car"], [["a", "c"], "b", {"c": 1}],
                                field="text", k=3)
    assert cal["field"] == "text" and cal["pairs"] == 5 and cal["relevant"] == 4
    kept = h.search("red", k=3, field="text", min_relevance=0.5)
    assert kept.info["relevance"] is not None
    with pytest.raises(InvalidArgument, match="expected lists of queries"):
        h.fit_fusion(queries, ["c"])
    by_text = h.search_text("red apple", k=3, fields=["text"], fusion="rrf")
    assert by_text.ids.tolist() == h.search({"text": "red apple"}, k=3, fusion="rrf"
                                            ).ids.tolist()
    with pytest.raises(InvalidVector, match="expected a text or a list of texts, got int"):
        c.search(7, k=1)
    assert len(c) == 3


def test_one_script_gives_the_same_answers_both_ways(tmp_path: Any) -> None:
    rng = np.random.default_rng(5)
    x, q = unit(rng, 2000, 12), unit(rng, 30, 12)
    payloads = [{"g": int(i % 7), "w": float(i) / 3} for i in range(2000)]
    answers: dict[str, list[Any]] = {}
    folder = tmp_path / "db"
    pv.connect(folder).close()
    server = Server(folder)
    client = Client(server.url)
    embedded = pv.connect(tmp_path / "db2")
    try:
        for name, database in (("embedded", embedded), ("client", client)):
            out: list[Any] = []
            c = database.create_collection("s", {"v": pv.Dense(12)}, indexed=["g"])
            c.add(list(range(2000)), {"v": x}, payloads)
            c.delete(list(range(0, 2000, 11)))
            c.create_index("v", "HNSW16,Refine")
            for kw in ({}, {"ef": 40}, {"filter": {"g": {"$gte": 5}}},
                       {"filter": {"w": {"$lt": 100}}}):
                r = c.search(q, k=10, **kw)
                out.append((r.ids.tolist(), r.scores, {k: v for k, v in r.info.items()
                                                       if k != "timings"}))
            out.append(([None if it is None else it.payload for it in c.get([3, 11, 12])],
                        None, None))
            out.append((sorted(c.select({"g": 2}).tolist()), None, None))
            answers[name] = out
    finally:
        client.close()
        server.stop()
        embedded.close()
    for (ids_e, s_e, info_e), (ids_c, s_c, info_c) in zip(answers["embedded"],
                                                            answers["client"], strict=True):
        assert ids_e == ids_c
        if s_e is not None:
            np.testing.assert_allclose(s_c, s_e, atol=1e-6)
            assert info_c == info_e
