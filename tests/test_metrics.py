"""ANN recall@k (tie-tolerant) and IR metrics against qrels, on hand-computed cases."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from polyvec.errors import InvalidArgument, MissingExtra
from polyvec.eval.metrics import ir_metrics, recall_at_k, run_from_results

# ------------------------------------------------------------------------------- recall_at_k


def test_recall_basic_per_query_and_mean():
    found = np.array([[3, 1, 2], [4, 5, 6]])
    exact = np.array([[1, 2, 3], [4, 7, 8]])
    r = recall_at_k(found, exact, k=3)
    # row 0: {3,1,2} == {1,2,3} -> 3/3 (order inside the top-k does not matter)
    # row 1: only 4 is shared -> 1/3
    np.testing.assert_allclose(r.per_query, [1.0, 1 / 3])
    assert r.mean == pytest.approx(2 / 3)
    assert r.k == 3


def test_recall_uses_first_k_columns_of_both():
    # k=2: found top-2 {4, 1}, exact top-2 {1, 2} -> 1/2, although 2 is found at rank 3
    r = recall_at_k([[4, 1, 2, 3]], [[1, 2, 3, 4]], k=2)
    assert r.mean == 0.5


def test_recall_tie_tolerant_with_scores():
    exact_ids, exact_scores = [[1, 2, 3]], [[0.9, 0.8, 0.7]]
    # 4 ties with the 3rd exact neighbour (0.7): without scores a miss, with scores a hit
    assert recall_at_k([[1, 2, 4]], exact_ids, 3).mean == pytest.approx(2 / 3)
    tie = recall_at_k(
        [[1, 2, 4]], exact_ids, 3, found_scores=[[0.9, 0.8, 0.7]], exact_scores=exact_scores
    )
    assert tie.mean == 1.0
    # within tol of the k-th score still counts; worse by more than tol does not
    near = recall_at_k(
        [[1, 2, 4]],
        exact_ids,
        3,
        found_scores=[[0.9, 0.8, 0.7 - 5e-7]],
        exact_scores=exact_scores,
        tol=1e-6,
    )
    assert near.mean == 1.0
    worse = recall_at_k(
        [[1, 2, 4]], exact_ids, 3, found_scores=[[0.9, 0.8, 0.69]], exact_scores=exact_scores
    )
    assert worse.mean == pytest.approx(2 / 3)


def test_recall_ties_on_duplicate_vectors_exact_oracle():
    """An index that returns a copy of the k-th exact neighbour instead of it is not wrong."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((30, 4))
    q = rng.standard_normal(4)
    top = np.argsort(-(data @ q))[:3]  # exact top-3 by inner product
    data = np.vstack([data, data[top[2]]])  # id 30 is a copy of the 3rd neighbour
    scores = data @ q
    found = np.array([[top[0], top[1], 30]])
    assert recall_at_k(found, top[None, :], 3).mean == pytest.approx(2 / 3)  # by id: a miss
    r = recall_at_k(
        found, top[None, :], 3, exact_scores=scores[top][None, :], found_scores=scores[found]
    )
    assert r.mean == 1.0  # by score: a tie


def test_recall_padding_is_a_miss():
    # polyvec results pad with None (object arrays); faiss pads with -1 (int arrays)
    assert recall_at_k(np.array([[1, None, None]], dtype=object), [[1, 2, 3]], 3).mean == (
        pytest.approx(1 / 3)
    )
    assert recall_at_k(np.array([[1, -1, -1]]), np.array([[1, 2, 3]]), 3).mean == (
        pytest.approx(1 / 3)
    )
    # padding never ties, even with scores: padded slots score -inf
    r = recall_at_k(
        [[1, -1, -1]],
        [[1, 2, 3]],
        3,
        found_scores=[[0.9, -np.inf, -np.inf]],
        exact_scores=[[0.9, 0.8, 0.7]],
    )
    assert r.mean == pytest.approx(1 / 3)
    # fewer found columns than k: the missing slots are misses
    assert recall_at_k([[1, 2]], [[1, 2, 3, 4]], 4).mean == 0.5


