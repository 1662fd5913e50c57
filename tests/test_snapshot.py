"""Snapshot selections: a filter's mask over live-table positions becomes each segment's row
mask by a view (rows at consecutive positions) or a gather (merged, repacked or gone rows),
and both equal the definition: row i selected iff its seq is a selected live item."""

from __future__ import annotations

import numpy as np
import pytest

from polyvec._live import KeyColumn
from polyvec.engine.snapshot import Segment, Snapshot
from polyvec.storage.catalog import SegmentRow


def _snapshot(seqs: list[int]) -> Snapshot:
    keys = KeyColumn()
    keys.extend([f"k{s}" for s in seqs])
    arr = np.array(seqs, dtype=np.int64)
    return Snapshot(version=0, segments=(), growing={}, live_seqs=arr, seqs=arr, keys=keys)


def _segment(seqs: list[int]) -> Segment:
    row = SegmentRow("s", len(seqs), min(seqs), max(seqs), {})
    return Segment(row=row, seqs=np.array(seqs, dtype=np.int64), fields={})


@pytest.mark.parametrize("seg_seqs", [
    [3, 4, 5, 6],          # consecutive positions: a view
    [3, 5, 6],             # interleaved with another segment's item (a merge): a gather
    [2, 3, 5],             # an item gone from the live table (seq 2) and a gap
    [1, 3, 4, 5],          # gone first, then consecutive: must not be taken for a view
    [6, 8, 9],             # a gone row between positions 3 and 5: spans 3 but is no view
])
def test_row_masks_equal_the_definition(seg_seqs: list[int]) -> None:
    live = [3, 4, 5, 6, 7, 9]
    snap = _snapshot(live)
    seg = _segment(seg_seqs)
    rng = np.random.default_rng(0)
    for _ in range(20):
        selected = rng.random(len(live)) < 0.5
        want = np.array([s in live and bool(selected[live.index(s)]) for s in seg_seqs])
        np.testing.assert_array_equal(snap.select_rows(selected, seg), want)
    keys = snap.row_keys(seg)
    assert keys.tolist() == [f"k{s}" if s in live else None for s in seg_seqs] + [None]
    assert keys[np.array([-1])][0] is None  # a pad row maps to None


def test_growing_rows_that_cannot_be_returned_do_not_leave_the_short_path(tmp_path) -> None:
    """A built collection that took a few writes since (now deleted) answers through its one
    index alone, like before the writes; live growing rows are still merged in."""
    import polyvec as pv

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1500, 16)).astype(np.float32)
    coll = pv.connect(tmp_path).create_collection("c", {"v": pv.Dense(16, metric="l2")},
                                                  segment_rows=1500)
    coll.add(list(range(1500)), x)
    coll.create_index("v", "HNSW16,SQ8,Refine")
    q = x[:5] + 0.01
    before = coll.search(q, k=10, ef=64)
    coll.add([10_000, 10_001], x[:2])  # growing rows, then gone
    coll.delete([10_000, 10_001])
    after = coll.search(q, k=10, ef=64)
    assert after.info["segments"] == {"indexed": 1, "exact": 0}
    np.testing.assert_array_equal(after.ids, before.ids)
    coll.add([10_002], x[:1])  # a live growing row is merged in
    got = coll.search(x[:1], k=2, ef=64)
    assert got.info["segments"] == {"indexed": 1, "exact": 1}
    assert set(got.ids[0].tolist()) == {0, 10_002}


def test_a_filter_selection_is_kept_per_snapshot_and_per_exact_value(tmp_path) -> None:
    """A repeated filter reuses its selection on one snapshot; a write publishes a new one
    (the next search compiles again and sees the write); 1, 1.0 and True (one value to node
    equality) keep separate selections."""
    import polyvec as pv

    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    values: list[object] = [1, True, 1.5, "1"] * 15
    with pv.connect(tmp_path / "db") as db:
        coll = db.create_collection("c", {"v": pv.Dense(8)}, indexed=["x"])
        coll.add(list(range(60)), x, [{"x": v} for v in values])

        def hits(flt: dict) -> set:
            return {i for i in coll.search(x[0], k=60, filter=flt).ids.tolist()
                    if i is not None}

        assert hits({"x": True}) == {i for i in range(60) if i % 4 == 1}
        assert hits({"x": 1}) == {i for i in range(60) if i % 4 == 0}
        assert hits({"x": 1.0}) == hits({"x": 1})
        assert hits({"x": True}) == {i for i in range(60) if i % 4 == 1}  # kept, not mixed
        snap = coll._store.snap
        kept = dict(snap.selections)
        assert len(kept) == 3
        hits({"x": True})
        assert coll._store.snap is snap and all(
            snap.selections[k] is m for k, m in kept.items())  # reused, not recompiled
        coll.delete([1])
        coll.add([60], x[:1], [{"x": True}])
        assert coll._store.snap is not snap and not coll._store.snap.selections
        assert hits({"x": True}) == {i for i in range(60) if i % 4 == 1} - {1} | {60}
