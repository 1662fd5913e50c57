"""The merge planners (pure functions): invariants over many random layouts, and the cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyvec.engine.merge import (
    MergePolicy,
    SegmentStat,
    plan_compaction,
    plan_force,
    plan_merges,
)
from polyvec.errors import InvalidArgument


def S(rows: int, dead: int = 0) -> SegmentStat:
    return SegmentStat(rows, dead)


def _check_groups(groups: list[tuple[int, ...]], n: int) -> None:
    """Disjoint runs of consecutive positions, in order."""
    seen: set[int] = set()
    last = -1
    for g in groups:
        assert g, groups
        assert list(g) == list(range(g[0], g[0] + len(g))), groups
        assert g[0] > last, groups
        assert not seen & set(g)
        seen |= set(g)
        last = g[-1]
    assert all(0 <= j < n for j in seen)


def _random_layout(rng: np.random.Generator) -> list[SegmentStat]:
    n = int(rng.integers(0, 40))
    rows = rng.choice([1, 5, 50, 100, 500, 1000, 5000, 20_000], size=n)
    dead = [int(rng.integers(0, r + 1)) if rng.random() < 0.3 else 0 for r in rows]
    return [S(int(r), d) for r, d in zip(rows, dead, strict=True)]


@pytest.mark.parametrize("seed", range(300))
def test_every_plan_is_disjoint_consecutive_runs_within_the_cap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    stats = _random_layout(rng)
    policy = MergePolicy(merge_factor=int(rng.integers(2, 12)),
                         max_segment_rows=int(rng.choice([100, 2_000, 50_000, 2_000_000])),
                         max_dead_ratio=float(rng.choice([0.0, 0.3, 1.0])))
    floor = int(rng.choice([1, 50, 1000]))
    heavy = {j for j, s in enumerate(stats)
             if s.dead and (s.live == 0 or s.dead > policy.max_dead_ratio * s.rows)}
    for groups in (plan_merges(stats, policy, floor_rows=floor), plan_force(stats, policy)):
        _check_groups(groups, len(stats))
        for g in groups:
            if len(g) > 1:  # a merge never passes the cap; a lone rewrite only drops rows
                assert sum(stats[j].live for j in g) <= policy.max_segment_rows
            else:
                assert g[0] in heavy, (g, stats[g[0]])
    merges = plan_merges(stats, policy, floor_rows=floor)
    for g in merges:
        if len(g) > 1:
            assert len(g) <= policy.merge_factor
            assert all(stats[j].live <= policy.max_segment_rows / 2 for j in g)
    # every tombstone-heavy segment is rewritten after a seal
    assert heavy <= {j for g in merges for j in g}
    comp = plan_compaction(stats, policy, floor_rows=floor)
    _check_groups(comp, len(stats))
    for g in comp:
        assert len(g) > 1 or stats[g[0]].dead > 0
    # compaction removes every tombstone (default min_dead_ratio 0)
    assert {j for j, s in enumerate(stats) if s.dead} <= {j for g in comp for j in g}


def test_tiers_merge_at_merge_factor() -> None:
    p = MergePolicy(merge_factor=10)
    assert plan_merges([S(100)] * 9, p, floor_rows=100) == []
    assert plan_merges([S(100)] * 10, p, floor_rows=100) == [tuple(range(10))]
    assert plan_merges([S(100)] * 25, p, floor_rows=100) == [tuple(range(10)),
                                                              tuple(range(10, 20))]
    # an older, bigger tier is left alone; the small tier after it merges
    assert plan_merges([S(1000)] + [S(100)] * 10, p, floor_rows=100) == [tuple(range(1, 11))]
    assert plan_merges([S(1000)] * 3 + [S(100)] * 9, p, floor_rows=100) == []


def test_small_segments_count_as_the_floor_and_fold_into_the_lowest_tier() -> None:
    p = MergePolicy(merge_factor=4)
    stats = [S(100), S(100), S(3), S(1)]
    assert plan_merges(stats, p, floor_rows=100) == [(0, 1, 2, 3)]
    assert plan_merges(stats, p, floor_rows=1) == []  # without a floor: tiers 2 and 0
    assert plan_merges(stats, MergePolicy(merge_factor=4, floor_rows=100)) == [(0, 1, 2, 3)]


def test_the_cap_takes_a_prefix_and_big_segments_never_merge() -> None:
    p = MergePolicy(merge_factor=10, max_segment_rows=2_000)
    # ten segments of 500 live rows: only four fit under the cap
    assert plan_merges([S(500)] * 10, p, floor_rows=500) == [(0, 1, 2, 3)]
    # more than half the cap: ineligible, and it breaks the window
    assert plan_merges([S(1500)] + [S(10)] * 9, p, floor_rows=10) == []
    assert plan_merges([S(1500)] * 12, p, floor_rows=10) == []


def test_tombstone_heavy_and_empty_segments_are_rewritten() -> None:
    p = MergePolicy(max_dead_ratio=0.3)
    assert plan_merges([S(1000, 300), S(1000, 301)], p, floor_rows=10) == [(1,)]
    assert plan_merges([S(1000, 1000)], p, floor_rows=10) == [(0,)]
    assert plan_merges([S(1000, 1000)], MergePolicy(max_dead_ratio=1.0), floor_rows=10) == [(0,)]


def test_force_packs_the_fewest_segments_under_the_cap() -> None:
    p = MergePolicy(max_segment_rows=2_000_000)
    # the acceptance layout: 1,000,000 rows sealed as 20 x 50,000 -> one segment
    assert plan_force([S(50_000)] * 20, p) == [tuple(range(20))]
    assert plan_force([S(500_000)] * 2 + [S(50_000)] * 5, p) == [tuple(range(7))]
    small = MergePolicy(max_segment_rows=100)
    assert plan_force([S(60), S(60), S(30), S(100), S(100, 50)], small) == [(1, 2), (4,)]
    assert plan_force([S(10)], p) == []
    assert plan_force([], p) == []


def test_compaction_picks_dead_and_small_segments() -> None:
    p = MergePolicy()
    stats = [S(1000), S(1000, 100), S(1000, 5), S(1000), S(10), S(20), S(1000)]
    assert plan_compaction(stats, p, floor_rows=100) == [(1, 2), (4, 5)]
    # a threshold: only segments with more than 5% dead
    assert plan_compaction(stats, p, floor_rows=100, min_dead_ratio=0.05) == [(1,), (4, 5)]
    # a lone small clean segment stays
    assert plan_compaction([S(1000), S(10), S(1000)], p, floor_rows=100) == []


def test_simulated_growth_keeps_few_segments() -> None:
    """Seal 50,000-row segments one at a time, applying each plan: the segment count stays
    at most (merge_factor - 1) per tier, and a force merge leaves one segment per cap."""
    p = MergePolicy()
    segs: list[int] = []
    for _ in range(200):  # 10,000,000 rows
        segs.append(50_000)
        while groups := plan_merges([S(r) for r in segs], p, floor_rows=50_000):
            for g in reversed(groups):
                segs[g[0]:g[-1] + 1] = [sum(segs[j] for j in g)]
        assert len(segs) <= 2 * (p.merge_factor - 1) + math.ceil(sum(segs) / 2_000_000)
    assert sum(segs) == 10_000_000
    for g in reversed(plan_force([S(r) for r in segs], p)):
        segs[g[0]:g[-1] + 1] = [sum(segs[j] for j in g)]
    assert len(segs) <= 2 * math.ceil(sum(segs) / p.max_segment_rows)


@pytest.mark.parametrize("kw", [{"merge_factor": 1}, {"merge_factor": True},
                                {"max_segment_rows": 0}, {"floor_rows": 0},
                                {"max_dead_ratio": 1.5}, {"max_dead_ratio": "0.3"}])
def test_bad_policies_raise(kw: dict) -> None:
    with pytest.raises(InvalidArgument):
        MergePolicy(**kw)
