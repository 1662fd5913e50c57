"""The pruned sparse kernel (block-max MaxScore, numba) against its numpy twin and the CSR
reference: the same top k, scores bit for bit, over BM25 and dot-product scoring, masks,
a running bar (``theta``), ties, blocks and windows, and negative weights (no pruning)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from polyvec._kernels.sparse import BLOCK, WINDOW, Postings, Scoring, sparse_scores

pytest.importorskip("numba", reason="the pruned kernel needs numba (installed with polyvec)")


def _corpus(rng: np.random.Generator, n: int, vocab: int, *, ints: bool
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR rows with Zipf-like term frequencies (a few long lists, many short ones)."""
    weights = 1.0 / np.arange(1, vocab + 1) ** 0.9
    weights /= weights.sum()
    indptr, indices, values = [0], [], []
    lengths = rng.integers(1, 60, n).astype(np.int32)
    for _ in range(n):
        terms = np.unique(rng.choice(vocab, size=int(rng.integers(0, 12)), p=weights))
        indices.append(terms.astype(np.uint32))
        vals = rng.integers(1, 5, len(terms)) if ints else rng.random(len(terms)) * 3
        values.append(vals.astype(np.float32))
        indptr.append(indptr[-1] + len(terms))
    return (np.array(indptr, np.int64), np.concatenate(indices), np.concatenate(values),
            lengths)


def _reference(q_idx: np.ndarray, q_val: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
               values: np.ndarray, lengths: np.ndarray, scoring: Scoring
               ) -> tuple[np.ndarray, np.ndarray]:
    vals = values
    if scoring.bm25:
        row = np.repeat(np.arange(len(lengths)), np.diff(indptr))
        vals = values / (values + scoring.norms(lengths)[row])
    return sparse_scores(q_idx, q_val, indptr, indices, vals)


def _top(scores: np.ndarray, keep: np.ndarray, k: int, theta: float
         ) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(keep & (scores > theta))
    best = rows[np.lexsort((rows, -scores[rows]))[:k]]
    return scores[best], best


@pytest.mark.parametrize("bm25", [False, True])
@pytest.mark.parametrize("ints", [False, True])  # integer values: many tied scores
def test_pruned_top_k_equals_exhaustive(bm25: bool, ints: bool) -> None:
    rng = np.random.default_rng(3 + bm25 + 2 * ints)
    n = 2 * WINDOW + 700  # several windows; the common terms' lists span many blocks
    indptr, indices, values, lengths = _corpus(rng, n, 400, ints=ints)
    post = Postings(Postings.build(indptr, indices, values, lengths if bm25 else None), n,
                    lengths)
    assert int(np.diff(post.starts).max()) > 4 * BLOCK
    scoring = Scoring(bm25=True, k1=0.9, b=0.4, avgdl=float(lengths.mean())) if bm25 else \
        Scoring()
    visited = matched = 0
    for trial in range(60):
        m = int(rng.integers(1, 9))
        q_idx = np.unique(rng.choice(400 + 20, m)).astype(np.uint32)  # (some unseen terms)
        q_val = (rng.integers(1, 4, len(q_idx)) if ints else
                 rng.random(len(q_idx)) * 2).astype(np.float32)
        k = int(rng.choice([1, 5, 10, 100]))
        mask = rng.random(n) < 0.7 if trial % 3 == 1 else None
        ref, hit = _reference(q_idx, q_val, indptr, indices, values, lengths, scoring)
        keep = hit if mask is None else hit & mask
        theta = -math.inf
        if trial % 4 == 2 and keep.sum() > 2 * k:  # a bar from an earlier block
            theta = float(np.sort(ref[keep])[-2 * k])
        want_s, want_r = _top(ref, keep, k, theta)
        s, r, v = post.top(q_idx, q_val, k, scoring, mask=mask, theta=theta, backend="numba")
        np.testing.assert_array_equal(r, want_r)
        np.testing.assert_array_equal(s, want_s)  # bit for bit: the reference's sums
        s2, r2, _ = post.top(q_idx, q_val, k, scoring, mask=mask, theta=theta,
                             backend="numpy")
        np.testing.assert_array_equal(r2, want_r)
        np.testing.assert_array_equal(s2, want_s)
        visited += v
        matched += int(keep.sum())
    assert visited < 0.9 * matched  # the pruning skips rows: this test fails without it


def test_negative_values_and_weights_are_scored_without_pruning() -> None:
    rng = np.random.default_rng(9)
    n = WINDOW + 300
    indptr, indices, values, lengths = _corpus(rng, n, 200, ints=False)
    values = values - 1.5  # (dot products of signed weights: no bound holds)
    post = Postings(Postings.build(indptr, indices, values), n)
    assert not post.nonneg
    for _ in range(20):
        q_idx = np.unique(rng.choice(200, 5)).astype(np.uint32)
        q_val = (rng.random(len(q_idx)) * 2 - 1).astype(np.float32)
        ref, hit = sparse_scores(q_idx, q_val, indptr, indices, values)
        want_s, want_r = _top(ref, hit, 10, -math.inf)
        s, r, v = post.top(q_idx, q_val, 10, backend="numba")
        np.testing.assert_array_equal(r, want_r)
        np.testing.assert_array_equal(s, want_s)
        assert v == int(hit.sum())  # every matched row scored


