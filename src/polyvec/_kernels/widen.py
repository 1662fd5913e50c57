"""float16 -> float32, exactly, a block at a time.

numpy's ``astype(np.float32)`` of a float16 array runs a scalar conversion per element (about
10 ns each here): an exact scan of 200,000 x 128 f16 vectors spent ~250 ms converting and ~25
ms multiplying. The numba twin converts with :func:`f16_to_f32`, the one conversion every f16
kernel inlines (``vcvtph2ps`` where the CPU has F16C, else a branch-free bit method), which
vectorizes: a batch scan widens a block of rows into a small reused buffer, then multiplies
it with BLAS (few queries take the fused kernel of :mod:`.scan` instead)."""

from __future__ import annotations

import numpy as np

from ._numba import compiled_twin, lazy_njit, register_warmer, resolve_backend

__all__ = ["widen_f16", "widen_f16_numpy", "f16_to_f32"]


@compiled_twin("polyvec._kernels._f16_numba", "f16_to_f32")
def f16_to_f32(h):
    """The float32 value of the float16 bits ``h`` (uint16), exactly. Compiled kernels call
    :mod:`._f16_numba`'s twin, inlined: ``vcvtph2ps`` where the CPU has F16C, else the
    branch-free bit method; either vectorizes."""
    return np.float32(np.uint16(h).view(np.float16))


def widen_f16_numpy(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Reference twin: ``out[:len(x)] = x`` as float32; returns that part of ``out``."""
    view = out[:len(x)]
    view[...] = x
    return view


def _widen_loop(bits, out):  # pragma: no cover - compiled
    n, d = bits.shape
    for i in range(n):
        for j in range(d):
            out[i, j] = f16_to_f32(bits[i, j])


_widen_numba = lazy_njit()(_widen_loop)


def widen_f16(x: np.ndarray, out: np.ndarray, *, backend: str = "auto") -> np.ndarray:
    """``x`` (float16, (n, d)) widened into the first ``n`` rows of ``out`` (float32, C order,
    at least (n, d)); returns them. Values equal ``x.astype(np.float32)``, bit for bit."""
    if x.dtype != np.float16 or x.ndim != 2 or out.dtype != np.float32 or \
            out.shape[1:] != x.shape[1:] or len(out) < len(x) or not out.flags.c_contiguous:
        raise ValueError(f"widen_f16: expected float16 (n, d) into float32 (>= n, d), got "
                         f"{x.dtype} {x.shape} into {out.dtype} {out.shape}")
    if resolve_backend(backend) != "numba" or not x.flags.c_contiguous:
        return widen_f16_numpy(x, out)
    view = out[:len(x)]
    _widen_numba(x.view(np.uint16), view)
    return view


@register_warmer
def _warm_widen() -> None:
    x = np.zeros((1, 4), np.float16)
    widen_f16(x, np.empty((1, 4), np.float32))
    x.flags.writeable = False  # sealed segments are read-only maps: their own signature
    widen_f16(x, np.empty((1, 4), np.float32))