def test_recall_exact_with_fewer_than_k_results():
    # a filtered exact search found only 1 match: finding it is perfect recall
    exact = np.array([[7, None, None], [None, None, None]], dtype=object)
    found = np.array([[7, None, None], [None, None, None]], dtype=object)
    np.testing.assert_array_equal(recall_at_k(found, exact, 3).per_query, [1.0, 1.0])
    assert (
        recall_at_k(np.array([[None, None, None]] * 2, dtype=object), exact, 3).per_query[0] == 0.0
    )


def test_recall_repeated_found_id_counts_once():
    assert recall_at_k([[1, 1, 1]], [[1, 2, 3]], 3).mean == pytest.approx(1 / 3)


def test_recall_str_and_mixed_int_ids():
    assert recall_at_k([["a", "b"]], [["b", "c"]], 2).mean == 0.5
    found = np.array([[1, 2]], dtype=object)  # python ints, as in SearchResult.ids
    exact = np.array([[2, 3]], dtype=np.int64)  # numpy ints, as from faiss
    assert recall_at_k(found, exact, 2).mean == 0.5
    # a single query may be 1-D
    assert recall_at_k([1, 2], [2, 3], 2).per_query.shape == (1,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k"),
        ({"k": 4}, "at least k=4"),
        ({"k": 2, "exact_scores": [[1.0, 0.5, 0.2]]}, "both"),
        ({"k": 2, "tol": -1.0}, "tol"),
    ],
)
def test_recall_rejects_bad_arguments(kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        recall_at_k([[1, 2, 3]], [[1, 2, 3]], **kwargs)


def test_recall_rejects_row_mismatch_and_float_ids():
    with pytest.raises(InvalidArgument, match="rows"):
        recall_at_k([[1, 2]], [[1, 2], [3, 4]], 2)
    with pytest.raises(InvalidArgument, match="dtype"):
        recall_at_k([[1.0, 2.0]], [[1, 2]], 2)


# ------------------------------------------------------------------------------- ir_metrics


needs_ir_measures = pytest.mark.skipif(
    importlib.util.find_spec("ir_measures") is None,
    reason="needs ir-measures: pip install 'polyvec[eval]'"
)

LOG2_3 = math.log2(3)
LOG2_5 = math.log2(5)

RUN = {
    # q1: the only relevant doc (d3) is at rank 3
    "q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6},
    # q2: graded judgments; b (grade 2) at rank 2, d (grade 1) at rank 4, e (grade 1) not found
    "q2": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0},
    # q9 has no judgments: ignored
    "q9": {"z": 1.0},
}
QRELS = {
    "q1": {"d3": 1},
    "q2": {"a": 0, "b": 2, "d": 1, "e": 1},
    # q3 is judged but the run has nothing for it: it scores 0 on every metric
    "q3": {"x": 1},
}
# q1: MRR = 1/3 (first relevant at rank 3); R@10 = 1/1;
#     nDCG@10 = DCG/IDCG = (1/log2(3+1)) / (1/log2(1+1)) = 0.5
# q2: MRR = 1/2 (b at rank 2); R@10 = 2/3 (b and d of {b, d, e});
#     DCG = 0 (a, grade 0) + 2/log2(3) (b) + 0 (c, unjudged) + 1/log2(5) (d) = 1.692536
#     IDCG = grades sorted [2, 1, 1]: 2/log2(2) + 1/log2(3) + 1/log2(4) = 3.130930
#     nDCG@10 = 1.692536 / 3.130930 = 0.540586
Q2_NDCG = (2 / LOG2_3 + 1 / LOG2_5) / (2 + 1 / LOG2_3 + 1 / 2)


@needs_ir_measures
def test_ir_metrics_hand_computed_per_query():
    per = ir_metrics(RUN, QRELS, per_query=True)
    assert per["MRR@10"] == pytest.approx({"q1": 1 / 3, "q2": 1 / 2, "q3": 0.0})
    assert per["R@10"] == pytest.approx({"q1": 1.0, "q2": 2 / 3, "q3": 0.0})
    assert per["nDCG@10"] == pytest.approx({"q1": 0.5, "q2": Q2_NDCG, "q3": 0.0})
    assert abs(Q2_NDCG - 0.540586) < 1e-6  # the number in the comment above


