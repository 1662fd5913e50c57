"""The numba HNSW walk over faiss's graph: equals its numpy twin, equals faiss's own walk,
refines like refine_topk, and drives HNSWIndex searches to the same answers as faiss."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faiss
import numba
import numpy as np
import pytest
from conftest import wait_forked

from polyvec._kernels._numba import entry_point
from polyvec._kernels.graph import (
    MIN_CHUNK,
    GraphSearcher,
    _compiled,
    _plain_query,
    graph_from_faiss,
    graph_from_serialized,
    query_weights,
    scan_numpy,
    scan_weights,
    walk_numpy,
)
from polyvec._kernels.refine import refine_topk
from polyvec._validate import _norm_rows_numba
from polyvec.errors import DimensionMismatch, InvalidArgument
from polyvec.factory import parse_index
from polyvec.index import QueryParams
from polyvec.index.build import build_index

N, D, NQ = 3000, 32, 60


def _data(l2: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # clustered, so the walk has structure to follow
    centers = rng.standard_normal((30, D)).astype(np.float32)
    x = centers[rng.integers(0, 30, N)] + 0.5 * rng.standard_normal((N, D)).astype(np.float32)
    q = centers[rng.integers(0, 30, NQ)] + 0.5 * rng.standard_normal((NQ, D)).astype(np.float32)
    if not l2:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def _faiss(x: np.ndarray, l2: bool, sq8: bool) -> Any:
    metric = faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT
    index = (faiss.IndexHNSWSQ(D, faiss.ScalarQuantizer.QT_8bit, 16, metric) if sq8
             else faiss.IndexHNSWFlat(D, 16, metric))
    index.train(x)
    index.add(x)
    return index


CASES = [(l2, sq8) for l2 in (False, True) for sq8 in (False, True)]


@pytest.mark.parametrize(("l2", "sq8"), CASES)
def test_numba_walk_equals_numpy_twin_and_faiss(l2: bool, sq8: bool) -> None:
    x, q = _data(l2)
    index = _faiss(x, l2, sq8)
    g = graph_from_faiss(index, l2)
    assert g is not None
    s_nb, r_nb = GraphSearcher(g).search(q, 24, 10)
    s_np, r_np = walk_numpy(g, q, 24, 10)
    np.testing.assert_array_equal(r_nb, r_np)
    np.testing.assert_allclose(s_nb, s_np, rtol=1e-5, atol=1e-4)
    dist, ids = index.search(q, 10, params=faiss.SearchParametersHNSW(efSearch=24))
    same = np.mean(np.all(ids == r_nb, axis=1))
    assert same >= 0.95, same  # same visits, same candidates (up to score rounding)
    np.testing.assert_allclose(s_nb, -dist if l2 else dist, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("l2", "sq8"), CASES)
def test_fused_refine_equals_walk_then_refine(l2: bool, sq8: bool, tmp_path: Path) -> None:
    x, q = _data(l2, seed=1)
    g = graph_from_faiss(_faiss(x, l2, sq8), l2)
    assert g is not None
    walker = GraphSearcher(g)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")  # refine reads the memmap in place
    s, r = walker.search(q, 32, 20, rerank=xm, qr=q, k=10)
    _, cand = walker.search(q, 32, 20)
    s2, r2 = refine_topk(q, cand, x, 10, l2=l2)
    np.testing.assert_array_equal(r, r2)
    np.testing.assert_allclose(s, s2, rtol=1e-5, atol=1e-5)


def test_bound_walk_equals_search_and_checks_once() -> None:
    x, q = _data(False, seed=3)
    g = graph_from_faiss(_faiss(x, False, True), False)
    assert g is not None
    walker = GraphSearcher(g)
    run = walker.bind(16, 20, rerank=x, k=10)  # ef < kc: raised to kc, as search does
    s, r = walker.search(q, 16, 20, rerank=x, qr=q, k=10)
    for i in range(0, NQ, 7):
        si, ri = run(np.ascontiguousarray(q[i:i + 7]))
        np.testing.assert_array_equal(ri, r[i:i + 7])
        np.testing.assert_array_equal(si, s[i:i + 7])
    with pytest.raises(DimensionMismatch, match="queries"):
        run(np.ascontiguousarray(q[:2, :16]))
    large_calls: list[int] = []

    def large(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        large_calls.append(len(b))
        return walker.search(b, 16, 20, rerank=x, qr=b, k=10)

    split = walker.bind(16, 20, rerank=x, k=10, large=large)
    np.testing.assert_array_equal(split(np.ascontiguousarray(q[:2 * MIN_CHUNK]))[1],
                                  r[:2 * MIN_CHUNK])
    np.testing.assert_array_equal(split(np.ascontiguousarray(q[:3]))[1], r[:3])
    assert large_calls == [2 * MIN_CHUNK]  # only the large batch went to ``large``
    with pytest.raises(DimensionMismatch, match="rerank"):
        walker.bind(16, 20, rerank=x[:100], k=10)
    with pytest.raises(DimensionMismatch, match="rerank"):
        walker.bind(16, 20, rerank=x, k=0)


def test_entry_point_is_the_compiled_overload_and_takes_only_its_types() -> None:
    x, q = _data(False, seed=5)
    walker = GraphSearcher(graph_from_faiss(_faiss(x, False, True), False))
    run = walker.bind(16, 20, rerank=x, k=10)
    s, r = walker.search(q, 16, 20, rerank=x, qr=q, k=10)
    for _ in range(2):  # the first call through the dispatcher, the next through the entry
        si, ri = run(np.ascontiguousarray(q[:5]))
        np.testing.assert_array_equal(ri, r[:5])
        np.testing.assert_array_equal(si, s[:5])
    kernel = _compiled()
    args = (np.ones((1, 4), np.float32), True)
    _norm_rows_numba.compiled()(*args)
    norm = _norm_rows_numba.compiled()
    got = entry_point(norm, args)
    assert got is not norm and got is norm.overloads[(numba.typeof(args[0]), numba.typeof(True))
                                                     ].entry_point
    assert entry_point(kernel, (np.ones(3, np.int8),)) is kernel  # no such overload
    plain = np.ascontiguousarray(q[:2])
    assert _plain_query(plain)
    ro = plain.copy()
    ro.flags.writeable = False
    for other in (plain.astype(np.float64), np.asfortranarray(q[:4]), ro):
        assert not _plain_query(other)  # the dispatcher takes these (or converts them)


def test_partition_walk_reads_rerank_rows_through_remap() -> None:
    x, q = _data(True, seed=4)
    rows = np.sort(np.random.default_rng(4).choice(2 * N, N, replace=False))
    big = np.zeros((2 * N, D), np.float32)
    big[rows] = x  # the graph's rows are these rows of the larger rerank array
    walker = GraphSearcher(graph_from_faiss(_faiss(x, True, True), True))
    s, r = walker.search(q, 24, 20, rerank=x, qr=q, k=10)
    s2, r2 = walker.search(q, 24, 20, rerank=big, qr=q, k=10, remap=rows)
    np.testing.assert_array_equal(r2, rows[r])
    np.testing.assert_array_equal(s2, s)
    for bad in (rows[:-1], rows.astype(np.int32), rows + N + 1):
        with pytest.raises(DimensionMismatch, match="remap"):
            walker.search(q, 24, 20, rerank=big, qr=q, k=10, remap=bad)


def test_threads_stamps_and_edge_cases() -> None:
    x, q = _data(False, seed=2)
    g = graph_from_faiss(_faiss(x, False, True), False)
    assert g is not None
    walker = GraphSearcher(g)
    s1, r1 = walker.search(q, 24, 10)
    s2, r2 = walker.search(q, 24, 10, threads=2)  # a batch split over threads
    np.testing.assert_array_equal(r1, r2)
    visited, state = walker._scratch()
    state[0] = 0xFFFFFFFD  # the stamps wrap during this batch: visited is cleared, not stale
    _, r3 = walker.search(q, 24, 10)
    np.testing.assert_array_equal(r1, r3)
    assert state[0] < 100
    # ef below kc is raised to kc; kc above n pads with (-inf, -1)
    small = _faiss(x[:5], False, False)
    gs = graph_from_faiss(small, False)
    assert gs is not None
    s, r = GraphSearcher(gs).search(q[:3], 2, 8)
    assert (r[:, :5] >= 0).all() and (r[:, 5:] == -1).all() and np.isneginf(s[:, 5:]).all()
    assert graph_from_faiss(faiss.IndexHNSWFlat(D, 16), False) is None  # empty graph


@pytest.mark.parametrize("spec", ["HNSW16,SQ8", "HNSW16,SQ8,Refine", "Proj16,HNSW16,SQ8,Refine"])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_index_search_matches_the_faiss_walk(spec: str, metric: str) -> None:
    x, q = _data(metric == "l2", seed=3)
    index: Any = build_index(x, parse_index(spec), metric, threads=1)
    params = QueryParams(ef=32, oversample=2.0 if "Refine" in spec else None)
    assert build_index(x, parse_index("HNSW16"), metric)._searcher() is None  # faiss walks
    x16 = x.astype(np.float16)  # f16 rerank vectors: walk, then refine_topk
    s, r = index.search(q, 10, params=params, rerank=x)
    s16, r16 = index.search(q, 10, params=params, rerank=x16)
    assert index._searcher() is not None
    index._walker, index._walker_checked = None, True  # force faiss's walk
    s_f, r_f = index.search(q, 10, params=params, rerank=x)
    s16_f, r16_f = index.search(q, 10, params=params, rerank=x16)
    assert np.mean(np.all(r == r_f, axis=1)) >= 0.95
    np.testing.assert_allclose(s, s_f, rtol=1e-4, atol=1e-3)
    assert np.mean(np.all(r16 == r16_f, axis=1)) >= 0.95
    np.testing.assert_allclose(s16, s16_f, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("l2", "sq8"), CASES)
def test_selection_walk_equals_twin_and_returns_only_selected(l2: bool, sq8: bool) -> None:
    x, q = _data(l2, seed=4)
    g = graph_from_faiss(_faiss(x, l2, sq8), l2)
    assert g is not None
    sel = np.random.default_rng(5).random(N) < 0.3
    s_nb, r_nb = GraphSearcher(g).search(q, 64, 10, sel=sel)
    s_np, r_np = walk_numpy(g, q, 64, 10, sel=sel)
    np.testing.assert_array_equal(r_nb, r_np)
    np.testing.assert_allclose(s_nb, s_np, rtol=1e-5, atol=1e-4)
    assert sel[r_nb[r_nb >= 0]].all()
    exact = (-((q[:, None] - x[None]) ** 2).sum(-1)) if l2 else q @ x.T
    exact[:, ~sel] = -np.inf
    truth = np.argsort(-exact, axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(r_nb, truth, strict=True)])
    assert recall >= 0.85, recall  # declared floor: 30% selected, ef 64 (SQ8 ranks approximately)


def _far_selection(x: np.ndarray, q: np.ndarray, fraction: float) -> np.ndarray:
    """The ``fraction`` of rows farthest from the mean query: a filter negatively correlated
    with the queries (none of their neighbourhoods hold a selected row)."""
    s = x @ q.mean(axis=0)
    return s <= np.quantile(s, fraction)


def _same(a: np.ndarray, b: np.ndarray) -> float:
    """The share of result slots two searches fill with the same rows (as sets per query)."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def _recall(r: np.ndarray, x: np.ndarray, q: np.ndarray, sel: np.ndarray, l2: bool) -> float:
    exact = (-((q[:, None] - x[None]) ** 2).sum(-1)) if l2 else q @ x.T
    exact[:, ~sel] = -np.inf
    truth = np.argsort(-exact, axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(r, truth, strict=True)]))


