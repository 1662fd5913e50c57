"""The compiled float16 -> float32 conversion every f16 kernel inlines (:func:`.widen.f16_to_f32`).

Imports numba and llvmlite: :mod:`._numba` imports this module when a kernel that calls
``f16_to_f32`` compiles, never before.

Where the CPU has F16C (x86-64 since 2012), the conversion is LLVM's ``fpext half to float``:
in a loop it vectorizes to ``vcvtph2ps``, one instruction per eight values. Elsewhere it is
the exact bit method (sign, exponent and mantissa moved into float32 position, then times
``2**112`` to rebias; inf/NaN get the all-ones exponent), branch-free so that it vectorizes
too. Both give ``x.astype(np.float32)`` bit for bit, except that signalling NaNs come out
quiet (no stored vector holds a NaN: ingest rejects them).
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["f16_to_f32", "HAVE_F16C"]

HAVE_F16C = "+f16c" in llvm.get_host_cpu_features().flatten().split(",")


@intrinsic
def _fpext_half(typingctx: Any, h: Any) -> Any:  # pragma: no cover - compiled
    if not isinstance(h, types.Integer) or getattr(h, "bitwidth", 0) != 16:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(h), codegen


@intrinsic
def _bits_as_f32(typingctx: Any, w: Any) -> Any:  # pragma: no cover - compiled
    if not isinstance(w, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32))
                               if signature.args[0].bitwidth > 32 else args[0],
                               ir.FloatType())

    return types.float32(w), codegen


_REBIAS = np.float32(2.0 ** 112)


@numba.njit(inline="always", cache=True)
def _f16_bits_method(h):  # pragma: no cover - compiled
    # shifts, masks and one add on values below 2**32, no comparison: LLVM narrows them to
    # 32-bit lanes although numba types them int64
    h = np.int64(h)
    top = (-((((h >> 10) & 0x1F) + 1) >> 5)) & 0x70000000  # exponent all ones: inf/NaN
    return _bits_as_f32(((h & 0x8000) << 16) | ((h & 0x7FFF) << 13) | top) * _REBIAS


@numba.njit(inline="always", cache=True)
def _f16_f16c(h):  # pragma: no cover - compiled
    return _fpext_half(h)


f16_to_f32 = _f16_f16c if HAVE_F16C else _f16_bits_method
