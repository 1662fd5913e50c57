"""Collections with ANN indexes on sealed segments: exact search stays the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

import polyvec as pv
from polyvec.errors import CorruptFile, InvalidArgument

N, SEG = 6_000, 2_500
FLOOR = 0.90  # mean recall@10 vs exact at target_recall=0.95 on held-out real queries


@pytest.fixture(scope="module")
def folder():
    return shared_data("debian-minilm", "base_f16.npy", "queries_f16.npy")


@pytest.fixture(scope="module")
def data(folder):
    base = np.load(folder / "base_f16.npy")[:N].astype(np.float32)
    queries = np.load(folder / "queries_f16.npy").astype(np.float32)
    return base, queries[:200], queries[200:400]


def _fill(tmp_path, base, **kw):
    db = pv.connect(tmp_path)
    coll = db.create_collection("c", {"v": pv.Dense(384)}, indexed=["g"], segment_rows=SEG, **kw)
    for lo in range(0, N, 1000):
        coll.add(list(range(lo, lo + 1000)), {"v": base[lo:lo + 1000]},
                 [{"g": i % 10} for i in range(lo, lo + 1000)])
    return db, coll


def _recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got.tolist(),
                                                                          want.tolist(),
                                                                          strict=True)]))


def test_index_recall_reopen_seal_delete_filter_compact(tmp_path, data) -> None:
    base, sample, held_out = data
    db, coll = _fill(tmp_path, base)
    exact = coll.search(held_out, k=10)
    assert exact.info["strategy"] == "exact"
    coll.create_index("v", "HNSW32,SQ8,Refine", sample_queries=sample)
    info = coll.info()["indexes"]["v"]
    # the two sealed segments were merged first: one graph over 5,000 rows
    assert info["spec"] == "HNSW32,SQ8,Refine" and info["segments_indexed"] == 1
    assert info["ram_bytes_per_vector"] < 384 * 4 / 2
    lid = info["lid"]  # MiniLM descriptions: median LID ~8 (k=20), a long upper tail
    assert lid["sample"] == 500 and 3 < lid["median"] < 20 and lid["p10"] < lid["median"]
    assert info["calibration"]["targets"] == [0.9, 0.95, 0.99]
    res = coll.search(held_out, k=10, target_recall=0.95)
    assert res.info["strategy"] == "index" and res.info["recall_estimate"] >= 0.95
    assert _recall(res.ids, exact.ids) >= FLOOR

    db.close()  # reopen: the index is loaded, not rebuilt, and answers the same
    db = pv.connect(tmp_path)
    coll = db.get_collection("c")
    again = coll.search(held_out, k=10, target_recall=0.95)
    np.testing.assert_array_equal(again.ids, res.ids)
    assert coll.info()["indexes"]["v"]["lid"] == lid  # persisted, not recomputed

    coll.add(list(range(N, N + 500)), {"v": -base[:500]}, [{"g": 0}] * 500)
    coll.flush()  # 500 rows: too small to index, scanned exactly
    assert coll.info()["indexes"]["v"]["segments_exact"] == 1
    coll.upsert(list(range(N + 500, N + 500 + SEG)), {"v": -base[500:500 + SEG]},
                [{"g": 0}] * SEG)  # seals a big segment, which gets its index on seal
    coll.wait_for_maintenance()  # (in the background)
    assert coll.info()["indexes"]["v"]["segments_indexed"] == 2

    gone = sorted({int(i) for i in exact.ids[:, 0]})
    coll.delete(gone)
    res = coll.search(held_out, k=10, target_recall=0.9)
    assert not set(gone) & {i for i in res.ids.ravel().tolist() if i is not None}

    rare = coll.search(held_out[:20], k=10, filter={"g": 3, "$not": {"g": {"$gte": 4}}},
                       target_recall=0.95)
    sub = [it for it in coll.get(list(range(N))) if it is not None and it.payload["g"] == 3]
    assert all(len([i for i in row if i is not None]) == 10 for row in rare.ids.tolist())
    assert {i for i in rare.ids.ravel().tolist()} <= {it.id for it in sub}

    before = {p.name for p in (tmp_path / "c" / "indexes").iterdir()}
    coll.compact()
    after = {p.name for p in (tmp_path / "c" / "indexes").iterdir()}
    assert coll.info()["indexes"]["v"]["segments_indexed"] >= 1
    # segments with deletes were rewritten (clean ones are left alone): their index folders
    # are gone, and every folder left belongs to a registered segment
    registered = {s["name"] for s in coll.info()["segments"]}
    assert before - after
    assert all(f.split(".")[0] in registered for f in after if not f.startswith("_queries"))
    res = coll.search(held_out, k=10, target_recall=0.95)
    ref = coll.search(held_out, k=10, ef=4096, oversample=64)  # a generous explicit setting
    assert _recall(res.ids, ref.ids) >= FLOOR
    db.close()


def test_corrupt_index_file_raises_and_bad_specs_are_rejected(tmp_path, data) -> None:
    base, sample, _ = data
    db, coll = _fill(tmp_path, base)
    with pytest.raises(InvalidArgument):
        coll.create_index("v", "HNSW32,PQ7")
    coll.create_index("v", "HNSW16,F16,Refine")
    db.close()
    target = next(p for p in (tmp_path / "c" / "indexes").rglob("*.npy")
                  if not p.parent.name.startswith("_queries"))
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(CorruptFile) as e:
        pv.connect(tmp_path).get_collection("c")
    assert Path(e.value.filename) == target


def test_target_recall_is_met_within_0_02_on_held_out_queries(tmp_path, folder) -> None:
    """The acceptance bar: achieved mean recall@10 never more than 0.02 under each requested
    target, the estimate in ``info`` within 0.03 of what held-out queries get, and no wild
    overshoot (the calibration picks the fastest setting whose lower confidence bound reaches
    the target; one step of the ef grid near ef 16-20 moves recall by ~0.02-0.03 here, and
    ``tests/test_calibrate.py`` holds the chosen setting to >= 0.8x the best explicit one's
    speed)."""
    base = np.load(folder / "base_f16.npy")[:20_000].astype(np.float32)
    queries = np.load(folder / "queries_f16.npy").astype(np.float32)
    coll = pv.connect(tmp_path).create_collection("c", {"v": pv.Dense(384)},
                                                  segment_rows=10_000)
    for lo in range(0, 20_000, 5_000):
        coll.add(list(range(lo, lo + 5_000)), {"v": base[lo:lo + 5_000]})
    coll.create_index("v", "HNSW32,SQ8,Refine", sample_queries=queries[:300])
    held_out = queries[1000:1500]  # disjoint from the calibration sample
    exact = coll.search(held_out, k=10)
    for target in (0.9, 0.95, 0.99):
        res = coll.search(held_out, k=10, target_recall=target)
        achieved = _recall(res.ids, exact.ids)
        assert target - 0.02 <= achieved <= target + 0.04, (target, achieved,
                                                            res.info["params"])
        assert abs(res.info["recall_estimate"] - achieved) <= 0.03, (res.info, achieved)