@pytest.mark.parametrize(("l2", "sq8"), CASES)
def test_selection_walk_reaches_a_far_selection(l2: bool, sq8: bool) -> None:
    """A selection far from every query: the filtered walk goes on through unselected rows
    until it holds ef selected ones (the old beam stopped near the query with whatever
    selected rows it had met: recall ~0.5 on Debian's far half)."""
    x, q = _data(l2, seed=9)
    g = graph_from_faiss(_faiss(x, l2, sq8), l2)
    assert g is not None
    sel = _far_selection(x, q, 0.3)
    stats = np.zeros((NQ, 2), np.int64)
    s_nb, r_nb = GraphSearcher(g).search(q, 64, 10, sel=sel, stats=stats)
    _, r_np = walk_numpy(g, q, 64, 10, sel=sel)
    # a long walk's float32 (kernel) and float64 (twin) sums may order a near tie apart
    assert _same(r_nb, r_np) >= 0.97
    assert sel[r_nb].all() and (stats[:, 1] == 0).all() and (stats[:, 0] > 64).all()
    assert _recall(r_nb, x, q, sel, l2) >= 0.9  # declared floor (SQ8 ranks approximately)


@pytest.mark.parametrize(("budget", "share"), [(400, 0.0), (10**9, 0.2)])
@pytest.mark.parametrize(("l2", "sq8"), CASES)
def test_selection_walk_gives_up_for_the_scan(l2: bool, sq8: bool, budget: int,
                                              share: float) -> None:
    """Past ``budget`` nodes scored, or with selected rows under ``share`` of the first
    ``PROBE`` nodes met (a far filter), the kernel scans the selected rows: the scan's
    exact answer, reported in ``stats``; the twin gives up on the same queries."""
    x, q = _data(l2, seed=10)
    g = graph_from_faiss(_faiss(x, l2, sq8), l2)
    assert g is not None
    sel = _far_selection(x, q, 0.3)
    stats = np.zeros((NQ, 2), np.int64)
    s_nb, r_nb = GraphSearcher(g).search(q, 64, 10, sel=sel, budget=budget, share=share,
                                         stats=stats)
    _, r_np = walk_numpy(g, q, 64, 10, sel=sel, budget=budget, share=share)
    assert _same(r_nb, r_np) >= 0.97
    gave_up = stats[:, 1] == 1
    far = _near_share(x, q, sel, l2) == 0  # none of the query's 50 neighbours selected
    assert far.sum() >= 10 and gave_up[far].mean() >= 0.75, stats
    s_sc, r_sc = scan_numpy(g, q[gave_up], np.flatnonzero(sel), 10)
    np.testing.assert_array_equal(r_nb[gave_up], r_sc)
    assert (stats[gave_up, 0] >= sel.sum()).all()  # the scan's rows are counted
    if share:  # a selection near the query fills the results at once: it does not give up
        near = ~_far_selection(x, q, 0.7)
        GraphSearcher(g).search(q, 64, 10, sel=near, share=share, stats=stats)
        close = _near_share(x, q, near, l2) >= 0.8
        assert close.sum() >= 10 and (stats[close, 1] == 0).mean() >= 0.9, stats