def test_empty_inputs() -> None:
    post = Postings(Postings.build(np.zeros(4, np.int64), np.zeros(0, np.uint32),
                                   np.zeros(0, np.float32)), 3)
    for backend in ("numba", "numpy"):
        s, r, v = post.top(np.array([1, 2], np.uint32), np.ones(2, np.float32), 5,
                           backend=backend)
        assert len(s) == len(r) == v == 0
    one = Postings(Postings.build(np.array([0, 1]), np.array([7], np.uint32),
                                  np.array([2.0], np.float32)), 1)
    s, r, _ = one.top(np.zeros(0, np.uint32), np.zeros(0, np.float32), 5, backend="numba")
    assert len(s) == 0
    s, r, _ = one.top(np.array([7], np.uint32), np.array([0.5], np.float32), 5,
                      backend="numba")
    assert r.tolist() == [0] and s.tolist() == [1.0]


def test_segments_store_their_inverted_lists(tmp_path: Any) -> None:
    """Sealing and merging write the postings beside the rows (memory-mapped on open)."""
    import polyvec as pv

    rng = np.random.default_rng(4)
    coll = pv.connect(tmp_path).create_collection("c", {"w": pv.Sparse(500),
                                                        "t": pv.BM25()})
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    for lo in (0, 300):
        n = 300
        rows = [(np.unique(rng.choice(500, 6)), rng.random(6).astype(np.float32))
                for _ in range(n)]
        rows = [(i, v[:len(i)]) for i, v in rows]
        texts = [" ".join(rng.choice(words, 5)) for _ in range(n)]
        coll.add(list(range(lo, lo + n)), {"w": rows, "t": texts})
        coll.flush()
    coll.wait_for_maintenance()
    before = coll.search("alpha omega", 5, field="t")
    coll.compact()
    for seg in (tmp_path / "c" / "segments").iterdir():
        names = {f.name for f in seg.iterdir()}
        assert {"w.post_rows.npy", "w.post_blk_max.npy", "t.post_rows.npy",
                "t.post_blk_minlen.npy"} <= names
    after = coll.search("alpha omega", 5, field="t")
    np.testing.assert_allclose(after.scores, before.scores, rtol=1e-6)
    coll.close()


def test_bm25_impacts_of_the_debian_corpus_as_a_sparse_field(tmp_path: Any) -> None:
    """Real sparse vectors: each Debian description's BM25 impacts (idf times the saturated,
    length-normalised count of each of its terms, from the whole set's statistics) in a
    Sparse field. A query of term counts then scores each item exactly as the BM25 field
    does, searched through sealed segments' inverted lists (pruned) and the growing rows; in
    u8 (255 steps of the largest impact) the top 10 are mostly kept."""
    import itertools
    import json

    from conftest import shared_data

    import polyvec as pv
    from polyvec.lexical import Analyzer, term_ids

    folder = shared_data("debian-minilm", "docs.jsonl", "queries.jsonl")
    with open(folder / "docs.jsonl") as f:
        texts = [json.loads(line)["description"] for line in itertools.islice(f, 4_000)]
    with open(folder / "queries.jsonl") as f:
        queries = [json.loads(line)["text"] for line in itertools.islice(f, 100)]
    analyzer, k1, b = Analyzer(), 0.9, 0.4
    docs = [np.unique(term_ids(analyzer.terms(t)), return_counts=True) for t in texts]
    lengths = np.array([c.sum() for _, c in docs], np.float64)
    vocab, df = np.unique(np.concatenate([i for i, _ in docs]), return_counts=True)
    idf = dict(zip(vocab.tolist(), np.log1p((len(docs) - df + 0.5) / (df + 0.5)).tolist(),
                   strict=True))
    avgdl = lengths.mean()
    impacts = []
    for (ids, counts), dl in zip(docs, lengths, strict=True):
        tf = counts.astype(np.float64)
        w = np.array([idf[t] for t in ids.tolist()]) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
        impacts.append((ids, w.astype(np.float32)))
    top = float(max(w.max() for _, w in impacts if len(w)))
    db = pv.connect(tmp_path)
    fields = {"text": pv.BM25(analyzer, k1=k1, b=b), "imp": pv.Sparse(),
              "imp8": pv.Sparse(dtype="u8", max_weight=top)}
    coll = db.create_collection("deb", fields, segment_rows=1_500)
    for lo, hi in ((0, 1_000), (1_000, 2_000), (2_000, 3_500), (3_500, 4_000)):
        coll.add(list(range(lo, hi)), {"text": texts[lo:hi], "imp": impacts[lo:hi],
                                       "imp8": impacts[lo:hi]})
        if hi == 3_500:
            coll.flush()
            coll.wait_for_maintenance()  # (the last 500 stay in the growing segment)
    assert len(coll.info()["segments"]) >= 2 and coll.info()["growing_rows"] > 0
    overlap = []
    for q in queries:
        ids, counts = np.unique(term_ids(analyzer.terms(q)), return_counts=True)
        if not len(ids):
            continue
        query = (ids, counts.astype(np.float32))
        bm = coll.search(q, 10, field="text")
        sp = coll.search(query, 10, field="imp")
        np.testing.assert_allclose(sp.scores, bm.scores, rtol=2e-5)
        assert [i for i in sp.ids if i is not None] == [i for i in bm.ids if i is not None] \
            or np.allclose(np.sort(sp.scores), np.sort(bm.scores), rtol=2e-5)  # (ties)
        q8 = coll.search(query, 10, field="imp8")
        overlap.append(len(set(q8.ids.tolist()) & set(sp.ids.tolist())) / 10)
    assert np.mean(overlap) >= 0.9
    coll.close()
