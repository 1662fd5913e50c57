"""Recall calibration: one recall definition, a margin from the sample size, the fastest setting.

The held-out test builds one index over Debian vectors, calibrates on one query sample and
checks, on disjoint queries, that each target is held (within the stated floor) and that the
chosen setting is about as fast as the best explicit setting of the same plane that reaches
the target on those queries (timed alternately over rounds, medians).
"""

from __future__ import annotations

import ast
import importlib
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from polyvec.errors import CorruptFile
from polyvec.eval.metrics import recall_at_k
from polyvec.factory import parse_index
from polyvec.index import build_index, load_index
from polyvec.index.base import exact_topk
from polyvec.index.calibrate import (
    calibrate,
    calibrate_search,
    exact_scores_of,
    recall_lower_bound,
    search_plane,
    tie_recall,
)
from polyvec.index.params import CalibrationTable, QueryParams

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-minilm"
SRC = Path(__file__).resolve().parents[1] / "src" / "polyvec"
K = 10
FLOOR = 0.01  # held-out recall >= target - FLOOR
SPEED = 0.8  # chosen QPS >= SPEED x the best explicit setting reaching the target


def test_tie_recall_is_the_eval_definition() -> None:
    rng = np.random.default_rng(0)
    nq, n = 50, 40
    scores = np.round(rng.random((nq, n)), 1)  # many exact ties
    order = np.argsort(-scores, axis=1, kind="stable")
    exact, es = order[:, :K], np.take_along_axis(scores, order[:, :K], axis=1)
    found = np.stack([rng.permutation(n)[:K] for _ in range(nq)])
    found[:5, 3] = -1  # pads never hit
    fs = np.where(found >= 0, np.take_along_axis(scores, np.maximum(found, 0), axis=1), -np.inf)
    ours = tie_recall(found, exact, es, K, fs)
    ref = recall_at_k(found, exact, K, exact_scores=es, found_scores=fs).per_query
    np.testing.assert_allclose(ours, ref)
    np.testing.assert_allclose(tie_recall(found, exact, es, K),
                               recall_at_k(found, exact, K).per_query)
    assert (ours >= tie_recall(found, exact, es, K)).all()
    keys = np.where(found >= 0, found, None).astype(object)  # a collection's keys
    np.testing.assert_allclose(tie_recall(keys, exact.astype(object), es, K, fs), ours)


def test_lower_bound_shrinks_with_the_sample_and_keeps_a_margin() -> None:
    rng = np.random.default_rng(1)
    r = np.clip(rng.normal(0.95, 0.08, 2000), 0, 1)
    bounds = [recall_lower_bound(r[:n], K) for n in (50, 200, 2000)]
    assert bounds == sorted(bounds) and bounds[-1] < r.mean()
    assert r.mean() - bounds[0] > 0.015  # 50 queries: a real margin
    assert 0.99 < recall_lower_bound(np.ones(300), K) < 1.0  # no spread: Wilson still bounds


def test_table_round_trip_and_old_tables_load() -> None:
    t = CalibrationTable("ef", K, (0.9, 0.99), (QueryParams(ef=40, oversample=2.0),
                                                QueryParams(ef=96, oversample=4.0)),
                         (0.93, 0.995), (0.91, 0.991), (1e-4, 2e-4), 300)
    assert CalibrationTable.from_dict(t.to_dict()) == t
    old = {"knob": "ef", "k": 10, "targets": [0.9], "recalls": [0.92],
           "params": [{"ef": 16, "nprobe": None, "oversample": 1.6}]}
    assert CalibrationTable.from_dict(old).params_for(0.9) == QueryParams(ef=16, oversample=1.6)
    with pytest.raises(CorruptFile):
        CalibrationTable.from_dict({**old, "params": [{"ef": 0}]})


def test_plane_rows_are_oversample_levels_ascending_in_the_knob() -> None:
    plane = search_plane("ef", True, K)
    assert len(plane) > 5
    for row in plane:
        assert len({p.oversample for p in row}) == 1
        assert [p.ef for p in row] == sorted(p.ef for p in row)
        assert row[0].ef is not None and row[0].ef >= K * (row[0].oversample or 1)
    assert [len(r) for r in search_plane("ef", False, K)] == [len(plane[0])]
    assert max(p.nprobe or 0 for r in search_plane("nprobe", True, K, nlist=64) for p in r) == 64