def _near_share(x: np.ndarray, q: np.ndarray, sel: np.ndarray, l2: bool) -> np.ndarray:
    """Per query, the share of its 50 exact nearest rows that ``sel`` selects."""
    exact = (-((q[:, None] - x[None]) ** 2).sum(-1)) if l2 else q @ x.T
    return np.asarray(sel[np.argsort(-exact, axis=1)[:, :50]].mean(axis=1))


@pytest.mark.parametrize(("l2", "sq8"), CASES)
def test_row_scan_equals_twin_and_exact_codes(l2: bool, sq8: bool, tmp_path: Path) -> None:
    x, q = _data(l2, seed=7)
    g = graph_from_faiss(_faiss(x, l2, sq8), l2)
    assert g is not None
    rows = np.flatnonzero(np.random.default_rng(8).random(N) < 0.1)
    walker = GraphSearcher(g)
    s_nb, r_nb = walker.search(q, 1, 20, rows=rows)
    s_np, r_np = scan_numpy(g, q, rows, 20)
    np.testing.assert_allclose(s_nb, s_np, rtol=1e-5, atol=1e-4)
    assert np.mean(r_nb == r_np) >= 0.99  # equal up to float ties of the codes' scores
    assert np.isin(r_nb, rows).all()
    # fused with the exact refine: the exact top-10 of the 20 scanned candidates
    s, r = walker.search(q, 1, 20, rows=rows, rerank=x, qr=q, k=10)
    s2, r2 = refine_topk(q, r_nb, x, 10, l2=l2)
    np.testing.assert_array_equal(r, r2)
    np.testing.assert_allclose(s, s2, rtol=1e-5, atol=1e-5)
    # fewer rows than kc: pads
    s3, r3 = walker.search(q[:2], 1, 20, rows=rows[:5])
    assert (r3[:, 5:] == -1).all() and sorted(r3[0, :5]) == sorted(rows[:5])
    with pytest.raises(DimensionMismatch):
        walker.search(q, 1, 20, rows=np.array([N]))


