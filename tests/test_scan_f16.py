"""The fused f16 scan (``_kernels.scan``) against its numpy twin and against the widen-and-BLAS
path of ``scan_dense`` it replaces for small batches: float16 specials (subnormals, the
largest value, signed zeros, infinities), dot and l2, row subsets, selections (none, empty,
all, sparse), k beyond the candidates, and the parallel split."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import wait_forked

from polyvec._kernels import TopK
from polyvec._kernels import scan as scan_mod
from polyvec._kernels.scan import scan_f16, scan_f16_numpy
from polyvec.index import scan_dense


def _rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, d)) * 0.3).astype(np.float16)
    x[0, :6] = [6e-8, -6e-8, 6.1e-5, -0.0, 65504.0, -65504.0]  # subnormals, extremes
    x[1, :] = np.float16(-0.0)
    x[2, :4] = [np.inf, 1.0, 2.0, 3.0]  # never stored (ingest rejects it): scored as BLAS does
    return x


def _close(got: np.ndarray, want: np.ndarray) -> None:
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), fin)
    np.testing.assert_array_equal(got[~fin], want[~fin])  # inf stays inf, of the same sign
    np.testing.assert_allclose(got[fin], want[fin], rtol=2e-5, atol=2e-3)


def _convert_with(helper):  # type: ignore[no-untyped-def]
    def convert(bits, out):  # type: ignore[no-untyped-def]
        for i in range(bits.shape[0]):
            out[i] = helper(bits[i])

    return convert


def test_f16_to_f32_both_methods_equal_astype_for_every_float16() -> None:
    numba = pytest.importorskip("numba")
    from polyvec._kernels import _f16_numba
    from polyvec._kernels.widen import f16_to_f32

    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    want = every.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    for helper in (_f16_numba._f16_f16c if _f16_numba.HAVE_F16C else None,
                   _f16_numba._f16_bits_method):
        if helper is None:
            continue

        got = np.empty(len(every), np.float32)
        numba.njit(_convert_with(helper))(every, got)
        np.testing.assert_array_equal(np.isnan(got), nan)  # a signalling NaN comes out quiet
        np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    py = np.array([f16_to_f32(h) for h in every[::251]], np.float32)  # the plain twin
    np.testing.assert_array_equal(py.view(np.uint32)[~nan[::251]],
                                  want[::251][~nan[::251]].view(np.uint32))


@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("nq", [1, 3, 16])
def test_scan_f16_equals_numpy_twin(l2: bool, nq: int) -> None:
    x = _rows(700, 40)
    q = np.random.default_rng(1).standard_normal((nq, 40)).astype(np.float32)
    rows = np.array([5, 0, 699, 2, 5, 1], np.int64)  # any order, repeats, the special rows
    with np.errstate(invalid="ignore"):  # l2 of the inf row: inf - inf, NaN in both
        want = scan_f16_numpy(q, x, None, l2), scan_f16_numpy(q, x, rows, l2)
    _close(scan_f16(q, x, l2=l2), want[0])
    _close(scan_f16(q, x, rows, l2=l2), want[1])
    assert scan_f16(q, x, np.zeros(0, np.int64), l2=l2).shape == (nq, 0)


def test_scan_f16_blocks_over_threads_equal_one_block() -> None:
    from polyvec._kernels.scan import scan_f16_blocks

    x = _rows(3000, 24)
    q = np.random.default_rng(2).standard_normal((2, 24)).astype(np.float32)
    rows = np.flatnonzero(np.random.default_rng(3).random(3000) < 0.4)
    for r, l2 in ((rows, False), (None, True)):
        whole = scan_f16(q, x, r, l2=l2, threads=1)
        for threads in (1, 3):
            parts = list(scan_f16_blocks(q, x, r, l2=l2, block=257, threads=threads))
            assert [(lo, hi) for lo, hi, _ in parts] == \
                [(lo, min(len(whole[0]), lo + 257)) for lo in range(0, len(whole[0]), 257)]
            np.testing.assert_array_equal(np.concatenate([s for _, _, s in parts], axis=1),
                                          whole)


def test_scan_f16_rejects_other_layouts() -> None:
    x = _rows(10, 8)
    with pytest.raises(ValueError, match="scan_f16"):
        scan_f16(np.zeros((1, 8), np.float64), x)
    with pytest.raises(ValueError, match="scan_f16"):
        scan_f16(np.zeros((1, 8), np.float32), x[:, ::2].copy().T)


def _top(q: np.ndarray, x: np.ndarray, k: int, metric: str, mask: np.ndarray | None,
         backend: str) -> tuple[np.ndarray, np.ndarray]:
    t = TopK(len(q), k)
    scan_dense(q, x, np.arange(len(x), dtype=np.int64) * 10 + 7, t, metric=metric, mask=mask,
               backend=backend)
    return t.result()


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("selection", ["none", "all", "sparse", "half", "empty", "one"])
def test_fused_scan_dense_equals_the_widen_and_blas_path(metric: str, selection: str) -> None:
    rng = np.random.default_rng(4)
    x = _rows(2500, 32)
    x[2] = 0.5  # no inf here: the top-k of an inf score is what both paths agree on anyway
    q = rng.standard_normal((3, 32)).astype(np.float32)
    mask = {"none": None, "all": np.ones(2500, bool), "sparse": rng.random(2500) < 0.02,
            "half": rng.random(2500) < 0.5, "empty": np.zeros(2500, bool),
            "one": np.arange(2500) == 1234}[selection]
    ref = scan_f16_numpy(q, x, None, metric == "l2")
    for k in (10, 3000):  # k beyond the candidates: trailing (-inf, -1)
        sa, ia = _top(q, x, k, metric, mask, "numba")
        sb, ib = _top(q, x, k, metric, mask, "numpy")
        np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(ia < 0, ib < 0)
        if k == 10:  # no near-ties among the ten best here
            np.testing.assert_array_equal(ia, ib)
        hit = ia >= 0  # every hit is a selected row, with its own score (ties may reorder)
        rows = (ia[hit] - 7) // 10
        assert mask is None or mask[rows].all()
        assert len(set(ia[0][hit[0]])) == int(hit[0].sum())
        np.testing.assert_allclose(sa[hit], ref[np.nonzero(hit)[0], rows], rtol=1e-5,
                                   atol=1e-4)


def test_large_batches_keep_the_blas_path() -> None:
    x = _rows(300, 16)
    x[2] = 0.25
    q = np.random.default_rng(5).standard_normal((scan_mod.MAX_QUERIES + 1, 16)
                                                 ).astype(np.float32)
    sa, ia = _top(q, x, 5, "dot", None, "numba")
    sb, ib = _top(q, x, 5, "dot", None, "numpy")
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_scans_with_its_own_pool() -> None:
    from polyvec._kernels.scan import scan_f16_blocks

    x = _rows(2000, 8)
    x[2] = 0.5
    q = np.ones((1, 8), np.float32)
    want = np.concatenate([s for *_, s in scan_f16_blocks(q, x, block=300, threads=2)], axis=1)
    pid = os.fork()
    if pid == 0:  # the parent's pool threads do not exist here: a stale pool would hang
        got = np.concatenate([s for *_, s in scan_f16_blocks(q, x, block=300, threads=2)],
                             axis=1)
        os._exit(0 if np.array_equal(got, want) else 1)
    wait_forked(pid, "scan")
