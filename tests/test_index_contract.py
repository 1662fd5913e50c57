"""One contract suite over every index stack: recall vs the exact oracle, selections,
persistence round trips and recall calibration, on real MiniLM embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data

from polyvec.errors import CorruptFile, InvalidArgument
from polyvec.factory import parse_index
from polyvec.index.base import QueryParams, exact_topk
from polyvec.index.build import build_index, load_index
from polyvec.index.calibrate import calibrate

N, NQ, K = 5000, 200, 10

# (spec, metric) -> declared recall@10 floor at default query params (ef=64, nprobe=8,
# oversample 4 or the spec's), measured on this data and set ~0.02-0.03 below it
FLOORS = {
    ("HNSW32(efc=80)", "cosine"): 0.96,  # measured 0.990
    ("HNSW32(efc=80),SQ8,Refine", "cosine"): 0.96,  # 0.990
    ("HNSW16(efc=80),F16,Refine", "cosine"): 0.95,  # 0.978
    ("HNSW16(lid,efc=80)", "cosine"): 0.94,  # 0.971 (row order: 0.978); descending LID order
    ("IVF64,Flat", "cosine"): 0.80,  # 0.835 (nprobe 8 of 64)
    ("IVF64,PQ48x4,Refine", "cosine"): 0.67,  # 0.704
    ("Proj128,HNSW16(efc=80),Refine", "cosine"): 0.94,  # 0.970
    # fitted on a query sample (queries NQ..3NQ); before its documents got an orthonormal
    # map, the graph over them degenerated (recall 0.06)
    ("Proj128(ood),HNSW16(efc=80),Refine", "cosine"): 0.94,  # 0.970
    ("Prefix192,HNSW16(efc=80),Refine", "cosine"): 0.87,  # 0.896
    ("Binary,Refine(x8)", "cosine"): 0.88,  # 0.909
    ("SQ8", "cosine"): 0.97,  # 0.994
    ("HNSW32(efc=80)", "l2"): 0.96,  # 0.990
    ("IVF64,Flat", "l2"): 0.77,  # 0.802
    ("HNSW32(efc=80),SQ8,Refine", "dot"): 0.96,  # 0.990
}
CASES = list(FLOORS)
SPECS = [s for s, m in CASES if m == "cosine"]
SELECTIVITY_FLOORS = {0.5: 0.05, 0.05: 0.10, 0.001: 0.0}  # allowed drop below the spec floor
COMPRESSED = ("SQ8", "PQ", "Binary", "Proj", "Prefix", "F16")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    folder = shared_data("debian-minilm", "base_f16.npy", "queries_f16.npy")
    base = np.load(folder / "base_f16.npy", mmap_mode="r")[:N].astype(np.float32)
    queries = np.load(folder / "queries_f16.npy", mmap_mode="r")[:3 * NQ].astype(np.float32)
    return base, queries


@pytest.fixture(scope="module")
def built(data):
    base, queries = data
    cache: dict[tuple[str, str], object] = {}

    def get(spec: str, metric: str):
        if (spec, metric) not in cache:
            sample = queries[NQ:] if "ood" in spec else None
            cache[spec, metric] = build_index(base, parse_index(spec), metric, threads=1,
                                              sample_queries=sample)
        return cache[spec, metric]

    return get


def tie_recall(q, base, rows, k, metric, subset=None) -> float:
    """Mean fraction of k whose exact score reaches the exact k-th score (ties count)."""
    true_s, _ = exact_topk(q, base, k, metric, subset)
    kth = true_s[:, -1]
    hits = 0
    for i, r in enumerate(rows):
        r = r[r >= 0]
        s, _ = exact_topk(q[i:i + 1], base, len(r), metric, r) if len(r) else (np.empty((1, 0)),
                                                                               None)
        hits += int((s[0] >= kth[i] - 1e-4).sum())
    n_true = np.isfinite(true_s).sum()
    return hits / n_true


@pytest.mark.parametrize(("spec", "metric"), CASES)
def test_recall_floor(spec, metric, data, built):
    base, queries = data
    index = built(spec, metric)
    assert index.n == N
    scores, rows = index.search(queries[:NQ], K, rerank=base)
    assert scores.shape == rows.shape == (NQ, K)
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    assert (rows >= 0).all() and (np.diff(scores, axis=1) <= 1e-6).all()
    assert all(len(set(r.tolist())) == K for r in rows)  # no row twice
    assert tie_recall(queries[:NQ], base, rows, K, metric) >= FLOORS[spec, metric]
    ram = index.bytes_in_ram()
    assert ram > 0
    if any(c in spec for c in COMPRESSED):
        assert ram < base.nbytes  # the rerank vectors are not counted


@pytest.mark.parametrize("fraction", sorted(SELECTIVITY_FLOORS))
@pytest.mark.parametrize("spec", SPECS)
def test_selection(spec, fraction, data, built):
    base, queries = data
    index = built(spec, "cosine")
    sel = np.zeros(N, dtype=bool)
    sel[np.random.default_rng(1).choice(N, size=max(1, int(N * fraction)), replace=False)] = True
    q = queries[:50]
    _, rows = index.search(q, K, selection=sel, rerank=base)
    valid = rows >= 0
    assert sel[rows[valid]].all()  # never an unselected row
    assert (valid.sum(axis=1) == min(K, int(sel.sum()))).all()  # k whenever k rows match
    floor = FLOORS[spec, "cosine"] - SELECTIVITY_FLOORS[fraction]
    assert tie_recall(q, base, rows, K, "cosine", np.flatnonzero(sel)) >= floor


@pytest.mark.parametrize(("spec", "metric"), CASES)
def test_round_trip(spec, metric, data, built):
    base, queries = data
    index = built(spec, metric)
    arrays = index.to_arrays()
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    again = load_index(parse_index(spec), arrays, metric)
    sel = np.random.default_rng(2).random(N) < 0.3
    for kwargs in ({}, {"selection": sel}):
        a = index.search(queries[:50], K, rerank=base, **kwargs)
        b = again.search(queries[:50], K, rerank=base, **kwargs)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])
    assert again.bytes_in_ram() == index.bytes_in_ram()


def test_calibration_transfers_to_other_queries(data, built):
    base, queries = data
    spec = "HNSW32(efc=80),SQ8,Refine"
    index = built(spec, "cosine")
    table = calibrate(index, base, queries=queries[NQ:2 * NQ], k=K)
    held_out = queries[2 * NQ:]
    for target in (0.9, 0.95, 0.99):
        params = table.params_for(target)
        _, rows = index.search(held_out, K, params=params, rerank=base)
        assert abs(tie_recall(held_out, base, rows, K, "cosine") - target) <= 0.02
    again = load_index(parse_index(spec), index.to_arrays(), "cosine")
    assert again.calibration == table
    index.calibration = None


def test_pseudo_query_calibration_reaches_its_own_targets(data, built):
    base, _ = data
    index = built("IVF64,Flat", "cosine")
    table = calibrate(index, base, k=K, seed=3)
    assert [p.nprobe for p in table.params] == sorted(p.nprobe for p in table.params)
    assert all(r >= t for r, t in zip(table.recalls, table.targets, strict=True))
    index.calibration = None


def test_refine_needs_rerank_and_checks_arguments(data, built):
    base, queries = data
    index = built("HNSW32(efc=80),SQ8,Refine", "cosine")
    with pytest.raises(InvalidArgument):
        index.search(queries[:2], K)
    with pytest.raises(InvalidArgument):
        index.search(queries[:2], K, rerank=base, selection=np.ones(N, dtype=np.int8))
    with pytest.raises(InvalidArgument):
        index.search(queries[:2], 0, rerank=base)
    with pytest.raises(InvalidArgument):
        QueryParams(ef=0)
    # the f16 memmap-like rerank gives the same answer as f32 up to f16 rounding
    _, r32 = index.search(queries[:20], K, rerank=base, params=QueryParams(ef=128))
    _, r16 = index.search(queries[:20], K, rerank=base.astype(np.float16),
                          params=QueryParams(ef=128))
    assert (r32[:, 0] == r16[:, 0]).mean() >= 0.9


def test_memmap_rerank_and_unsupported_or_corrupt(data, built, tmp_path):
    base, queries = data
    index = built("HNSW32(efc=80),SQ8,Refine", "cosine")
    path = tmp_path / "vectors.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=base.shape)
    mm[:] = base
    mm.flush()
    ro = np.memmap(path, dtype=np.float16, mode="r", shape=base.shape)
    _, rows = index.search(queries[:20], K, rerank=ro, selection=np.arange(N) % 3 == 0)
    assert (rows % 3 == 0).all() and (rows >= 0).all()
    for bad in ("HNSW32,Binary", "HNSW32,PQ8", "IVF64,Binary"):
        with pytest.raises(InvalidArgument):
            build_index(base[:500], parse_index(bad), "cosine", threads=1)
    arrays = index.to_arrays()
    with pytest.raises(CorruptFile):
        load_index(parse_index("HNSW32(efc=80),SQ8,Refine"), arrays, "l2")
    with pytest.raises(CorruptFile):
        load_index(parse_index("HNSW32(efc=80),SQ8,Refine"),
                   {**arrays, "stage.faiss": arrays["stage.faiss"][:100]}, "cosine")


def test_lid_order_inserts_hardest_first_and_keeps_row_labels(data) -> None:
    from polyvec.index.order import approximate_lid, lid_order

    base = data[0][:2000]
    lid = approximate_lid(base)
    order = lid_order(base)
    assert sorted(order.tolist()) == list(range(len(base)))
    assert (np.diff(lid[order][np.isfinite(lid[order])]) <= 0).all()
    # the graph renumbered back to row order: a stored vector is found under its own row
    index = build_index(base, parse_index("HNSW16(lid,efc=40)"), "cosine", threads=1)
    _, rows = index.search(base[:50], 1, params=QueryParams(ef=32))
    assert (rows[:, 0] == np.arange(50)).mean() >= 0.98


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_topk_of_a_few_rows_equals_the_streaming_top_k(metric: str) -> None:
    """One query against at most SMALL_EXACT rows is scored by one product and one sort:
    the same scores and rows as the streaming top-k (ties to the lower row; fewer rows than
    k padded with -inf / -1)."""
    from polyvec._kernels import TopK
    from polyvec.index import base as b
    from polyvec.index.flat import scan_dense

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    x[100:110] = x[7]  # ties
    q = np.ascontiguousarray(x[7:8] + 0.01)
    for rows in (np.arange(0, 3000, 3), np.array([9, 100, 7, 104, 5]), np.arange(b.SMALL_EXACT)):
        got = exact_topk(q, x, 10, metric, rows)
        top = TopK(1, 10)
        scan_dense(q, x[rows], rows.astype(np.int64), top, metric="l2" if metric == "l2"
                   else "dot")
        want = top.result()
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-4)
        m = min(10, len(rows))
        s, r = got[0][0][:m], got[1][0][:m]
        assert (np.diff(s) <= 0).all() and len(set(r.tolist())) == m
        assert (got[1][0][m:] == -1).all() and np.isneginf(got[0][0][m:]).all()
        above = want[0][0][:m] > s[-1] + 1e-4  # ties at the k-th may go either way
        assert set(want[1][0][:m][above].tolist()) <= set(r.tolist())
        tied = r[np.abs(s - s[-1]) <= 1e-4]
        assert (np.diff(tied) > 0).all()  # among ties the lower rows, in order
    assert len(np.arange(0, 3000, 3)) <= b.SMALL_EXACT