@pytest.mark.parametrize("l2", [False, True])
def test_sq8_scan_integer_scores_track_the_codes_and_scan_of_sel_equals_rows(l2: bool) -> None:
    x, q = _data(l2, seed=11)
    g = graph_from_faiss(_faiss(x, l2, True), l2)
    assert g is not None
    sel = np.random.default_rng(12).random(N) < 0.2
    rows = np.flatnonzero(sel)
    walker = GraphSearcher(g)
    # the kernel's compaction of a selection is np.flatnonzero
    from polyvec._kernels.graph import _compiled_rows
    np.testing.assert_array_equal(_compiled_rows()(sel), rows)
    assert len(_compiled_rows()(np.zeros(N, bool))) == 0
    s_rows, r_rows = walker.search(q, 1, 20, rows=rows)
    s_sel, r_sel = walker.search(q, 1, 20, sel=sel, scan=True)
    np.testing.assert_array_equal(r_sel, r_rows)
    np.testing.assert_array_equal(s_sel, s_rows)
    # int16 weights: the scores stay within a hair of the float scores of the same codes
    w, bias = query_weights(g, q)
    c = g.codes[rows].astype(np.float64)
    exact = w.astype(np.float64) @ c.T + bias[:, None]
    if l2:
        exact = 2 * exact - g.norms[rows][None, :] - (q.astype(np.float64) ** 2).sum(1)[:, None]
    got = np.take_along_axis(exact, np.searchsorted(rows, r_sel), axis=1)
    np.testing.assert_allclose(s_sel, got, rtol=1e-4, atol=1e-3 * np.abs(exact).max())
    wi, inv = scan_weights(w)
    assert wi.dtype == np.int16 and np.abs(wi).max() <= 32767
    with pytest.raises(InvalidArgument):
        walker.search(q, 1, 20, scan=True)


