"""float16 widening: the numba kernel equals numpy's astype bit for bit (normals, subnormals,
signed zeros, infinities, NaN), and the exact f16 scan through it equals the float32 scan."""

from __future__ import annotations

import numpy as np
import pytest

from polyvec._kernels import TopK
from polyvec._kernels.widen import widen_f16
from polyvec.index import scan_dense


def test_widening_is_bit_exact_for_every_float16() -> None:
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    x = every.reshape(-1, 64)
    out = np.empty((len(x) + 3, 64), np.float32)
    want = x.astype(np.float32)
    nan = np.isnan(want)
    for backend in ("numba", "numpy"):
        got = widen_f16(x, out, backend=backend).copy()
        np.testing.assert_array_equal(np.isnan(got), nan)  # NaN stays NaN (its payload may
        np.testing.assert_array_equal(got[~nan].view(np.uint32),  # be quieted)
                                      want[~nan].view(np.uint32))
    with pytest.raises(ValueError):
        widen_f16(x, np.empty((2, 64), np.float32))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_f16_scan_equals_the_f32_scan_of_the_same_values(metric: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 48)).astype(np.float16)  # several widening blocks
    q = rng.standard_normal((3, 48)).astype(np.float32)
    ids = np.arange(len(x), dtype=np.int64)
    mask = rng.random(len(x)) < 0.6
    a, b = TopK(3, 10), TopK(3, 10)
    scan_dense(q, x, ids, a, metric=metric, mask=mask)
    scan_dense(q, x.astype(np.float32), ids, b, metric=metric, mask=mask)
    (sa, ra), (sb, rb) = a.result(), b.result()
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-5)
