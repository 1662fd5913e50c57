"""Relevance thresholds: the isotonic fit against scikit-learn's, Platt's curve on data drawn
from a known one, and ``calibrate_relevance`` / ``min_relevance`` / ``min_score`` through a
collection (kept across reopening), with typed refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec as pv
from polyvec.engine.relevance import fit, probabilities
from polyvec.errors import InvalidArgument


def test_isotonic_equals_scikit_learns() -> None:
    from conftest import extra

    extra("models", "sklearn")  # (scikit-learn comes with sentence-transformers)
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    s = rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-2 * s))).astype(float)
    model = fit(s, y, "isotonic")
    ref = IsotonicRegression(out_of_bounds="clip").fit(s, y)
    grid = np.linspace(-3, 3, 101)
    np.testing.assert_allclose(probabilities(model, grid), ref.predict(grid), atol=1e-9)
    assert (np.diff(probabilities(model, grid)) >= 0).all()
    assert probabilities(model, np.array([-np.inf]))[0] == 0.0  # an empty slot


def test_platt_recovers_a_known_curve() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(-4, 6, 20_000)
    y = (rng.random(len(s)) < 1 / (1 + np.exp(-(1.5 * s - 3.0)))).astype(float)
    model = fit(s, y, "platt")
    assert model["a"] == pytest.approx(1.5, rel=0.06) and model["b"] == pytest.approx(-3.0,
                                                                                     rel=0.06)
    with pytest.raises(InvalidArgument, match="method"):
        fit(s, y, "logistic")


def test_calibrated_cuts_through_a_collection(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    db = pv.connect(tmp_path / "db")
    c = db.create_collection("r", {"v": pv.Dense(16)})
    x = rng.standard_normal((400, 16)).astype(np.float32)
    c.add(list(range(400)), {"v": x})
    # each query is a noisy copy of one item: that item is the one relevant hit
    targets = rng.choice(400, 120, replace=False)
    queries = x[targets] + rng.normal(scale=0.6, size=(120, 16)).astype(np.float32)
    report = c.calibrate_relevance(list(queries[:80]), [int(t) for t in targets[:80]], k=5)
    assert report["field"] == "v" and report["pairs"] == 400 and report["relevant"] > 40
    kept = relevant = 0
    for q, t in zip(queries[80:], targets[80:], strict=True):
        res = c.search(q, 5, min_relevance=0.5)
        ids = [i for i in res.ids if i is not None]
        assert all(p >= 0.5 for p in res.info["relevance"][:len(ids)])
        kept += len(ids)
        relevant += int(t) in ids
    assert kept and relevant / kept > 0.8  # the cut keeps mostly the relevant hit
    full = c.search(queries[80], 5)
    cut = c.search(queries[80], 5, min_score=float(full.scores[1]))
    assert cut.ids.tolist() == full.ids[:2].tolist() + [None] * 3
    c.close()
    db.close()
    db = pv.connect(tmp_path / "db")  # the calibration is kept in the catalog
    again = db.get_collection("r")
    assert again.search(queries[100], 5, min_relevance=0.5).info["relevance"]
    for kwargs, match in [({"min_relevance": 1.5}, r"\[0, 1\]"), ({"min_score": "x"}, "number")]:
        with pytest.raises(InvalidArgument, match=match):
            again.search(queries[0], 5, **kwargs)
    with pytest.raises(InvalidArgument, match="only"):  # k=1 of exact copies: all relevant
        again.calibrate_relevance(list(x[:5]), list(range(5)), k=1)
    with pytest.raises(InvalidArgument, match="of one length"):
        again.calibrate_relevance(list(x[:5]), [1], k=1)
    db.close()


def test_min_score_per_field_in_a_hybrid_query(tmp_path: Path) -> None:
    db = pv.connect(tmp_path / "db")
    c = db.create_collection("h", {"text": pv.BM25(), "v": pv.Dense(2)})
    c.add([1, 2, 3], {"text": ["red apple", "red red car", "blue sky"],
                      "v": np.array([[1, 0], [0, 1], [1, 1]], np.float32)})
    q: dict[str, Any] = {"text": "red", "v": np.array([1, 0], np.float32)}
    both = c.search(q, 3)
    assert set(both.ids) == {1, 2, 3}
    strict = c.search(q, 3, min_score={"v": 0.9})  # v keeps item 1 only; text keeps 1, 2
    assert set(i for i in strict.ids if i is not None) == {1, 2}
    with pytest.raises(InvalidArgument, match="dict of some of its fields"):
        c.search(q, 3, min_score=0.5)
    with pytest.raises(InvalidArgument, match="min_relevance applies to one field"):
        c.search(q, 3, min_relevance=0.5)
    with pytest.raises(InvalidArgument, match="no relevance calibration"):
        c.search("red", 3, field="text", min_relevance=0.5)
    db.close()


def test_ranked_calibration_reads_a_hit_by_its_place_in_the_list() -> None:
    """Queries whose scores sit at unrelated heights (BM25's grow with the query's terms), and
    whose top hit is relevant 80% of the time, the others 2%: a curve on raw scores cannot
    tell the top hit apart, the ranked features (score, gap to the top, 1/rank) can."""
    rng = np.random.default_rng(5)

    def draw(nq: int) -> tuple[np.ndarray, np.ndarray]:
        s = rng.uniform(0, 10, (nq, 1)) - np.sort(rng.exponential(0.3, (nq, 10)), axis=1)
        y = np.zeros(s.shape, bool)
        y[:, 0] = rng.random(nq) < 0.8
        y[:, 1:] = rng.random((nq, 9)) < 0.02
        return s, y

    train, test = draw(600), draw(600)
    for method, floor in (("ranked", 0.9), ("isotonic", None)):
        model = fit(*train, method)
        keep = probabilities(model, test[0]) >= 0.5
        recall = (keep & test[1]).sum() / test[1].sum()
        if floor is not None:
            assert recall >= floor * 0.8 / (0.8 + 9 * 0.02)  # (the top hits' share)
            assert (keep & test[1]).sum() / keep.sum() >= 0.7
            assert keep[:, 0].mean() > 0.9 and keep[:, 1:].mean() < 0.05
        else:
            assert recall < 0.5  # raw scores: the top hits are not told apart
    empty = np.full((1, 10), -np.inf)
    assert (probabilities(fit(*train, "ranked"), empty) == 0).all()