def test_scan_weights_never_overflow_int32() -> None:
    for d in (4, 384, 4096, 20000):
        w = np.full((1, d), -3.0, np.float32)
        wi, inv = scan_weights(w)
        assert np.abs(wi.astype(np.int64)).sum() * 255 <= 2**31 - 1, d
        np.testing.assert_allclose(wi * inv[:, None], w, rtol=1e-3)


def test_filtered_index_search_uses_the_walk_and_keeps_its_guarantees() -> None:
    x, q = _data(False, seed=6)
    index: Any = build_index(x, parse_index("HNSW16,SQ8,Refine"), "cosine", threads=1)
    for frac in (0.5, 0.05, 0.002):  # widened walk, widened walk, exact fallback
        sel = np.zeros(N, bool)
        sel[np.random.default_rng(7).permutation(N)[:max(1, int(frac * N))]] = True
        s, r = index.search(q, 10, params=QueryParams(ef=32), selection=sel, rerank=x)
        want = min(10, int(sel.sum()))
        assert ((r >= 0).sum(axis=1) == want).all()  # never fewer than k when k match
        assert sel[r[r >= 0]].all()
        exact = q @ x.T
        exact[:, ~sel] = -np.inf
        truth = np.argsort(-exact, axis=1)[:, :want]
        recall = np.mean([len(set(a[:want]) & set(b)) / want
                          for a, b in zip(r, truth, strict=True)])
        assert recall >= 0.9, (frac, recall)


