"""Sparse scoring: exact dot products (and BM25) over CSR rows and over inverted lists.

Three scorers, one answer:

- :func:`sparse_scores`, the reference: each stored entry finds its query weight by binary
  search in the query's sorted indices; a row's score is the float64 sum of its matched
  entries' float32 contributions in index order, then rounded to float32.
- :meth:`Postings.scores`, its numpy twin over a sealed block's inverted lists: only the
  lists of the query's terms, every entry of them (term at a time, in the same order).
- :meth:`Postings.top`, the numba kernel: MaxScore's dynamic pruning (Turtle & Flood 1995)
  in windows of :data:`WINDOW` rows with per-block maxima, as Lucene's
  ``MaxScoreBulkScorer`` (block-max MaxScore: Ding & Suel 2011; Mallia et al. 2019). In a
  window each list's bound is the largest of its blocks there; lists are ordered by bound,
  and the smallest whose bounds sum below the k-th best score so far (``theta``) are
  *non-essential*. A window whose bounds sum below ``theta`` is skipped whole. The essential
  lists are scored term at a time into the window's accumulators (their rows are the only
  candidates); the non-essential lists, largest bound first, are then looked up for the
  candidates whose partial score plus the bounds left can still pass ``theta`` (each list
  walked, or searched when few candidates remain). A pruned row could not have entered the
  top k (a tie with the k-th still counts: the lower row wins), so results equal
  exhaustive scoring. Scores are float64 sums of the same float32 contributions in another
  order: equal to the reference's whenever those sums are exact, as they are for
  contributions within a factor of 2^29 of each other (BM25's always are).

A contribution is ``w * v`` (a Sparse field: the query weight times the stored value, times
the field's ``scale`` for ``u8`` values) or Lucene's BM25 term score ``w * tf / (tf + norm)``
with ``norm = k1 * (1 - b + b * dl / avgdl)`` (a BM25 field: ``w`` is the term's idf times
its count in the query). Pruning needs non-negative contributions: a Sparse query with a
negative weight, or a block holding a negative value, is scored without it.

Layout of a block's postings (memory-mapped from a sealed segment's files, or built from its
CSR rows by segments written before they were stored): ``terms`` (sorted uint32), ``starts``
(int64, ``len(terms) + 1``), ``rows`` (uint32, increasing within a term), ``values``
(float32, or uint8 / uint16 when the field's values fit), and per block of :data:`BLOCK`
postings of a term: ``blk_last`` (its last row), ``blk_max`` (its largest value) and, for
BM25, ``blk_minlen`` (its shortest document).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._numba import entry_point, lazy_njit, register_warmer, resolve_backend
from .topk import TopK

__all__ = ["BLOCK", "Postings", "Scoring", "scan_sparse", "sparse_scores"]

BLOCK = 128  # postings per block-max entry (Lucene's block size)
WINDOW = 2048  # rows per window of the pruned kernel (its accumulators stay in cache)
_NONE = 9_223_372_036_854_775_807  # int64's largest: "no row"
_NO_MASK = np.zeros(0, np.bool_)
_NO_LENGTHS = np.zeros(0, np.int32)  # (read only, as a segment's memory-mapped lengths)
_NO_LENGTHS.setflags(write=False)
_FILES = ("terms", "starts", "rows", "values", "blk_last", "blk_max", "blk_minlen")


def sparse_scores(q_idx: np.ndarray, q_val: np.ndarray, indptr: np.ndarray,
                  indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, matched)`` of one query (sorted uint32 ``q_idx``, float32 ``q_val``)
    against CSR rows: float32 dot products, and whether a row shares any index with it."""
    n = len(indptr) - 1
    if len(q_idx) == 0 or len(indices) == 0:
        return np.zeros(n, np.float32), np.zeros(n, bool)
    pos = np.minimum(np.searchsorted(q_idx, indices), len(q_idx) - 1)
    hit = q_idx[pos] == indices
    contrib = np.where(hit, values.astype(np.float32) * q_val[pos], np.float32(0))
    row = np.repeat(np.arange(n), np.diff(indptr))
    scores = np.bincount(row, weights=contrib, minlength=n).astype(np.float32)
    matched = np.bincount(row, weights=hit, minlength=n) > 0
    return scores, matched


