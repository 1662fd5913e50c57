"""``prefetch_row(a, i, j)``: a numba intrinsic issuing ``llvm.prefetch`` for ``&a[i, j]``.

numba has no prefetch of its own. A graph walk waits on memory: each neighbour's code lives
somewhere random in RAM, and issuing all of a node's neighbour loads before scoring the first
one lets them overlap instead of queueing one after another. Imports numba: import it only
from compiled-kernel factories.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["prefetch_row"]


@intrinsic
def prefetch_row(typingctx: Any, arr: Any, row: Any, col: Any) -> Any:
    """Prefetch (read, keep in all cache levels) the cache line holding ``arr[row, col]``."""
    sig = types.void(arr, row, col)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        inds = [context.cast(builder, a, t, types.intp)
                for a, t in zip(args[1:], signature.args[1:], strict=True)]
        ptr = cgutils.get_item_pointer2(
            context, builder, data=ary.data,
            shape=cgutils.unpack_tuple(builder, ary.shape, aryty.ndim),
            strides=cgutils.unpack_tuple(builder, ary.strides, aryty.ndim),
            layout=aryty.layout, inds=inds)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # rw = 0 (read), locality = 3 (keep), cache type = 1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen
