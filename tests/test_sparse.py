"""Sparse fields: exact dot-product search against scipy's CSR products (growing rows, sealed
segments, deletes, upserts, compaction, reopening), the input forms, and typed refusals that
change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import polyvec as pv
from polyvec._kernels.sparse import Postings, sparse_scores
from polyvec.errors import DimensionMismatch, InvalidArgument, InvalidVector
from polyvec.spec import field_from_dict

DIM = 2_000


def _rows(rng: np.random.Generator, n: int, most: int = 30) -> list[tuple[np.ndarray,
                                                                            np.ndarray]]:
    out = []
    for _ in range(n):
        k = int(rng.integers(0, most))  # (some rows are empty: they are never a hit)
        out.append((rng.choice(DIM, k, replace=False),
                    rng.gamma(1.0, 1.0, k).astype(np.float32)))
    return out


def _csr(rows: list[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(i) for i, _ in rows])
    idx = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, int)
    val = np.concatenate([v for _, v in rows]) if rows else np.zeros(0)
    return sp.csr_matrix((val.astype(np.float64), idx, indptr), shape=(len(rows), DIM))


def _reference(held: dict[Any, tuple[np.ndarray, np.ndarray]], q: tuple[np.ndarray, np.ndarray],
               k: int, keep: Any = None) -> tuple[list[Any], np.ndarray]:
    """The exact top-k by scipy: items sharing an index with the query, by score."""
    ids = [i for i in held if keep is None or keep(i)]
    m = _csr([held[i] for i in ids])
    qv = np.zeros(DIM)
    qv[q[0]] = q[1]
    scores = m @ qv
    overlap = (m != 0).astype(np.float64) @ (qv != 0).astype(np.float64) > 0
    order = [j for j in np.argsort(-scores, kind="stable") if overlap[j]][:k]
    return [ids[j] for j in order], scores[order]


@pytest.fixture()
def coll(tmp_path: Path) -> Any:
    db = pv.connect(tmp_path / "db")
    yield db.create_collection("s", {"w": pv.Sparse(DIM), "d": pv.Dense(4)},
                               indexed=["g"], segment_rows=300)
    db.close()


def _write(c: Any, ids: list[Any], rows: list[Any], rng: np.random.Generator,
           upsert: bool = False) -> None:
    payloads = [{"g": i % 3 if isinstance(i, int) else -1} for i in ids]
    dense = rng.standard_normal((len(ids), 4)).astype(np.float32)
    (c.upsert if upsert else c.add)(ids, {"w": rows, "d": dense}, payloads)


def test_search_equals_scipy_over_segments_deletes_upserts_and_compaction(tmp_path: Path
                                                                          ) -> None:
    # segments made by flush only: the fixture's 300-row segments let a background seal
    # of the third write race the check that growing rows remain (it won once under CI load)
    db = pv.connect(tmp_path / "own")
    coll = db.create_collection("s", {"w": pv.Sparse(DIM), "d": pv.Dense(4)}, indexed=["g"],
                                segment_rows=10_000)
    rng = np.random.default_rng(0)
    held: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
    for lo in (0, 400, 800):  # two sealed segments and growing rows
        rows = _rows(rng, 400)
        _write(coll, list(range(lo, lo + 400)), rows, rng)
        held |= dict(zip(range(lo, lo + 400), rows, strict=True))
        if lo < 800:
            coll.flush()
    gone = list(range(0, 1200, 7))
    coll.delete(gone)
    for i in gone:
        held.pop(i)
    again = _rows(rng, 100)
    _write(coll, list(range(5, 1200, 12)), again, rng, upsert=True)
    held |= dict(zip(range(5, 1200, 12), again, strict=True))
    queries = _rows(rng, 25, most=12)

    def check() -> None:
        for q in queries:
            want_ids, want_scores = _reference(held, q, 10)
            got = coll.search(q, 10, field="w")
            assert [i for i in got.ids if i is not None] == want_ids
            np.testing.assert_allclose(got.scores[:len(want_ids)], want_scores, rtol=1e-5)
            kept_ids, _ = _reference(held, q, 10, keep=lambda i: i % 3 == 1)
            got = coll.search(q, 10, field="w", filter={"g": 1})
            assert [i for i in got.ids if i is not None] == kept_ids

    check()
    assert len(coll.info()["segments"]) >= 2 and coll.info()["growing_rows"] > 0
    coll.compact()
    coll.merge(force=True)
    check()
    path = coll.path
    coll.close()
    coll = pv.Collection(path)  # the same folder again: sealed arrays and the growing log
    check()
    item = coll.get([5])[0]
    idx, val = held[5]
    order = np.argsort(idx)
    assert isinstance(item.vectors["w"], pv.SparseVector)
    np.testing.assert_array_equal(item.vectors["w"].indices, idx[order])
    np.testing.assert_array_equal(item.vectors["w"].values, val[order])
    coll.close()
    db.close()


def test_the_numpy_kernel_equals_scipy() -> None:
    rng = np.random.default_rng(1)
    rows = _rows(rng, 500)
    m = _csr(rows).tocsr()
    m.sort_indices()
    for q in _rows(rng, 20, most=40):
        qi = np.sort(q[0]).astype(np.uint32)
        qv = q[1][np.argsort(q[0])]
        scores, matched = sparse_scores(qi, qv, m.indptr, m.indices.astype(np.uint32),
                                        m.data.astype(np.float32))
        dense_q = np.zeros(DIM)
        dense_q[q[0]] = q[1]
        np.testing.assert_allclose(scores, m @ dense_q, rtol=1e-5, atol=1e-6)
        assert (matched == ((m != 0) @ (dense_q != 0) > 0)).all()
        # the inverted lists (sealed blocks' path) give the reference's scores
        post = Postings(Postings.build(m.indptr, m.indices.astype(np.uint32),
                                       m.data.astype(np.float32)), m.shape[0])
        fast, fast_matched = post.scores(qi, qv)
        np.testing.assert_allclose(fast, scores, rtol=1e-6, atol=1e-7)
        assert (fast_matched == matched).all()
    empty = Postings(Postings.build(np.zeros(3, np.int64), np.zeros(0, np.uint32),
                                    np.zeros(0, np.float32)), 2)
    assert empty.scores(np.array([1], np.uint32), np.array([1.0], np.float32))[1].tolist() == \
        [False, False]


def test_input_forms_and_batches(coll: Any) -> None:
    rng = np.random.default_rng(2)
    forms = [([3, 1], [2.0, 1.0]), {1: 1.0, 3: 2.0}, pv.SparseVector(np.array([1, 3]),
                                                                    np.array([1.0, 2.0])),
             (np.array([1, 3], np.int64), np.array([1, 2], np.int32))]  # integer weights too
    _write(coll, ["a", "b", "c", "d"], forms, rng)
    _write(coll, ["m0", "m1"], sp.csr_matrix(([5.0, 1.0], ([0, 1], [9, 3])), shape=(2, 50)),
           rng)
    for i in "abcd":
        vec = coll.get([i])[0].vectors["w"]
        assert vec.indices.tolist() == [1, 3] and vec.values.tolist() == [1.0, 2.0]
    single = coll.search({3: 1.0}, 3, field="w")
    assert single.ids.shape == (3,) and set(single.ids) == {"a", "b", "c"} | {"d"} & set(
        single.ids)
    batch = coll.search([{9: 1.0}, ([1], [1.0])], 2, field="w")
    assert batch.ids.shape == (2, 2) and batch.ids[0].tolist() == ["m0", None]
    two = [pv.SparseVector(np.array([9]), np.array([1.0])), (np.array([3]), np.array([1.0]))]
    assert coll.search(two, 1, field="w").ids.shape == (2, 1)  # a batch, not one pair
    mat = coll.search(sp.csr_matrix(([1.0], ([0], [9])), shape=(1, DIM)), 1, field="w")
    assert mat.ids.tolist() == [["m0"]]
    assert coll.search({1999: 1.0}, 3, field="w").ids.tolist() == [None] * 3  # no overlap
    assert coll.search(([], []), 3, field="w").ids.tolist() == [None] * 3


@pytest.mark.parametrize(("bad", "error", "match"), [
    (([-1], [1.0]), InvalidVector, r"\[0, 2000\), got -1"),
    (([DIM], [1.0]), InvalidVector, r"got 2000"),
    (([4, 4], [1.0, 2.0]), InvalidVector, "distinct indices, got 4 twice"),
    (([4], [float("nan")]), InvalidVector, "finite"),
    (([4], [float("inf")]), InvalidVector, "finite"),
    (([4.5], [1.0]), InvalidVector, "integer indices"),
    (([4, 5], [1.0]), InvalidVector, "one length"),
    (([4], [True]), InvalidVector, "numeric values"),
    ({"x": 1.0}, InvalidVector, "integer indices"),
    ("12", InvalidVector, "sparse vector"),
])
def test_bad_vectors_are_typed_and_change_nothing(coll: Any, bad: Any, error: type,
                                                  match: str) -> None:
    rng = np.random.default_rng(3)
    _write(coll, ["keep"], [{1: 1.0}], rng)
    with pytest.raises(error, match=match):
        _write(coll, ["new", "keep"], [{2: 1.0}, bad], rng, upsert=True)
    with pytest.raises(error, match=match):
        coll.search(bad, 3, field="w")
    assert len(coll) == 1 and coll.get(["new"]) == [None]
    assert coll.get(["keep"])[0].vectors["w"].indices.tolist() == [1]


def test_f16_storage_and_the_spec(tmp_path: Path) -> None:
    db = pv.connect(tmp_path / "db")
    c = db.create_collection("h", {"w": pv.Sparse(10, dtype="f16")})
    c.add(["a"], {"w": [{1: 0.1, 2: 3.0}]})
    assert c.get(["a"])[0].vectors["w"].values.tolist() == [np.float16(0.1), 3.0]
    with pytest.raises(InvalidVector, match="float16 range"):
        c.add(["b"], {"w": [{1: 1e6}]})
    with pytest.raises(DimensionMismatch, match="at most 10 columns"):
        c.add(["b"], {"w": sp.csr_matrix((1, 11))})
    with pytest.raises(InvalidVector, match="expected 1 sparse vectors, got 2"):
        c.add(["b"], {"w": [{1: 1.0}, {2: 1.0}]})
    with pytest.raises(InvalidArgument, match="searched exactly"):
        c.create_index("w", "HNSW32")
    with pytest.raises(InvalidArgument, match="ef: for indexed"):
        c.search({1: 1.0}, 1, ef=16)
    assert c.search({1: 1.0}, 1).ids.tolist() == ["a"]  # the only field: no field= needed
    assert field_from_dict(pv.Sparse(10, dtype="f16").to_dict()) == pv.Sparse(10, dtype="f16")
    assert pv.Sparse().dim == 2**32
    for bad in ({"dim": 0}, {"dim": 2**32 + 1}, {"dim": True}, {"dtype": "u4"}):
        with pytest.raises(InvalidArgument):
            pv.Sparse(**bad)
    db.close()


def test_u8_weights_with_their_stated_scale(tmp_path: Path) -> None:
    """dtype u8: each weight stored as round(weight / scale), scale = max_weight / 255; search
    scores the stored weights exactly (growing and sealed alike), get returns them, and a
    weight outside [0, max_weight] is refused whole."""
    rng = np.random.default_rng(8)
    spec = pv.Sparse(DIM, dtype="u8", max_weight=3.0)
    assert spec.scale == pytest.approx(3.0 / 255) and spec.to_dict()["max_weight"] == 3.0
    coll = pv.connect(tmp_path).create_collection("q", {"w": spec}, segment_rows=300)
    rows = [(np.sort(i), (np.abs(v) % 3.0)[np.argsort(i)]) for i, v in _rows(rng, 700)]
    coll.add(list(range(700)), {"w": rows})
    coll.flush()  # (some rows sealed, the last in the growing segment)
    coll.add(list(range(700, 750)), {"w": _rows_abs(rng, 50)})
    stored = {i: (idx, np.rint(val / np.float32(spec.scale)).astype(np.float32)
                  * np.float32(spec.scale)) for i, (idx, val) in enumerate(rows)}
    for i in (0, 350, 699):
        got = coll.get([i])[0].vectors["w"]
        np.testing.assert_array_equal(got.values, stored[i][1])
        assert np.abs(got.values - rows[i][1]).max() <= spec.scale / 2 + 1e-6
    m = _csr([stored[i] for i in range(700)])
    for q in _rows(rng, 10):
        res = coll.search(q, 20)
        dense_q = np.zeros(DIM)
        dense_q[q[0]] = q[1]
        want = m @ dense_q
        for key, score in zip(res.ids, res.scores, strict=True):
            if key is not None and key < 700:
                assert score == pytest.approx(want[key], rel=1e-5, abs=1e-6)
    bad = [(np.array([1, 2]), np.array([0.5, 3.5], np.float32))]
    with pytest.raises(pv.InvalidVector, match=r"expected weights in \[0, 3\].*got 3\.5"):
        coll.add([9_999], {"w": bad})
    with pytest.raises(pv.InvalidVector, match="got -0.5"):
        coll.add([9_999], {"w": [(np.array([1]), np.array([-0.5], np.float32))]})
    assert len(coll) == 750
    for kw in ({"dtype": "u8"}, {"dtype": "u8", "max_weight": -1.0},
               {"dtype": "f32", "max_weight": 2.0}):
        with pytest.raises(pv.InvalidArgument, match="max_weight"):
            pv.Sparse(DIM, **kw)  # type: ignore[arg-type]
    coll.close()


def _rows_abs(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(i, np.abs(v) % 3.0) for i, v in _rows(rng, n)]
