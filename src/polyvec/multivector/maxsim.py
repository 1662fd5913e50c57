"""Exact MaxSim: score(Q, P) = sum over query tokens of the best inner product with P's tokens."""

from __future__ import annotations

import numpy as np

from .._kernels import TopK, maxsim_reduce
from .._kernels._numba import resolve_backend
from .._kernels.maxsim import maxsim_f16

__all__ = ["maxsim_scores", "scan_multi", "TOKEN_BUDGET_BYTES"]

TOKEN_BUDGET_BYTES = 64 << 20  # the largest query-by-token similarity block held at once


def maxsim_scores(query: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, *,
                  backend: str = "auto") -> np.ndarray:
    """MaxSim of one query token set against every document of ``(tokens, offsets)``.

    Documents are processed in chunks so that the similarity block stays under the budget.
    float16 tokens are read in place by one numba kernel (widened and scored in float32, no
    float32 copy of the tokens per query).
    """
    if tokens.dtype == np.float16 and tokens.flags.c_contiguous \
            and resolve_backend(backend) == "numba":
        return maxsim_f16(query, tokens, offsets, backend="numba")
    ndoc = len(offsets) - 1
    out = np.empty(ndoc, dtype=np.float32)
    per_chunk = max(1, TOKEN_BUDGET_BYTES // (4 * max(len(query), 1)))
    d = 0
    while d < ndoc:
        # take documents until their tokens fill the budget (at least one document)
        end = int(np.searchsorted(offsets, offsets[d] + per_chunk, side="right")) - 1
        end = min(max(end, d + 1), ndoc)
        lo, hi = int(offsets[d]), int(offsets[end])
        block = tokens[lo:hi]
        if block.dtype != np.float32:
            block = block.astype(np.float32)
        sim = query @ block.T
        out[d:end] = maxsim_reduce(sim, offsets[d:end + 1] - lo, backend=backend)
        d = end
    return out


def scan_multi(queries: list[np.ndarray], tokens: np.ndarray, offsets: np.ndarray,
               row_ids: np.ndarray, topk: TopK, *, mask: np.ndarray | None = None) -> None:
    """Push exact MaxSim scores of each query token set into row ``i`` of ``topk``."""
    ndoc = len(offsets) - 1
    if ndoc == 0:
        return
    if mask is not None and not mask.all():
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return
        lens = offsets[rows + 1] - offsets[rows]
        new_off = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens, out=new_off[1:])
        token_rows = np.concatenate([np.arange(offsets[r], offsets[r + 1]) for r in rows])
        tokens, offsets, row_ids = tokens[token_rows], new_off, row_ids[rows]
    for i, q in enumerate(queries):
        topk.push(maxsim_scores(q, tokens, offsets)[None, :], row_ids, row=i)
