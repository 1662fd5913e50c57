"""Partition graphs (polyvec.index.parts): a graph per frequent value of an indexed column.

A selection held by one partition walks that partition's graph; the results must be what
exact search over the selected rows gives (recall floor), never fewer than k, and the same
whether the refine runs fused in the kernel (``remap``) or after it. Selections no partition
holds walk the whole graph as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec as pv
from polyvec.errors import CorruptFile
from polyvec.factory import parse_index
from polyvec.filters import parse_filter
from polyvec.filters.columns import Column
from polyvec.index import QueryParams, VectorIndex, load_index
from polyvec.index.build import build_index
from polyvec.index.parts import Group, pick_groups
from polyvec.index.refine import rerank_candidates

RECALL_FLOOR = 0.95  # ef 64 on a few thousand rows of 32-d data: ~1.0 measured
SPEC = "HNSW32,SQ8,Refine"


def _unit(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _recall(rows: np.ndarray, q: np.ndarray, x: np.ndarray, sel: np.ndarray, k: int = 10
            ) -> float:
    chosen = np.flatnonzero(sel)
    truth = chosen[np.argsort(-(q @ x[chosen].T), axis=1)[:, :k]]
    return float(np.mean([len(set(a) & set(b)) / k
                          for a, b in zip(rows.tolist(), truth.tolist(), strict=True)]))


def _tagged(path: Path, seed: int, n: int, indexed: list[str]
            ) -> tuple[Any, pv.Collection, np.ndarray, np.ndarray, np.random.Generator]:
    """A one-segment collection of ``n`` unit vectors indexed with ``SPEC``; payloads: a
    ``tag`` of four values (about ``n / 4`` rows each: a partition apiece when indexed), ``i``
    (the id) and ``s`` (the id mod 7)."""
    rng = np.random.default_rng(seed)
    x = _unit(rng, n)
    tags = np.array(["a", "b", "c", "d"])[rng.integers(0, 4, n)]
    db = pv.connect(path)
    coll = db.create_collection("c", {"v": pv.Dense(32)}, indexed=indexed, segment_rows=n + 1)
    coll.add(list(range(n)), {"v": x},
             [{"tag": str(t), "i": i, "s": i % 7} for i, t in enumerate(tags)])
    coll.create_index("v", SPEC)
    return db, coll, x, tags, rng


def test_column_groups_hold_exactly_the_rows_eq_selects() -> None:
    col = Column(("c",))
    values = [3, 3.0, "3", True, 1, None, [3], {"a": 3}, "x", "x", False, 3]
    col.extend([{"c": v} for v in values] + [{}])
    got = {(type(v).__name__, v): rows.tolist() for v, rows in col.groups(range(13), 1, 99)}
    assert got == {("float", 3.0): [0, 1, 11], ("str", "3"): [2], ("bool", True): [3],
                   ("float", 1.0): [4], ("str", "x"): [8, 9], ("bool", False): [10]}
    # positions: indices into them; size bounds
    assert [(v, r.tolist()) for v, r in col.groups([11, 9, 0, 8], 2, 2)] == \
        [(3.0, [0, 2]), ("x", [1, 3])]
    assert col.groups([0, 1, 11], 1, 2) == []


def test_pick_groups_keeps_sizes_and_the_rows_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from polyvec.index import parts

    monkeypatch.setattr(parts, "MIN_PART_ROWS", 10)
    g = [Group(("a",), i, np.arange(size)) for i, size in enumerate([9, 10, 50, 51, 40, 40])]
    assert [x.value for x in pick_groups(g, 100)] == [1, 2, 4, 5]  # 9 < min, 51 > n / 2
    monkeypatch.setattr(parts, "MAX_PART_ROWS", 1)
    assert [x.value for x in pick_groups(g, 100)] == [1, 2, 4]  # 100 rows in all


@pytest.fixture(scope="module")
def parted() -> tuple[VectorIndex, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = _unit(rng, 12_000)
    cat = rng.integers(0, 4, len(x))
    groups = [Group(("cat",), v, np.flatnonzero(cat == v)) for v in range(4)]
    idx = build_index(x, parse_index(SPEC), "cosine", groups=groups)
    return idx, x, cat, _unit(rng, 40)


def test_a_selection_inside_a_partition_walks_it_and_matches_exact(parted: tuple) -> None:
    idx, x, cat, q = parted
    rng = np.random.default_rng(1)
    assert idx.parts is not None and len(idx.parts.parts) == 4
    whole = cat == 2
    narrower = whole & (rng.random(len(x)) < 0.6)
    across = (cat == 2) | (cat == 3)
    p = QueryParams(ef=64)
    for sel, inside in ((whole, True), (narrower, True), (across, False)):
        part = idx.parts.find(sel, int(sel.sum()))
        assert (part is not None) == inside
        if inside:
            assert part.group.value == 2
        s, r = idx.search(q, 10, params=p, selection=sel, rerank=x)
        assert (r >= 0).all() and sel[r].all()
        assert _recall(r, q, x, sel) >= RECALL_FLOOR
        np.testing.assert_allclose(s, np.take_along_axis(q @ x.T, r, axis=1), atol=1e-5)
    tiny = np.zeros(len(x), bool)  # a few rows of a partition: still never fewer than k
    tiny[np.flatnonzero(cat == 1)[:12]] = True
    s, r = idx.search(q, 10, params=p, selection=tiny, rerank=x)
    assert (r >= 0).all() and tiny[r].all() and _recall(r, q, x, tiny) == 1.0


def test_fused_partition_refine_equals_walk_then_refine(parted: tuple) -> None:
    idx, x, cat, q = parted
    part = idx.parts.parts[1]
    sub, rows = part.index, part.group.rows
    p = QueryParams(ef=48)
    fused = sub._as_part(q, q, 10, 20, p, None, len(rows), x, rows)
    s0, r0 = VectorIndex._as_part(sub, q, q, 10, 20, p, None, len(rows), x, rows)
    s1, r1 = rerank_candidates(q, r0, x, 10, "cosine")
    np.testing.assert_array_equal(fused.rows, r1)
    np.testing.assert_allclose(fused.scores, s1, atol=1e-6)
    walker = sub._searcher()
    s2, r2 = walker.search(q, 48, 20, rerank=np.ascontiguousarray(x[rows]), qr=q, k=10)
    np.testing.assert_array_equal(fused.rows, rows[r2])


def test_partitions_persist_and_bad_rows_are_refused(parted: tuple) -> None:
    idx, x, cat, q = parted
    arrays = idx.to_arrays()
    again = load_index(idx.spec, arrays, "cosine")
    assert again.partitions() == idx.partitions()
    sel = cat == 0
    for a, b in zip(idx.search(q, 10, params=QueryParams(ef=32), selection=sel, rerank=x),
                    again.search(q, 10, params=QueryParams(ef=32), selection=sel, rerank=x),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    for bad in (arrays["part.0.rows"][::-1].copy(), arrays["part.0.rows"] + len(x),
                arrays["part.0.rows"][:-1].copy(), arrays["part.0.rows"].astype(np.int32)):
        with pytest.raises(CorruptFile, match="partition 0"):
            load_index(idx.spec, arrays | {"part.0.rows": bad}, "cosine")


def test_a_collection_builds_partitions_from_its_indexed_columns(tmp_path: Path) -> None:
    n = 12_000
    db, coll, x, tags, rng = _tagged(tmp_path, 2, n, ["tag"])
    info = coll.index_info()["v"]["partitions"]
    assert info == {"graphs": 4, "paths": ["tag"]}
    q = _unit(rng, 30)
    gone = np.flatnonzero(tags == "b")[:500]
    coll.delete(gone.tolist())
    sel = tags == "b"
    sel[gone] = False
    for flt, want in (({"tag": "b"}, sel), ({"tag": "b", "i": {"$lt": 6000}},
                                            sel & (np.arange(n) < 6000))):
        res = coll.search(q, k=10, filter=flt, ef=64)
        ids = np.array(res.ids, dtype=np.int64)
        assert (ids >= 0).all() and want[ids].all()
        assert _recall(ids, q, x, want) >= RECALL_FLOOR
    before = coll.search(q, k=10, filter={"tag": "b"}, ef=64).ids
    db.close()
    coll = pv.connect(tmp_path).get_collection("c")
    np.testing.assert_array_equal(coll.search(q, k=10, filter={"tag": "b"}, ef=64).ids,
                                  before)
    coll.compact()  # new segments, new indexes: partitions again (from the live columns)
    assert coll.index_info()["v"]["partitions"]["graphs"] == 4
    res = coll.search(q, k=10, filter={"tag": "b"}, ef=64)
    assert _recall(np.array(res.ids, dtype=np.int64), q, x, sel) >= RECALL_FLOOR


def test_partition_graphs_load_on_first_use_and_their_damage_is_reported(
        tmp_path: Path) -> None:
    """An open reads each partition's rows, not its graph: a flipped byte in a partition's
    graph is met by the first filtered search that walks it (CorruptFile naming the file),
    and nothing else."""
    from polyvec.errors import CorruptFile

    db, coll, _, _, rng = _tagged(tmp_path, 5, 10_000, ["tag"])
    assert coll.index_info()["v"]["partitions"]["graphs"] == 4
    db.close()
    folder = next(p for p in (tmp_path / "c" / "indexes").iterdir() if ".v." in p.name)
    target = folder / "part.1.stage.faiss.npy"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0x40
    target.write_bytes(bytes(data))
    coll = pv.connect(tmp_path).get_collection("c")
    idx = coll._store.segments[0].indexes["v"][1]
    assert [p.loaded for p in idx.parts.parts] == [False] * 4
    q = _unit(rng, 3)
    assert (np.asarray(coll.search(q, k=10, ef=64).ids) >= 0).all()  # unfiltered: no partition
    healthy, damaged = (p.group.value for p in idx.parts.parts[:2])
    coll.search(q, k=10, filter={"tag": healthy}, ef=64)  # partition 0 loads, and is sound
    assert [p.loaded for p in idx.parts.parts] == [True, False, False, False]
    with pytest.raises(CorruptFile, match="part.1.stage.faiss"):
        coll.search(q, k=10, filter={"tag": damaged}, ef=64)


def test_filtered_searches_take_the_quick_path_and_answer_as_the_general_one(
        tmp_path: Path) -> None:
    """A filtered search of a built collection reuses, per (setting, filter), the bound
    index call (for a whole partition: that partition's walker) and answers exactly as the
    general path does; filters the quick path cannot take (a path no column holds) go the
    general way."""
    _, coll, _, _, rng = _tagged(tmp_path, 6, 10_000, ["tag", "i"])
    coll.search(_unit(rng, 1)[0], k=3)  # numba warm, the plan made
    q = _unit(rng, 8)
    for flt in ({"tag": "b"}, {"tag": "c", "i": {"$lt": 5000}}, {"i": {"$lt": 3000}},
                {"s": 3}):
        for one in (q[0], q):
            quick = coll.search(one, k=10, filter=flt, ef=48)
            again = coll.search(one, k=10, filter=flt, ef=48)  # the bound call, reused
            general = coll._search(one, 10, None, parse_filter(flt), None, 48, None, None,
                                   None, None, None, False)
            for got in (quick, again):
                np.testing.assert_array_equal(np.asarray(got.ids), np.asarray(general.ids))
                np.testing.assert_allclose(got.scores, general.scores, atol=1e-6)
                assert got.info["selected"] == general.info["selected"]
    plan = coll._store.snap.plans[None]
    filters = {key[-1] for key in plan.calls}
    assert len(filters - {None}) == 3  # the quick path served the column filters
    assert not any("'s'" in str(f) for f in filters)  # a path no column holds: general
