"""LID (Levina–Bickel MLE): hand-computed case, known manifolds, a naive reference, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyvec.errors import InvalidArgument
from polyvec.eval import lid as lid_mod
from polyvec.eval.lid import lid_mle, lid_summary, sample_indices


def subspace(d: int, n: int, seed: int, ambient: int = 384, uniform: bool = False) -> np.ndarray:
    """n points on a random d-dimensional linear subspace of R^ambient (orthonormal basis)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, d)))
    coef = rng.uniform(-1, 1, (n, d)) if uniform else rng.standard_normal((n, d))
    return (coef @ basis.T).astype(np.float32)


def naive_lid(data: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The formula read straight off ALGORITHMS.md, with distances by explicit differences."""
    out = []
    for i in rows:
        r = np.sqrt(((data.astype(np.float64) - data[i]) ** 2).sum(axis=1))
        r = np.sort(np.delete(r, i))[:k]
        out.append(-1.0 / np.mean(np.log(r / r[-1])))
    return np.array(out)


def test_hand_computed_single_point():
    # query at 0 on a line; neighbours at distances r1=1, r2=2 (k=2):
    # (1/2)(ln(1/2) + ln(2/2)) = -ln(2)/2  ->  LID = 2/ln(2) = 2.885390
    data = np.array([[1.0], [-2.0], [10.0]])
    lid = lid_mle(data, k=2, queries=np.array([[0.0]]))
    assert lid == pytest.approx([2 / math.log(2)])


@pytest.mark.parametrize(("dim", "lo", "hi"), [(5, 4.0, 6.5), (2, 1.5, 2.6)])
@pytest.mark.parametrize("uniform", [False, True])
def test_linear_subspace_in_384d(dim, lo, hi, uniform):
    data = subspace(dim, 3000, seed=1, uniform=uniform)
    med = lid_summary(lid_mle(data, k=20, sample=300, seed=0))["median"]
    assert lo <= med <= hi


def test_full_rank_gaussian_is_much_larger():
    rng = np.random.default_rng(2)
    full = lid_summary(lid_mle(rng.standard_normal((2000, 384)), k=20, sample=200))["median"]
    low = lid_summary(lid_mle(subspace(5, 2000, seed=2), k=20, sample=200))["median"]
    assert full > 30  # far above 5 (below 384: the MLE saturates at this sample size)
    assert full > 5 * low


def test_matches_naive_reference():
    data = subspace(3, 300, seed=3, ambient=16)
    rows = sample_indices(300, 40, seed=5)
    got = lid_mle(data, k=10, sample=40, seed=5)
    np.testing.assert_allclose(got, naive_lid(data, rows, 10), rtol=1e-6)


def test_blocked_search_matches_one_block(monkeypatch):
    data = subspace(4, 500, seed=4, ambient=32)
    whole = lid_mle(data, k=15, sample=100)
    monkeypatch.setattr(lid_mod, "_BLOCK_ELEMS", 97)  # many small query and data blocks
    np.testing.assert_allclose(lid_mle(data, k=15, sample=100), whole, rtol=1e-10)


def test_deterministic_with_seed():
    data = subspace(5, 1500, seed=6)
    a = lid_mle(data, sample=100, seed=7)
    np.testing.assert_array_equal(a, lid_mle(data, sample=100, seed=7))
    assert not np.array_equal(a, lid_mle(data, sample=100, seed=8))
    np.testing.assert_array_equal(sample_indices(1500, 100, 7), sample_indices(1500, 100, 7))
    assert len(lid_mle(data, k=5, sample=None)) == 1500


def test_duplicates_and_self_are_excluded():
    data = subspace(3, 400, seed=8, ambient=16)
    doubled = np.vstack([data, data])  # every point has an exact copy
    lid = lid_mle(doubled, k=10, sample=100)
    # a copy at distance 0 would give ln(0) and LID 0; excluded, every value is finite and sane
    assert np.isfinite(lid).all()
    assert 1.5 < np.median(lid) < 5


def test_queries_equal_to_data_rows_match_the_sample():
    data = subspace(4, 600, seed=9, ambient=24)
    rows = sample_indices(600, 50, seed=1)
    np.testing.assert_allclose(
        lid_mle(data, queries=data[rows], k=12),
        lid_mle(data, k=12, sample=50, seed=1),
        rtol=1e-9,
    )


def test_cosine_ignores_norms_and_l2_ignores_translation():
    data = subspace(5, 800, seed=10, ambient=32).astype(np.float64)
    scale = np.random.default_rng(0).uniform(0.1, 10, (800, 1))
    np.testing.assert_allclose(
        lid_mle(data * scale, metric="cosine", sample=50),
        lid_mle(data, metric="cosine", sample=50),
        rtol=1e-6,
    )
    np.testing.assert_allclose(lid_mle(data + 1e4, sample=50), lid_mle(data, sample=50), rtol=1e-6)


def test_too_few_distinct_neighbours_is_nan():
    data = np.vstack([np.zeros((5, 3)), np.eye(3)])  # 5 copies of the origin + 3 others
    lid = lid_mle(data, k=4, queries=np.zeros((1, 3)))  # only 3 non-duplicate rows
    assert np.isnan(lid).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 1}, "k"),
        ({"k": 50}, "more than k"),
        ({"metric": "dot"}, "metric"),
        ({"sample": 0}, "sample"),
        ({"queries": np.zeros((2, 3))}, "columns"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    data = np.random.default_rng(0).standard_normal((50, 4))
    with pytest.raises(InvalidArgument, match=match):
        lid_mle(data, **kwargs)


def test_rejects_bad_data():
    with pytest.raises(InvalidArgument, match="2-D"):
        lid_mle(np.zeros(10))
    with pytest.raises(InvalidArgument, match="finite"):
        lid_mle(np.full((30, 2), np.nan))
    with pytest.raises(InvalidArgument, match="non-zero"):
        lid_mle(np.zeros((30, 2)), metric="cosine")


def test_summary():
    # 10th percentile of [1, 2, 3] (linear interpolation) = 1 + 0.1 * 2 = 1.2; 90th = 2.8
    assert lid_summary([3.0, 1.0, 2.0, float("nan")]) == pytest.approx(
        {"mean": 2.0, "median": 2.0, "p10": 1.2, "p90": 2.8, "n": 3}
    )
    empty = lid_summary(np.array([np.nan]))
    assert empty["n"] == 0 and math.isnan(empty["median"])
