"""Hybrid search: each fusion against a reference written from its definition, over random
lists and through ``Collection.search`` with a dict query (dense + BM25 + sparse, filtered,
batched); the explain view; typed refusals."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec as pv
from polyvec.engine.fusion import check_weights, fuse
from polyvec.errors import InvalidArgument, UnknownField


def _reference(lists: dict[str, tuple[list[Any], list[float]]], fusion: str,
               weights: dict[str, float]) -> dict[Any, float]:
    """Every item's fused score, straight from the definitions."""
    out: dict[Any, float] = {}
    for f, (ids, scores) in lists.items():
        if fusion == "rrf":
            parts = [weights[f] / (60 + r) for r in range(1, len(ids) + 1)]
        elif fusion == "weighted":
            lo, hi = min(scores), max(scores)
            total = sum(weights.values())
            parts = [weights[f] / total * ((s - lo) / (hi - lo) if hi > lo else 1.0)
                     for s in scores]
        else:
            mu, sd = statistics.fmean(scores), statistics.pstdev(scores)
            parts = [weights[f] * (min(1.0, max(0.0, (s - mu + 3 * sd) / (6 * sd))) if sd else
                                   0.5) for s in scores]
        for i, p in zip(ids, parts, strict=True):
            out[i] = out.get(i, 0.0) + p
    return out


@pytest.mark.parametrize("fusion", ["rrf", "weighted", "dbsf"])
def test_each_fusion_equals_its_reference(fusion: str) -> None:
    rng = np.random.default_rng(0)
    for trial in range(50):
        lists = {}
        for f in ("a", "b", "c")[:1 + trial % 3]:
            n = int(rng.integers(1, 40))
            ids = rng.choice(60, n, replace=False).tolist()
            scores = sorted(rng.normal(size=n).tolist(), reverse=True)
            if trial % 7 == 0:
                scores = [1.0] * n  # all equal: the degenerate normalisations
            lists[f] = (ids, scores)
        weights = {f: float(rng.uniform(0.1, 2)) for f in lists}
        w = check_weights(fusion, weights, list(lists))
        got_ids, got_scores, explain = fuse(lists, 10, fusion, w)
        want = _reference(lists, fusion, weights)
        np.testing.assert_allclose(got_scores, sorted(want.values(), reverse=True)[:10],
                                   rtol=1e-9)
        assert all(abs(want[i] - s) < 1e-9 for i, s in zip(got_ids, got_scores, strict=True))
        for i, e in zip(got_ids, explain, strict=True):
            for f, where in e.items():
                ids, scores = lists[f]
                assert ids[where["rank"] - 1] == i and scores[where["rank"] - 1] == where["score"]


@pytest.fixture()
def coll(tmp_path: Path) -> Any:
    rng = np.random.default_rng(1)
    db = pv.connect(tmp_path / "db")
    c = db.create_collection("h", {"dense": pv.Dense(8), "text": pv.BM25(),
                                   "sparse": pv.Sparse(50)}, indexed=["g"])
    words = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date"]
    n = 300
    c.add(list(range(n)), {
        "dense": rng.standard_normal((n, 8)).astype(np.float32),
        "text": [" ".join(rng.choice(words, 5)) for _ in range(n)],
        "sparse": [{int(j): float(rng.random()) for j in rng.choice(50, 4, replace=False)}
                   for _ in range(n)]}, [{"g": i % 3} for i in range(n)])
    yield c
    db.close()


@pytest.mark.parametrize("fusion", ["rrf", "weighted", "dbsf"])
def test_hybrid_search_fuses_each_fields_own_search(coll: Any, fusion: str) -> None:
    rng = np.random.default_rng(2)
    q = {"dense": rng.standard_normal(8).astype(np.float32), "text": "plum fig",
         "sparse": {3: 1.0, 7: 0.5, 11: 2.0}}
    weights = {"dense": 0.5, "text": 2.0}
    for flt in (None, {"g": 1}):
        got = coll.search(q, 10, fusion=fusion, weights=weights, filter=flt)
        lists = {}
        for f, fq in q.items():
            r = coll.search(fq, 100, field=f, filter=flt)
            keep = [i for i in r.ids if i is not None]
            lists[f] = (keep, r.scores[:len(keep)].astype(np.float64).tolist())
        want = _reference(lists, fusion, {"dense": 0.5, "text": 2.0, "sparse": 1.0})
        np.testing.assert_allclose(got.scores, sorted(want.values(), reverse=True)[:10],
                                   rtol=1e-6)
        assert all(abs(want[i] - s) < 1e-6 for i, s in zip(got.ids, got.scores, strict=True))
        if flt:
            assert all(i % 3 == 1 for i in got.ids)
        info = got.info
        assert info["strategy"] == "hybrid" and info["fusion"] == fusion
        assert set(info["retrievers"]) == set(q) and len(info["hits"]) == 10
        assert all(set(h) <= set(q) for h in info["hits"])


