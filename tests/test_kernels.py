"""Every numba kernel equals its numpy twin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polyvec._kernels import TopK, maxsim_numpy, maxsim_reduce
from polyvec._kernels.refine import refine_numpy, refine_topk


@pytest.mark.parametrize("k", [1, 7, 50])
def test_topk_numba_equals_numpy(k: int) -> None:
    rng = np.random.default_rng(k)
    s = rng.standard_normal((13, 900)).astype(np.float32)
    s[:, ::7] = -np.inf  # masked rows never enter
    ids = rng.permutation(10_000)[:900]
    results = {}
    for backend in ("numpy", "numba"):
        t = TopK(13, k, backend=backend)
        for lo in range(0, 900, 250):
            t.push(s[:, lo:lo + 250], ids[lo:lo + 250])
        results[backend] = t.result()
    np.testing.assert_array_equal(results["numpy"][0], results["numba"][0])
    np.testing.assert_array_equal(results["numpy"][1], results["numba"][1])
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(results["numba"][1], ids[order])


def test_topk_fewer_candidates_than_k() -> None:
    for backend in ("numpy", "numba"):
        t = TopK(1, 5, backend=backend)
        t.push(np.array([[0.5, -np.inf, 0.2]], dtype=np.float32), np.array([1, 2, 3]))
        s, i = t.result()
        assert i.tolist() == [[1, 3, -1, -1, -1]]
        assert np.isneginf(s[0, 2:]).all()


def test_topk_push_row_only_touches_that_row() -> None:
    t = TopK(3, 2, backend="numba")
    t.push(np.array([[3.0, 1.0]], dtype=np.float32), np.array([7, 8]), row=1)
    s, i = t.result()
    assert i.tolist() == [[-1, -1], [7, 8], [-1, -1]]


@pytest.mark.parametrize("nq,n", [(5, 300), (40, 10_000)])  # serial and parallel kernels
def test_topk_per_query_ids_numba_equals_numpy(nq: int, n: int) -> None:
    """Batch push with one id row per query (each query's own candidates) in one call."""
    rng = np.random.default_rng(nq)
    s = rng.standard_normal((nq, n)).astype(np.float32)
    s[:, ::5] = -np.inf
    ids = np.stack([rng.permutation(10 * n)[:n] for _ in range(nq)])
    out = {}
    for backend in ("numpy", "numba"):
        t = TopK(nq, 8, backend=backend)
        for lo in range(0, n, n // 3):
            t.push(s[:, lo:lo + n // 3], ids[:, lo:lo + n // 3])
        out[backend] = t.result()
    np.testing.assert_array_equal(out["numpy"][0], out["numba"][0])
    np.testing.assert_array_equal(out["numpy"][1], out["numba"][1])
    order = np.argsort(-s, axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(out["numba"][1], np.take_along_axis(ids, order, axis=1))
    # the same as one push per query with its own id row (the loop callers used to write)
    loop = TopK(nq, 8, backend="numba")
    for i in range(nq):
        loop.push(s[i:i + 1], ids[i], row=i)
    np.testing.assert_array_equal(loop.result()[1], out["numba"][1])


def test_topk_push_checks_shapes() -> None:
    t = TopK(3, 2, backend="numpy")
    with pytest.raises(ValueError, match="TopK.push"):
        t.push(np.zeros((3, 4), np.float32), np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="TopK.push"):
        t.push(np.zeros((3, 4), np.float32), np.zeros(5, np.int64))


def test_maxsim_numba_equals_numpy() -> None:
    rng = np.random.default_rng(1)
    lens = rng.integers(1, 40, size=300)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    sim = rng.standard_normal((9, offsets[-1])).astype(np.float32)
    ref = maxsim_numpy(sim, offsets)
    fast = maxsim_reduce(sim, offsets, backend="numba")
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-5)
    # and the numpy twin is itself right, checked by the definition on a few documents
    for d in (0, 17, 299):
        block = sim[:, offsets[d]:offsets[d + 1]]
        assert ref[d] == pytest.approx(block.max(axis=1).sum(), rel=1e-5)


@pytest.mark.parametrize("m", [1, 4, 7])  # query tokens: the 4-token groups and the tail
@pytest.mark.parametrize("ndoc", [40, 3_000])  # serial and parallel kernels
def test_maxsim_f16_numba_equals_numpy(ndoc: int, m: int) -> None:
    """float16 tokens scored in place equal the widened copy's scores, including the
    float16 specials (subnormals, the largest value, zeros) and one-token documents."""
    from polyvec._kernels.maxsim import maxsim_f16, maxsim_f16_numpy

    rng = np.random.default_rng(ndoc)
    lens = rng.integers(1, 30, size=ndoc)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    tokens = rng.standard_normal((offsets[-1], 24)).astype(np.float16)
    tokens[0, :3] = [np.float16(6e-8), np.float16(-65504.0), np.float16(-0.0)]
    q = rng.standard_normal((m, 24)).astype(np.float32)
    ref = maxsim_f16_numpy(q, tokens, offsets)
    fast = maxsim_f16(q, tokens, offsets, backend="numba")
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-3)
    assert maxsim_f16(q, tokens, offsets, backend="numpy").tolist() == ref.tolist()
    # through maxsim_scores, as a collection's exact scan calls it
    from polyvec.multivector import maxsim_scores

    np.testing.assert_allclose(maxsim_scores(q, tokens, offsets), ref, rtol=1e-5, atol=1e-3)


def test_parallel_twins_equal_numpy() -> None:
    """Inputs large enough to take the parallel kernels (the small tests take the serial ones)."""
    rng = np.random.default_rng(2)
    s = rng.standard_normal((40, 10_000)).astype(np.float32)  # 400k scores
    ids = np.arange(10_000)
    out = {}
    for backend in ("numpy", "numba"):
        t = TopK(40, 10, backend=backend)
        t.push(s, ids)
        out[backend] = t.result()
    np.testing.assert_array_equal(out["numpy"][1], out["numba"][1])
    lens = rng.integers(1, 60, size=20_000)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    sim = rng.standard_normal((4, offsets[-1])).astype(np.float32)  # > 2**18 similarities
    np.testing.assert_allclose(maxsim_reduce(sim, offsets, backend="numba"),
                               maxsim_numpy(sim, offsets), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_refine_numba_equals_numpy(l2: bool, dtype: type) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 24)).astype(dtype)
    q = rng.standard_normal((7, 24)).astype(np.float32)
    cand = rng.integers(-1, 500, size=(7, 40))
    cand[2] = -1  # a query with no candidate at all
    cand[3, 5:] = -1  # fewer candidates than k
    s1, r1 = refine_topk(q, cand, x, 10, l2=l2, backend="numpy")
    s2, r2 = refine_topk(q, cand, x, 10, l2=l2, backend="numba")
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-4)
    assert (r2[2] == -1).all() and np.isneginf(s2[2]).all()
    assert (r2[3, 5:] == -1).all()


def test_refine_reads_a_memmap_without_copying(tmp_path: Path) -> None:
    x = np.random.default_rng(4).standard_normal((300, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    q = x[:3] + 0.01
    cand = np.tile(np.arange(0, 300, 3), (3, 1))
    s, r = refine_topk(q, cand, mm, 5, l2=False, backend="numba")
    want = refine_numpy(q, cand, x, 5, False)
    np.testing.assert_array_equal(r, want[1])


@pytest.mark.parametrize("cosine", [False, True])
def test_norm_rows_numba_equals_numpy(cosine: bool) -> None:
    from polyvec._validate import norm_rows

    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 24)).astype(np.float32)
    cases = {"clean": x}
    for name, row, value in (("nan", 7, np.nan), ("inf", 3, np.inf), ("zero", 11, 0.0),
                             ("overflow", 5, 3e19)):
        y = x.copy()
        y[row] = value if name != "overflow" else y[row] * 0 + value
        cases[name] = y
    both = x.copy()
    both[4], both[9] = 0.0, np.nan  # a zero row before a NaN row: NaN is reported first
    cases["zero-then-nan"] = both
    for name, y in cases.items():
        a, b = y.copy(), y.copy()
        ra, rb = norm_rows(a, cosine, backend="numpy"), norm_rows(b, cosine, backend="numba")
        assert ra == rb, name
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)
    assert norm_rows(cases["nan"].copy(), cosine, backend="numba") == 7
    assert norm_rows(cases["zero-then-nan"].copy(), cosine, backend="numba") == 9
    assert norm_rows(cases["zero"].copy(), cosine, backend="numba") == (-13 if cosine else -1)