def test_choice_ignores_timing_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Near-equal points timed under load must not decide the recall the user gets: with
    +-40% noise on every timing, the same plane gives the same choice, and never a point
    needing both more ``ef`` and more reranked rows than another qualifying one."""
    cal = importlib.import_module("polyvec.index.calibrate")  # the module (for its clock)
    nq = 50
    exact = np.tile(np.arange(K), (nq, 1))
    need = {1.0: 48, 1.5: 38, 2.0: 38, 3.0: 38}  # cheapest qualifying ef per oversample

    def search(p: QueryParams) -> tuple[np.ndarray, None]:
        ok = p.ef >= need.get(p.oversample, 36)
        clock.now += (1e-5 * p.ef + 1e-6 * np.ceil(K * p.oversample)) \
            * rng.uniform(0.6, 1.4) * nq
        found = exact.copy() if ok else np.where(np.arange(K) < 5, exact, -1)
        return found, None

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(cal, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    choices = set()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        table = calibrate_search(search, exact, np.ones((nq, K)),
                                 search_plane("ef", True, K), knob="ef", k=K, targets=(0.9,))
        choices.add(table.params[0])
    assert choices == {QueryParams(ef=38, oversample=1.5)}, choices


def test_base_does_not_import_calibrate() -> None:
    tree = ast.parse((SRC / "index" / "base.py").read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in mods if m and m.endswith("calibrate")}


def _seconds(index, q, base, points, rounds=7) -> dict[QueryParams, float]:
    """Least seconds per query of each point over the rounds, the points alternated within
    each round (the least: another process's burst only ever slows a round down)."""
    times: dict[QueryParams, list[float]] = {p: [] for p in points}
    for p in points:
        index.search(q, K, params=p, rerank=base)  # warm
    for _ in range(rounds):
        for p in points:
            t0 = time.perf_counter()
            index.search(q, K, params=p, rerank=base)
            times[p].append((time.perf_counter() - t0) / len(q))
    return {p: min(t) for p, t in times.items()}


def held_out_report(index, base, held, table) -> list[dict]:
    """Per target: the chosen setting and the fastest explicit plane setting reaching the
    target on ``held`` (the cheapest knob of every oversample row), recall and QPS of each."""
    _, truth = exact_topk(held, base, K, index.metric)
    ts = exact_scores_of(held, base, truth, index.metric)
    cache: dict[QueryParams, float] = {}

    def recall(p: QueryParams) -> float:
        if p not in cache:
            _, rows = index.search(held, K, params=p, rerank=base)
            cache[p] = float(tie_recall(rows, truth, ts, K,
                                        exact_scores_of(held, base, rows, index.metric)).mean())
        return cache[p]

    out = []
    plane = search_plane(index.knob, index.refines, K)
    for target, chosen in zip(table.targets, table.params, strict=True):
        front = []
        for row in plane:
            if recall(row[-1]) < target:
                continue
            lo, hi = 0, len(row) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if recall(row[mid]) >= target else (mid + 1, hi)
            front.append(row[lo])
        secs = _seconds(index, held, base, list(dict.fromkeys([chosen, *front])))
        best = min(front, key=secs.__getitem__)
        out.append({"target": target, "chosen": chosen, "chosen_recall": recall(chosen),
                    "chosen_qps": 1 / secs[chosen], "best": best, "best_recall": recall(best),
                    "best_qps": 1 / secs[best]})
    return out


@pytest.mark.skipif(not (DATA / "base_f16.npy").exists(),
                    reason="needs ../shared/data/debian-minilm")
def test_held_out_targets_are_met_at_near_best_speed() -> None:
    base = np.load(DATA / "base_f16.npy", mmap_mode="r")[:20_000].astype(np.float32)
    queries = np.load(DATA / "queries_f16.npy").astype(np.float32)
    spec = parse_index("HNSW32,SQ8,Refine")
    index = build_index(base, spec, "cosine")
    table = calibrate(index, base, queries=queries[:300], k=K)
    assert table.queries == 300 and len(table.seconds) == len(table.lower) == 3
    for t, r, lo in zip(table.targets, table.recalls, table.lower, strict=True):
        assert r >= t and lo >= t - FLOOR  # the rule a chosen point meets
    assert load_index(spec, index.to_arrays(), "cosine").calibration == table
    for row in held_out_report(index, base, queries[1000:1600], table):
        assert row["chosen_recall"] >= row["target"] - FLOOR, row
        assert row["chosen_qps"] >= SPEED * row["best_qps"], row