@dataclass(frozen=True)
class Scoring:
    """How a posting's value becomes a contribution: ``w * value * scale`` (``bm25`` False),
    or BM25's ``w * tf / (tf + norm(dl))`` with ``k1``, ``b`` and the collection's ``avgdl``."""

    bm25: bool = False
    scale: float = 1.0
    k1: float = 0.0
    b: float = 0.0
    avgdl: float = 0.0

    def norms(self, lengths: np.ndarray) -> np.ndarray:
        """BM25's per-document float32 ``norm`` (the kernel's formula, vectorised)."""
        if self.avgdl <= 0:
            return np.full(len(lengths), np.float32(self.k1 * (1 - self.b)), np.float32)
        return (self.k1 * ((1 - self.b) + self.b * np.asarray(lengths, np.float64)
                           / self.avgdl)).astype(np.float32)

    def entries(self, indptr: np.ndarray, values: np.ndarray,
                lengths: np.ndarray | None) -> np.ndarray:
        """CSR rows' stored values as the float32 factors a query weight multiplies: BM25's
        ``tf / (tf + norm)`` of each entry's row, or the value times ``scale``."""
        v = values.astype(np.float32)
        if self.bm25:
            row = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            return v / (v + self.norms(np.asarray(lengths))[row])
        return v * np.float32(self.scale) if self.scale != 1 else v


