"""The one-query fast path of a built collection (``SearchExecutor.quick``) against the
general path: same ids, scores and info, the same typed errors, deletes and growing rows and
other handles' commits seen, and the index layer's bound call equal to its ``search``."""

from __future__ import annotations

import numpy as np
import pytest

import polyvec as pv
from polyvec import _validate as v
from polyvec.errors import (
    CollectionClosed,
    DimensionMismatch,
    DTypeMismatch,
    InvalidArgument,
    InvalidVector,
)
from polyvec.factory import parse_index
from polyvec.index import QueryParams, build_index

N, DIM = 3_000, 32


def _data(n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def built(tmp_path):
    x = _data()
    db = pv.connect(tmp_path)
    coll = db.create_collection("c", {"v": pv.Dense(DIM)}, segment_rows=N + 1)
    coll.add(list(range(N)), {"v": x})
    coll.flush()
    coll.create_index("v", "HNSW32,SQ8,Refine")
    yield db, coll, x
    db.close()


def _general(coll, q, k=10, target_recall=None, **knobs):
    """What the general path answers (the executor's search on the published snapshot)."""
    st = coll._store
    name, spec = st.field(None)
    queries, single = v.check_dense_query(spec, q)
    params = None if not knobs else QueryParams(**knobs)
    snap = st.current()
    k = v.cap_k(k, len(snap.live_seqs), len(queries))
    ids, scores, info = coll._executor.search(snap, queries, k, name, spec, None, target_recall,
                                              params)
    return (ids[0], scores[0], info) if single else (ids, scores, info)


def _quick(coll, q, k=10, target_recall=None, ef=None, oversample=None):
    got = coll._executor.quick(q, k, None, target_recall, ef, None, oversample)
    assert got is not None, "the fast path was not taken"
    return got


@pytest.mark.parametrize("knobs", [{}, {"ef": 16, "oversample": 2.0}, {"ef": 48},
                                   {"target_recall": 0.95}, {"target_recall": 0.99}])
def test_fast_path_equals_general_path(built, knobs) -> None:
    _, coll, _ = built
    qs = _data(40, seed=1)
    for q in qs:  # the first call of a setting makes it, the next ones reuse it
        for _ in range(2):
            got = _quick(coll, q, **knobs)
            ids, scores, info = _general(coll, q, **knobs)
            assert got.ids.tolist() == ids.tolist()
            np.testing.assert_array_equal(got.scores, scores)
            assert got.info == info and got.info["strategy"] == "index"
            res = coll.search(q, k=10, **knobs)
            assert res.ids.tolist() == ids.tolist() and res.info == info
    batch = coll.search(qs, k=10, **knobs)
    ids, scores, info = _general(coll, qs, **knobs)
    assert batch.ids.shape == (40, 10) and batch.ids.tolist() == ids.tolist()
    np.testing.assert_array_equal(batch.scores, scores)
    assert batch.info == info


def test_fast_path_k_capped_and_info_not_shared(built) -> None:
    _, coll, _ = built
    q = _data(1, seed=2)[0]
    res = coll.search(q, k=N + 50, ef=16)
    assert len(res.ids) == N and None not in res.ids.tolist()
    res.info["params"]["ef"] = -1  # the caller's copy: the next result is not changed
    res.info["segments"]["indexed"] = 7
    again = coll.search(q, k=N + 50, ef=16)
    assert again.info["params"]["ef"] == 16 and again.info["segments"]["indexed"] == 1
    assert again.ids.tolist() == res.ids.tolist()


def test_fast_path_typed_errors(built) -> None:
    _, coll, _ = built
    q = _data(1, seed=3)[0]
    coll.search(q, k=10, ef=48)  # the setting (ef=48, an int) is known now
    with pytest.raises(InvalidArgument):
        coll.search(q, k=10, ef=48.0)  # same value, another type: checked, refused
    with pytest.raises(InvalidArgument):
        coll.search(q, k=10, ef=True)
    with pytest.raises(InvalidArgument):
        coll.search(q, k=0)
    with pytest.raises(InvalidArgument):
        coll.search(q, k=10, oversample=0.5)
    with pytest.raises(InvalidArgument):
        coll.search(q, k=10, target_recall=1.5)
    with pytest.raises(InvalidArgument):
        coll.search(q, k=10, ef=[48])  # unhashable
    with pytest.raises(DimensionMismatch):
        coll.search(q[:-1], k=10)
    with pytest.raises(InvalidVector):
        coll.search(np.full(DIM, np.nan, np.float32), k=10)
    with pytest.raises(InvalidArgument):
        coll.search(q, k=10, candidates=5)  # a Multi knob on a Dense field
    assert coll.search(q, k=np.int64(3)).ids.shape == (3,)  # the general path's k types
    coll.close()
    with pytest.raises(CollectionClosed):
        coll.search(q, k=10)


def test_fast_path_sees_deletes_growing_rows_and_other_handles(built, tmp_path) -> None:
    db, coll, x = built
    q = x[7]
    top = coll.search(q, k=5, ef=32).ids.tolist()
    assert top[0] == 7
    coll.delete([7])
    res = _quick(coll, q, k=5, ef=32)  # a new snapshot: its plan masks the deleted row
    assert 7 not in res.ids.tolist() and res.ids.tolist() == _general(coll, q, 5, ef=32)[0].tolist()
    coll.add([N + 1], {"v": q[None]})  # a growing row that may be returned: general path
    assert coll._executor.quick(q, 5, None, None, 32, None, None) is None
    assert coll.search(q, k=5, ef=32).ids.tolist()[0] == N + 1
    coll.delete([N + 1])  # the growing rows left are all deleted: the fast path again
    assert 7 not in _quick(coll, q, k=5, ef=32).ids.tolist()
    other = pv.connect(tmp_path).get_collection("c")  # another handle: a store of its own
    other.delete([top[1]])
    got = coll.search(q, k=5, ef=32).ids.tolist()  # the commit stamp moved: refreshed
    assert top[1] not in got and got == other.search(q, k=5, ef=32).ids.tolist()
    assert _quick(coll, q, k=5, ef=32).ids.tolist() == got


def test_dense_query_checker_equals_check_dense_query() -> None:
    spec = pv.Dense(DIM)
    check = v.dense_query_checker(spec)
    rng = np.random.default_rng(4)
    for q in (rng.normal(size=DIM), rng.normal(size=DIM).astype(np.float16),
              rng.normal(size=(3, DIM)).astype(np.float32), [0.5] * DIM):
        a, single_a = check(q)
        b, single_b = v.check_dense_query(spec, q)
        assert single_a == single_b and a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    for bad, err in ((np.zeros(DIM, np.float32), InvalidVector),
                     (np.ones(DIM + 1, np.float32), DimensionMismatch),
                     (np.array(["a"] * DIM), DTypeMismatch)):
        with pytest.raises(err):
            check(bad)
        with pytest.raises(err):
            v.check_dense_query(spec, bad)


@pytest.mark.parametrize("spec", ["HNSW32,SQ8,Refine", "HNSW16", "IVF16,SQ8,Refine", "Flat"])
def test_bound_index_call_equals_search(spec) -> None:
    x = _data()
    idx = build_index(x, parse_index(spec), "cosine")
    q = _data(30, seed=5)
    sel = np.ones(N, dtype=bool)
    sel[::3] = False
    for params in (None, QueryParams(ef=24, oversample=2.0), QueryParams(nprobe=4)):
        for selection in (None, sel):
            want = idx.search(q, 10, params=params, selection=selection, rerank=x)
            fn = idx.bind(10, params=params, selection=selection, rerank=x)
            for _ in range(2):
                got = fn(q)
                np.testing.assert_array_equal(got[1], want[1])
                np.testing.assert_array_equal(got[0], want[0])