def test_batches_and_refusals(coll: Any) -> None:
    rng = np.random.default_rng(3)
    batch = coll.search({"dense": rng.standard_normal((2, 8)).astype(np.float32),
                         "text": ["apple", "kiwi lime"]}, 5)
    assert batch.ids.shape == (2, 5) and len(batch.info["hits"]) == 2
    one = coll.search({"dense": rng.standard_normal(8).astype(np.float32)}, 3)
    assert one.ids.shape == (3,)  # one field: its own ranking, fused scores
    for kwargs, error, match in [
        ({"fusion": "max"}, InvalidArgument, "fusion: expected one of"),
        ({"weights": {"nope": 1.0}}, InvalidArgument, r"fields \['nope'\]"),
        ({"weights": {"text": -1}}, InvalidArgument, ">= 0"),
        ({"weights": {"text": 0, "dense": 0}}, InvalidArgument, "at least one"),
        ({"ef": 10}, InvalidArgument, r"\['ef'\] apply to one field"),
    ]:
        with pytest.raises(error, match=match):
            coll.search({"text": "apple", "dense": np.ones(8, np.float32)}, 3, **kwargs)
    with pytest.raises(UnknownField):
        coll.search({"text": "apple", "title": "x"}, 3)
    with pytest.raises(InvalidArgument, match="batches of one size"):
        coll.search({"text": ["a", "b"], "dense": np.ones(8, np.float32)}, 3)
    with pytest.raises(InvalidArgument, match="hybrid query"):
        coll.search("apple", 3, field="text", fusion="rrf")


def test_fit_fusion_finds_the_field_that_ranks_the_answers(coll: Any) -> None:
    """The dense query of each item is its own vector (a perfect ranking); the text query is
    noise: the fitted weights lean on dense, and the grid holds the fusion's own scores."""
    rng = np.random.default_rng(4)
    items = [int(i) for i in rng.choice(300, 12, replace=False)]
    got = coll.get(items)
    queries = [{"dense": it.vectors["dense"], "text": "apple pear"} for it in got]
    fit = coll.fit_fusion(queries, items, step=0.25)
    assert fit["weights"]["dense"] >= 0.75 and fit["ndcg@10"] == 1.0
    assert len(fit["grid"]) == 5 and fit["queries"] == 12
    text_only = next(e for e in fit["grid"] if e["weights"] == {"dense": 0.0, "text": 1.0})
    assert text_only["ndcg@10"] < 0.5
    rrf = coll.fit_fusion(queries, [{i: 2} for i in items], fusion="rrf", step=0.5)
    assert rrf["fusion"] == "rrf" and rrf["weights"]["dense"] >= 0.5
    for args, kwargs, match in [
        ((queries, items[:3]), {}, "of one length"),
        (([], []), {}, "of one length"),
        ((queries, items), {"step": 0.3}, "1/n"),
        ((queries, items), {"fusion": "max"}, "fusion: expected"),
        (([queries[0], {"text": "x"}], items[:2]), {}, r"queries\[1\]: expected the fields"),
        ((queries[:1], [3.5]), {}, "qrels: expected an id"),
    ]:
        with pytest.raises(InvalidArgument, match=match):
            coll.fit_fusion(*args, **kwargs)


def test_texts_fill_bm25_fields_and_search_text_fuses(tmp_path: Path) -> None:
    """add_texts gives a BM25 field the texts and a dense field their embeddings; search_text
    over several fields is the hybrid search of the text and its embedding."""
    from conftest import extra

    extra("models", "sentence_transformers")
    from polyvec.embed import minilm
    from polyvec.eval.datasets import load_python_faq

    ds = load_python_faq()
    emb = minilm()
    db = pv.connect(tmp_path / "db")
    c = db.create_collection("faq", {"dense": pv.Dense(384), "text": pv.BM25()},
                             embedders={"dense": emb})
    docs = ds.corpus[:60]
    c.add_texts([d["text"] for d in docs], [d["id"] for d in docs])
    q = ds.queries[3]["text"]
    got = c.search_text(q, 5, fields=["dense", "text"], fusion="rrf")
    want = c.search({"dense": emb.embed_queries([q])[0], "text": q}, 5, fusion="rrf")
    assert got.ids.tolist() == want.ids.tolist()
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    assert c.search_text(q, 3, field="text").ids.tolist() == c.search(q, 3, field="text"
                                                                      ).ids.tolist()
    batch = c.search_text([q, ds.queries[4]["text"]], 2, fields=["dense", "text"])
    assert batch.ids.shape == (2, 2)
    with pytest.raises(InvalidArgument, match="no embedder or model"):
        c.search_text(q, 3, field="text", embedder=emb)
    with pytest.raises(InvalidArgument, match="apply to a hybrid search"):
        c.search_text(q, 3, field="dense", fusion="rrf")
    db.close()