class Postings:
    """The inverted lists of one sealed block (see the module's layout)."""

    def __init__(self, arrays: dict[str, np.ndarray], n: int,
                 lengths: np.ndarray | None = None) -> None:
        self.terms, self.starts = arrays["terms"], arrays["starts"]
        self.rows, self.values = arrays["rows"], arrays["values"]
        self.blk_last, self.blk_max = arrays["blk_last"], arrays["blk_max"]
        self.blk_minlen = arrays.get("blk_minlen", np.zeros(0, np.int32))
        self.n = n
        self.lengths = _NO_LENGTHS if lengths is None else lengths
        counts = np.diff(self.starts)
        self.blk_starts = np.zeros(len(self.terms) + 1, np.int64)
        np.cumsum((counts + BLOCK - 1) // BLOCK, out=self.blk_starts[1:])
        self.nonneg = bool(len(self.blk_max) == 0 or self._min_value() >= 0)
        self._entry: dict[bool, Any] = {}  # the kernel's entry points, by "no mask"

    def _min_value(self) -> float:
        return float(self.values.min()) if len(self.values) else 0.0

    @staticmethod
    def build(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
              lengths: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The arrays of CSR rows' inverted lists (with ``lengths``: a BM25 field's, whose
        values are term counts, then stored as uint16 when they fit)."""
        order = np.argsort(indices, kind="stable")  # (rows stay increasing within a term)
        sorted_idx = indices[order]
        terms, first = np.unique(sorted_idx, return_index=True)
        starts = np.append(first, len(sorted_idx)).astype(np.int64)
        rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.uint32),
                         np.diff(indptr))[order]
        vals = np.asarray(values)[order]
        if vals.dtype == np.float16:
            vals = vals.astype(np.float32)  # (numba has no float16 arithmetic on CPUs)
        if lengths is not None and (not len(vals) or (
                vals.min() >= 0 and vals.max() <= np.iinfo(np.uint16).max
                and bool((vals == np.floor(vals)).all()))):
            vals = vals.astype(np.uint16)  # (term counts)
        # blocks: every term's list cut in runs of BLOCK postings
        counts = np.diff(starts)
        nblk = (counts + BLOCK - 1) // BLOCK
        blk_first = np.repeat(starts[:-1], nblk) + BLOCK * (
            np.arange(int(nblk.sum())) - np.repeat(np.cumsum(nblk) - nblk, nblk))
        blk_end = np.minimum(blk_first + BLOCK, np.repeat(starts[1:], nblk))
        out = {"terms": terms.astype(np.uint32), "starts": starts, "rows": rows,
               "values": vals, "blk_last": rows[blk_end - 1] if len(rows) else rows[:0],
               "blk_max": (np.maximum.reduceat(vals, blk_first).astype(np.float32)
                           if len(vals) else np.zeros(0, np.float32))}
        if lengths is not None:
            lens = np.asarray(lengths, np.int32)[rows]
            out["blk_minlen"] = (np.minimum.reduceat(lens, blk_first) if len(lens)
                                 else np.zeros(0, np.int32))
        return out

    @classmethod
    def from_files(cls, files: Any, prefix: str, n: int,
                   lengths: np.ndarray | None = None) -> Postings | None:
        """The postings stored as ``{prefix}.post_*`` arrays, ``None`` when absent."""
        names = {f: f"{prefix}.post_{f}" for f in _FILES if f != "blk_minlen" or
                 lengths is not None}
        if not all(name in files.arrays for name in names.values()):
            return None
        return cls({f: files[name] for f, name in names.items()}, n, lengths)

    @staticmethod
    def file_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {f"{prefix}.post_{f}": a for f, a in arrays.items()}

    def consistent(self) -> bool:
        """Whether the arrays agree with each other and with the block's ``n`` rows."""
        nnz, nblk = len(self.rows), int(self.blk_starts[-1])
        return (len(self.starts) == len(self.terms) + 1 and int(self.starts[0]) == 0
                and int(self.starts[-1]) == nnz == len(self.values)
                and len(self.blk_last) == len(self.blk_max) == nblk
                and (not len(self.blk_minlen) or len(self.blk_minlen) == nblk)
                and (not nnz or int(self.rows.max()) < self.n)
                and bool((np.diff(self.starts) > 0).all())
                and bool((np.diff(self.terms.astype(np.int64)) > 0).all()))

    def positions(self, q_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(j, t)``: the positions ``j`` in ``q_idx`` of the indices this block holds, and
        their positions ``t`` in ``terms``."""
        if not len(self.terms) or not len(q_idx):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if resolve_backend("auto", light=True) == "numba":
            t, j = _lookup(self.terms, np.ascontiguousarray(q_idx, np.uint32))
            return j, t
        pos = np.minimum(np.searchsorted(self.terms, q_idx), len(self.terms) - 1)
        j = np.flatnonzero(self.terms[pos] == q_idx)
        return j, pos[j].astype(np.int64)

    def lists(self, q_idx: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(position in q_idx, rows, values)`` of each query index the block holds."""
        j, t = self.positions(q_idx)
        return [(int(a), self.rows[self.starts[b]:self.starts[b + 1]],
                 self.values[self.starts[b]:self.starts[b + 1]]) for a, b in zip(j, t, strict=True)]

    def scores(self, q_idx: np.ndarray, q_val: np.ndarray, scoring: Scoring = Scoring()
               ) -> tuple[np.ndarray, np.ndarray]:
        """Every row's score and whether it matched: the numpy twin (exhaustive)."""
        scores = np.zeros(self.n, np.float64)
        matched = np.zeros(self.n, bool)
        norms = scoring.norms(self.lengths) if scoring.bm25 else None
        for j, rows, vals in self.lists(q_idx):
            v = vals.astype(np.float32)
            if norms is None:
                x = v * np.float32(scoring.scale) if scoring.scale != 1 else v
            else:
                x = v / (v + norms[rows])
            scores[rows] += x * np.float32(q_val[j])
            matched[rows] = True
        return scores.astype(np.float32), matched

    def top(self, q_idx: np.ndarray, q_val: np.ndarray, k: int, scoring: Scoring = Scoring(),
            *, mask: np.ndarray | None = None, theta: float = -math.inf,
            backend: str = "auto") -> tuple[np.ndarray, np.ndarray, int]:
        """``(scores, rows, visited)``: the rows (of ``mask``'s) that score above ``theta``,
        at most ``k`` of them, best first (ties: the lower row), and how many candidates the
        kernel scored (numpy: every matched row)."""
        if resolve_backend(backend, light=True) == "numpy":
            s, keep = self.scores(q_idx, q_val, scoring)
            if mask is not None:
                keep &= mask
            rows = np.flatnonzero(keep & (s > theta))
            best = rows[np.lexsort((rows, -s[rows]))[:k]]
            return s[best], best.astype(np.int64), len(rows)
        q_idx = np.ascontiguousarray(q_idx, np.uint32)
        q_val = np.ascontiguousarray(q_val, np.float32)
        prune = self.nonneg and (scoring.bm25 or bool((q_val >= 0).all()))
        args = (self.terms, q_idx, q_val, self.starts, self.rows, self.values, self.lengths,
                scoring.bm25, np.float32(scoring.scale), float(scoring.k1), float(scoring.b),
                float(scoring.avgdl), self.blk_starts, self.blk_last, self.blk_max,
                self.blk_minlen, _NO_MASK if mask is None else np.ascontiguousarray(mask, bool),
                int(k), float(theta), prune)
        entry = self._entry.get(mask is None)  # (its types are fixed: skip the dispatcher)
        if entry is not None:
            return entry(*args)
        out = _topk(*args)
        self._entry[mask is None] = entry_point(_topk.compiled(), args)  # type: ignore[attr-defined]
        return out


@lazy_njit(inline="always")
def _lower_bound(a, lo, hi, x):  # pragma: no cover
    """The first position in ``a[lo:hi]`` (sorted) holding a value ``>= x`` (``hi``: none)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


_lower_bound._polyvec_compiled = _lower_bound.compiled  # type: ignore[attr-defined]


@lazy_njit()
def _lookup(terms, q_idx):  # pragma: no cover
    """``(t, j)``: positions in ``terms`` of the query's indices it holds, and theirs in
    ``q_idx`` (both sorted: one merge)."""
    t_out = np.empty(len(q_idx), np.int64)
    j_out = np.empty(len(q_idx), np.int64)
    n = 0
    lo = 0
    for j in range(len(q_idx)):
        x = q_idx[j]
        lo = _lower_bound(terms, lo, len(terms), x)
        if lo < len(terms) and terms[lo] == x:
            t_out[n] = lo
            j_out[n] = j
            n += 1
    return t_out[:n], j_out[:n]


_lookup._polyvec_compiled = _lookup.compiled  # type: ignore[attr-defined]


@lazy_njit(inline="always")
def _first_at_least(rows, blk_starts, blk_last, starts, t, p, end, x):  # pragma: no cover
    """The first position from ``p`` in term ``t``'s list whose row is ``>= x``: whole blocks
    skipped by their last row, then a binary search in the block."""
    g = blk_starts[t] + (p - starts[t]) // BLOCK
    last = blk_starts[t + 1] - 1
    while g < last and blk_last[g] < x:
        g += 1
    return _lower_bound(rows, max(p, starts[t] + (g - blk_starts[t]) * BLOCK),
                        min(end, starts[t] + (g - blk_starts[t] + 1) * BLOCK), x)


_first_at_least._polyvec_compiled = _first_at_least.compiled  # type: ignore[attr-defined]


@lazy_njit(inline="always")
def _sift_down(hs, hr, size, s, d):  # pragma: no cover
    """``(s, d)`` put at the root of the min-heap ``hs[:size]``/``hr[:size]`` (the worst on
    top: the lowest score, then the higher row) and sifted down."""
    c = 0
    while True:
        ch = 2 * c + 1
        if ch >= size:
            break
        if ch + 1 < size and (hs[ch + 1] < hs[ch] or (hs[ch + 1] == hs[ch]
                                                       and hr[ch + 1] > hr[ch])):
            ch += 1
        if hs[ch] > s or (hs[ch] == s and hr[ch] < d):
            break
        hs[c] = hs[ch]
        hr[c] = hr[ch]
        c = ch
    hs[c] = s
    hr[c] = d


_sift_down._polyvec_compiled = _sift_down.compiled  # type: ignore[attr-defined]


@lazy_njit(inline="always")
def _contrib(v, w, dl, bm25, scale, k1, b, avgdl):  # pragma: no cover
    """A posting's contribution (float32, the reference's operations in its order)."""
    x = np.float32(v)
    if bm25:
        if avgdl > 0:
            norm = np.float32(k1 * ((1.0 - b) + b * dl / avgdl))
        else:
            norm = np.float32(k1 * (1.0 - b))
        return w * (x / (x + norm))
    if scale != 1:
        x = x * scale
    return w * x


_contrib._polyvec_compiled = _contrib.compiled  # type: ignore[attr-defined]


@lazy_njit()
def _topk(terms, q_idx, q_val, starts, rows, values, lengths, bm25, scale, k1, b, avgdl,
          blk_starts, blk_last, blk_max, blk_minlen, mask, k, theta0, prune):  # pragma: no cover
    tpos, qj = _lookup(terms, q_idx)
    m = len(tpos)
    w = np.empty(m, np.float32)
    for j in range(m):
        w[j] = q_val[qj[j]]
    out_s = np.full(k, -np.inf, np.float32)  # a min-heap: the worst of the k at the root
    out_r = np.full(k, -1, np.int64)
    count = 0
    visited = 0
    theta = theta0
    none = _NONE  # (a literal: numba would unpickle np.iinfo's result on every call)
    has_mask = len(mask) > 0
    pos = np.empty(m, np.int64)  # each list's next entry
    end = np.empty(m, np.int64)
    for j in range(m):
        pos[j] = starts[tpos[j]]
        end[j] = starts[tpos[j] + 1]
    wb = np.zeros(m, np.float64)  # each list's bound within the window
    prefix = np.zeros(m, np.float64)
    order = np.zeros(m, np.int64)
    essential = np.zeros(m, np.bool_)
    acc = np.empty(WINDOW, np.float64)  # the window's partial scores, by row - d0
    seen = np.zeros(WINDOW, np.bool_)  # (acc[r] is set when seen[r] is)
    cand = np.empty(WINDOW, np.int64)  # the window's candidates (row - d0)
    while m > 0 and k > 0:
        d0 = none  # the window: WINDOW rows from the smallest next row
        for j in range(m):
            if pos[j] < end[j] and rows[pos[j]] < d0:
                d0 = np.int64(rows[pos[j]])
        if d0 == none:
            break
        wend = d0 + WINDOW
        total = 0.0
        for j in range(m):  # bounds: the largest block bound of the blocks in the window
            wb[j] = 0.0
            t = tpos[j]
            g = blk_starts[t] + (pos[j] - starts[t]) // BLOCK
            while g < blk_starts[t + 1] and pos[j] < end[j]:
                if rows[starts[t] + (g - blk_starts[t]) * BLOCK] >= wend:
                    break
                minlen = blk_minlen[g] if bm25 else 0
                bound = _contrib(blk_max[g], w[j], minlen, bm25, scale, k1, b, avgdl)
                if bound > wb[j]:
                    wb[j] = bound
                if blk_last[g] >= wend:
                    break
                g += 1
            total += wb[j]
        if not prune or total * (1.0 + 1e-9) >= theta:  # (a tie may still win by row)
            for i in range(m):  # order by bound, ascending (insertion: m is small)
                j = i
                while j > 0 and wb[order[j - 1]] > wb[i]:
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = i
            acc_b = 0.0
            for i in range(m):
                acc_b += wb[order[i]]
                prefix[i] = acc_b * (1.0 + 1e-9)  # (slack over float64 rounding)
            ess = 0  # order[:ess]: non-essential in this window (their bounds sum < theta)
            if prune:
                while ess < m and prefix[ess] < theta:
                    ess += 1
            for i in range(m):
                essential[order[i]] = i >= ess
            n = 0
            for j in range(m):  # essential lists, term at a time into the window
                if not essential[j]:
                    continue
                p = pos[j]
                while p < end[j] and rows[p] < wend:
                    d = np.int64(rows[p])
                    if not has_mask or mask[d]:
                        r = d - d0
                        if not seen[r]:
                            seen[r] = True
                            acc[r] = 0.0
                            cand[n] = r
                            n += 1
                        dl = lengths[d] if bm25 else 0
                        acc[r] += _contrib(values[p], w[j], dl, bm25, scale, k1, b, avgdl)
                    p += 1
                pos[j] = p
            visited += n
            for i in range(ess - 1, -1, -1):  # non-essential lists, largest bound first
                alive = 0  # the candidates that could still pass theta
                for c in range(n):
                    r = cand[c]
                    if (acc[r] + prefix[i]) * (1.0 + 1e-9) >= theta:
                        cand[alive] = r
                        alive += 1
                    else:
                        seen[r] = False
                n = alive
                if n == 0:
                    break
                j = order[i]
                p = pos[j]
                q = _first_at_least(rows, blk_starts, blk_last, starts, tpos[j], p, end[j],
                                    wend)  # the list's entries in the window: [p, q)
                if n * 8 < q - p:  # few candidates: look each up (binary search)
                    for c in range(n):
                        d = d0 + cand[c]
                        lo = _lower_bound(rows, p, q, d)
                        if lo < q and rows[lo] == d:
                            dl = lengths[d] if bm25 else 0
                            acc[cand[c]] += _contrib(values[lo], w[j], dl, bm25, scale, k1,
                                                     b, avgdl)
                else:  # else walk the list's window entries
                    for e in range(p, q):
                        r = np.int64(rows[e]) - d0
                        if seen[r]:
                            dl = lengths[d0 + r] if bm25 else 0
                            acc[r] += _contrib(values[e], w[j], dl, bm25, scale, k1, b,
                                               avgdl)
                pos[j] = q
            for c in range(n):
                r = cand[c]
                seen[r] = False
                d = d0 + r
                s = np.float32(acc[r])
                if s <= theta0 or (count == k and (s < out_s[0] or (
                        s == out_s[0] and d > out_r[0]))):  # (a tie: the lower row wins)
                    continue
                if count < k:  # sift up
                    c2 = count
                    count += 1
                    while c2 > 0:
                        pp = (c2 - 1) // 2
                        if out_s[pp] < s or (out_s[pp] == s and out_r[pp] > d):
                            break
                        out_s[c2] = out_s[pp]
                        out_r[c2] = out_r[pp]
                        c2 = pp
                    out_s[c2] = s
                    out_r[c2] = d
                else:
                    _sift_down(out_s, out_r, k, s, d)  # (in place of the worst)
                if count == k and prune and out_s[0] > theta:
                    theta = float(out_s[0])
        for j in range(m):  # every list past the window
            if pos[j] < end[j] and rows[pos[j]] < wend:
                pos[j] = _first_at_least(rows, blk_starts, blk_last, starts, tpos[j], pos[j],
                                         end[j], wend)
    res_s = np.empty(count, np.float32)  # pop the worst first into the back: best first
    res_r = np.empty(count, np.int64)
    for last in range(count - 1, -1, -1):
        res_s[last] = out_s[0]
        res_r[last] = out_r[0]
        _sift_down(out_s, out_r, last, out_s[last], out_r[last])
    return res_s, res_r, visited


@register_warmer
def _warm_topk() -> None:
    """Load the kernel for the types searches pass: a sealed segment's memory-mapped (read
    only) arrays of each value type."""
    def frozen(a: np.ndarray) -> np.ndarray:
        a.setflags(write=False)
        return a

    for vals, bm25 in ((np.ones(2, np.float32), False), (np.ones(2, np.uint8), False),
                       (np.ones(2, np.uint16), True)):
        lengths = frozen(np.ones(2, np.int32)) if bm25 else None
        arrays = Postings.build(np.array([0, 1, 2]), np.array([3, 3], np.uint32), vals,
                                lengths)
        p = Postings({f: frozen(a) for f, a in arrays.items()}, 2, lengths)
        scoring = Scoring(bm25=bm25, k1=0.9, b=0.4, avgdl=1.0)
        p.top(np.array([3], np.uint32), np.ones(1, np.float32), 1, scoring, backend="numba")
        p.top(np.array([3], np.uint32), np.ones(1, np.float32), 1, scoring,
              mask=np.ones(2, bool), backend="numba")


def scan_sparse(queries: list[tuple[np.ndarray, np.ndarray]], rows_: Any, row_ids: np.ndarray,
                topk: TopK, *, mask: np.ndarray | None = None,
                scoring: Scoring = Scoring()) -> None:
    """Push each query's exact scores against the rows (``rows_``: CSR ``indptr``,
    ``indices``, ``values``, a BM25 field's ``lengths``, and ``postings()``) that share an
    index with it and that ``mask`` selects into row ``i`` of ``topk``: through the inverted
    lists of sealed rows (pruned, the running k-th score as the bar), else the reference
    over every entry."""
    k = topk.shape[1]
    postings = rows_.postings()
    vals = None
    for i, (q_idx, q_val) in enumerate(queries):
        if postings is not None:
            s, rows, _ = postings.top(q_idx, q_val, k, scoring, mask=mask,
                                      theta=topk.floor(i))
            topk.push(s[None, :], row_ids[rows], row=i)
            continue
        if vals is None:  # (the same for every query of the batch)
            vals = scoring.entries(rows_.indptr, rows_.values, rows_.lengths)
        scores, keep = sparse_scores(q_idx, q_val, rows_.indptr, rows_.indices, vals)
        if mask is not None:
            keep &= mask
        rows = np.flatnonzero(keep)
        if len(rows):
            topk.push(scores[rows][None, :], row_ids[rows], row=i)