@needs_ir_measures
def test_ir_metrics_hand_computed_means():
    means = ir_metrics(RUN, QRELS)
    assert list(means) == ["MRR@10", "nDCG@10", "R@10"]  # the caller's names, in order
    # means over the three judged queries q1, q2, q3
    assert means["MRR@10"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)  # 5/18
    assert means["R@10"] == pytest.approx((1 + 2 / 3 + 0) / 3)  # 5/9
    assert means["nDCG@10"] == pytest.approx((0.5 + Q2_NDCG + 0) / 3)


@needs_ir_measures
def test_ir_metrics_cutoff_at_10():
    # the relevant doc is at rank 11: outside every @10 metric, but R@20 finds it
    run = {"q": {f"d{i}": float(100 - i) for i in range(1, 12)}}
    qrels = {"q": {"d11": 1}}
    m = ir_metrics(run, qrels, ["MRR@10", "nDCG@10", "R@10", "R@20"])
    assert m == {"MRR@10": 0.0, "nDCG@10": 0.0, "R@10": 0.0, "R@20": 1.0}


@needs_ir_measures
def test_ir_metrics_ties_follow_run_order_for_every_metric():
    # equal scores: the run's order decides (a before b), for RR and nDCG alike
    # (trec_eval alone would rank b first by doc id, another provider a first)
    m = ir_metrics({"q": {"a": 1.0, "b": 1.0}}, {"q": {"b": 1}}, ["MRR@10", "nDCG@10"])
    assert m["MRR@10"] == pytest.approx(0.5)
    assert m["nDCG@10"] == pytest.approx(1 / LOG2_3)  # b at rank 2: 1/log2(3) over 1


@needs_ir_measures
def test_run_from_results_keeps_order_and_skips_padding():
    ids = np.array([["d2", "d3", None], ["x", None, None]], dtype=object)
    run = run_from_results(["q1", "q3"], ids)
    assert run == {"q1": {"d2": 3.0, "d3": 2.0}, "q3": {"x": 3.0}}
    int_ids = np.array([[5, 3, -1, 5]])
    assert run_from_results([7], int_ids, np.array([[0.9, 0.8, -np.inf, 0.1]])) == {
        "7": {"5": 0.9, "3": 0.8}  # -1 padding skipped; the repeated 5 keeps its first rank
    }
    # feeding it to ir_metrics: q1 has d3 at rank 2 -> MRR 1/2; q3 nothing relevant -> 0
    per = ir_metrics(run, QRELS, ["MRR@10"], per_query=True)["MRR@10"]
    assert per == pytest.approx({"q1": 0.5, "q2": 0.0, "q3": 1.0})


@needs_ir_measures
def test_ids_compare_as_strings():
    assert ir_metrics({1: {10: 0.5}}, {"1": {"10": 1}}, ["MRR@10"]) == {"MRR@10": 1.0}


@needs_ir_measures
def test_ir_metrics_rejects_bad_input():
    with pytest.raises(InvalidArgument, match="unknown"):
        ir_metrics(RUN, QRELS, ["NotAMetric@10"])
    with pytest.raises(InvalidArgument, match="distinct"):
        ir_metrics(RUN, QRELS, ["MRR@10", "RR@10"])  # aliases of one measure
    with pytest.raises(InvalidArgument, match="relevance grade"):
        ir_metrics(RUN, {"q1": {"d3": 0.5}})
    with pytest.raises(InvalidArgument, match="NaN"):
        ir_metrics({"q1": {"d3": float("nan")}}, QRELS)
    with pytest.raises(InvalidArgument, match="query_ids"):
        run_from_results(["a"], np.array([[1], [2]]))


def test_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ir_measures", None)  # makes `import ir_measures` fail
    with pytest.raises(MissingExtra, match=r"pip install 'polyvec\[eval\]'") as err:
        ir_metrics(RUN, QRELS)
    assert isinstance(err.value, ImportError)


def test_import_is_lazy():
    code = (
        "import sys, polyvec.eval.metrics, polyvec.eval.lid, polyvec.eval.report\n"
        "heavy = {'ir_measures', 'pytrec_eval', 'matplotlib', 'scipy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