def test_shapes_are_checked_before_the_kernel() -> None:
    x, q = _data(False, seed=8)
    g = graph_from_faiss(_faiss(x, False, True), False)
    assert g is not None
    walker = GraphSearcher(g)
    with pytest.raises(DimensionMismatch, match="queries"):
        walker.search(q[:, :16], 10, 5)
    with pytest.raises(DimensionMismatch, match="rerank"):
        walker.search(q, 10, 5, rerank=x[:100], qr=q, k=3)
    with pytest.raises(DimensionMismatch, match="selection"):
        walker.search(q, 10, 5, sel=np.ones(N - 1, bool))


def test_concurrent_searches_from_threads_agree() -> None:
    from concurrent.futures import ThreadPoolExecutor

    x, q = _data(False, seed=9)
    index: Any = build_index(x, parse_index("HNSW16,SQ8,Refine"), "cosine", threads=1)
    params = QueryParams(ef=32, oversample=2.0)
    want = [index.search(q[i:i + 1], 10, params=params, rerank=x)[1] for i in range(NQ)]
    with ThreadPoolExecutor(4) as pool:  # each thread stamps its own visited array
        got = list(pool.map(lambda i: index.search(q[i:i + 1], 10, params=params,
                                                   rerank=x)[1], list(range(NQ)) * 3))
    for i, r in enumerate(got):
        np.testing.assert_array_equal(r, want[i % NQ])


@pytest.mark.parametrize("l2", [False, True])
def test_graph_read_from_serialized_bytes_equals_faiss_views(l2: bool) -> None:
    """The SQ8 graph read from ``serialize_index``'s bytes (no deserialization) is the one
    faiss holds, and walks to the same rows; any other or damaged layout gives ``None``."""
    x, q = _data(l2)
    index = _faiss(x, l2, sq8=True)
    blob = np.asarray(faiss.serialize_index(index), dtype=np.uint8)
    blob.flags.writeable = False  # as loaded: a read-only memory map
    a, b = graph_from_faiss(index, l2), graph_from_serialized(blob, l2)
    assert a is not None and b is not None
    for name in ("neighbors", "offsets", "cum", "codes", "scale", "center", "norms"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None and vb is None) or np.array_equal(va, vb), name
    assert (a.entry, a.max_level) == (b.entry, b.max_level)
    assert b.codes.flags.writeable and b.neighbors.flags.aligned  # the kernel's cached types
    np.testing.assert_array_equal(GraphSearcher(a).search(q, 24, 10)[1],
                                  GraphSearcher(b).search(q, 24, 10)[1])
    flat = np.asarray(faiss.serialize_index(_faiss(x, l2, sq8=False)), dtype=np.uint8)
    assert graph_from_serialized(flat, l2) is None
    assert graph_from_serialized(blob[:-1], l2) is None
    bad = blob.copy()
    bad[9] ^= 0xFF  # the vector count in the header: the sizes no longer agree
    assert graph_from_serialized(bad, l2) is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_walks_a_batch_with_its_own_pool() -> None:
    from polyvec._kernels.graph import MIN_CHUNK

    x, q = _data(False)
    q = np.repeat(q, 1 + 4 * MIN_CHUNK // len(q), axis=0)  # big enough to split over threads
    walker = GraphSearcher(graph_from_faiss(_faiss(x, False, sq8=True), False))
    want = walker.search(q, 24, 10, threads=2)[1]
    pid = os.fork()
    if pid == 0:  # the parent's pool threads do not exist here: a stale pool would hang
        got = walker.search(q, 24, 10, threads=2)[1]
        os._exit(0 if np.array_equal(got, want) else 1)
    wait_forked(pid, "walk")
