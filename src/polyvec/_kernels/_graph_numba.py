"""numba kernels of the graph walk (:mod:`.graph`); ``walk_numpy`` there is their twin.

Imports numba: :mod:`.graph` imports this module on a search's first use of the walk only.
Every kernel is a module-level function compiled with ``cache=True`` (no closures), so a new
process loads the machine code from numba's on-disk cache instead of compiling it again.
"""

from __future__ import annotations

import numba
import numpy as np

from ._prefetch import prefetch_row

__all__ = ["search", "selected_rows"]


@numba.njit(fastmath=True, cache=True, inline="always")
def _score(w, bias, qq, codes, norms, l2, v):  # pragma: no cover - compiled
    acc = np.float32(0.0)
    row = codes[v]
    for j in range(w.shape[0]):
        acc += w[j] * np.float32(row[j])
    acc += bias
    if l2:
        return np.float32(2.0) * acc - norms[v] - qq
    return acc

@numba.njit(cache=True)
def _keep(s, v, rsc, rids, rsize):  # pragma: no cover - compiled
    """Insert (s, v) into the sorted top list (rsc, rids) of rsize entries; new size."""
    cap = rsc.shape[0]
    if rsize == cap and s <= rsc[cap - 1]:
        return rsize
    pos = rsize if rsize < cap else cap - 1
    while pos > 0 and rsc[pos - 1] < s:
        rsc[pos], rids[pos] = rsc[pos - 1], rids[pos - 1]
        pos -= 1
    rsc[pos], rids[pos] = s, v
    return min(rsize + 1, cap)

@numba.njit(fastmath=True, cache=True)
def _walk(w, bias, qq, codes, norms, l2, neighbors, offsets, cum, entry, max_level, ef,
         visited, stamp, ids, sc, done, use_sel, sel, rsc, rids
         ):  # pragma: no cover - compiled
    cur = entry
    best = _score(w, bias, qq, codes, norms, l2, cur)
    for level in range(max_level, 0, -1):
        changed = True
        while changed:
            changed = False
            o = offsets[cur]
            for p in range(o + cum[level], o + cum[level + 1]):
                v = neighbors[p]
                if v < 0:
                    break
                s = _score(w, bias, qq, codes, norms, l2, v)
                if s > best:
                    best, cur, changed = s, v, True
    ids[0], sc[0], done[0] = cur, best, False
    size = 1
    rsize = 0
    if use_sel and sel[cur]:
        rsize = _keep(best, cur, rsc, rids, rsize)
    visited[cur] = stamp
    width = codes.shape[1] * codes.itemsize
    k = 0
    while k < size:
        if done[k]:
            k += 1
            continue
        done[k] = True
        o = offsets[ids[k]]
        # issue every unvisited neighbour's loads before scoring any of them
        for p in range(o, o + cum[1]):
            v = neighbors[p]
            if v < 0:
                break
            if visited[v] != stamp:
                for b in range(0, width, 64):
                    prefetch_row(codes, v, b // codes.itemsize)
        lowest = size
        for p in range(o, o + cum[1]):
            v = neighbors[p]
            if v < 0:
                break
            if visited[v] == stamp:
                continue
            visited[v] = stamp
            s = _score(w, bias, qq, codes, norms, l2, v)
            if use_sel and sel[v]:  # results: selected rows; the beam: every row
                rsize = _keep(s, v, rsc, rids, rsize)
            if size == ef and s <= sc[size - 1]:
                continue
            pos = size if size < ef else ef - 1
            while pos > 0 and sc[pos - 1] < s:
                if pos < ef:
                    sc[pos], ids[pos], done[pos] = sc[pos - 1], ids[pos - 1], done[pos - 1]
                pos -= 1
            sc[pos], ids[pos], done[pos] = s, v, False
            if size < ef:
                size += 1
            lowest = min(lowest, pos)
        k = lowest if lowest <= k else k + 1
    return size, rsize

@numba.njit(fastmath=True, cache=True)
def _refine(q, x, l2, ids, n, k, out_s, out_r):  # pragma: no cover - compiled
    """Exact top-k of the first n candidate rows (ties keep candidate order)."""
    d = q.shape[0]
    qq = np.float32(0.0)
    if l2:
        for t in range(d):
            qq += q[t] * q[t]
    filled = 0
    for j in range(n):
        r = ids[j]
        acc = np.float32(0.0)
        if l2:
            for t in range(d):
                diff = q[t] - x[r, t]
                acc += diff * diff
            acc = -acc
        else:
            for t in range(d):
                acc += q[t] * x[r, t]
        if filled == k and acc <= out_s[k - 1]:
            continue
        p = filled if filled < k else k - 1
        while p > 0 and out_s[p - 1] < acc:
            out_s[p], out_r[p] = out_s[p - 1], out_r[p - 1]
            p -= 1
        out_s[p], out_r[p] = acc, r
        if filled < k:
            filled += 1

@numba.njit(fastmath=True, cache=True)
def _scan(w, bias, qq, codes, norms, l2, rows, rsc, rids):  # pragma: no cover - compiled
    """Score the codes of ``rows`` (no walk); keep the best in (rsc, rids); their count."""
    width = codes.shape[1] * codes.itemsize
    rsize = 0
    for t in range(rows.shape[0]):
        if t + 4 < rows.shape[0]:
            for b in range(0, width, 64):
                prefetch_row(codes, rows[t + 4], b // codes.itemsize)
        v = rows[t]
        rsize = _keep(_score(w, bias, qq, codes, norms, l2, v), v, rsc, rids, rsize)
    return rsize

SCAN_AHEAD = 12  # rows whose codes the SQ8 scan prefetches ahead of the one it scores
_INT32_MAX = 2**31 - 1


@numba.njit(fastmath=True, cache=True)
def _dots_sq8(wi, codes, rows, lo, hi, out):  # pragma: no cover - compiled
    """``out[t - lo] = wi · codes[rows[t]]`` (int32) for ``t`` in [lo, hi), prefetching the
    codes ``SCAN_AHEAD`` rows ahead (the rows are scattered over the codes)."""
    d = codes.shape[1]
    n = rows.shape[0]
    for t in range(lo, hi):
        if t + SCAN_AHEAD < n:
            for b in range(0, d, 64):
                prefetch_row(codes, rows[t + SCAN_AHEAD], b)
        v = rows[t]
        acc = np.int32(0)
        for j in range(d):
            acc += np.int32(wi[j]) * np.int32(codes[v, j])
        out[t - lo] = acc


@numba.njit(fastmath=True, cache=True)
def _scan_sq8(w, bias, qq, codes, norms, l2, rows, rsc, rids, wi, buf
              ):  # pragma: no cover - compiled
    """``_scan`` for 8-bit codes in integer arithmetic: ``w`` rounded to int16 ``wi`` (as many
    bits as ``d`` 255-valued products keep inside int32), ``w·c ≈ (wi·c) / f``. Rows are
    scored a block at a time into ``buf`` and kept after (a ``_keep`` in the scoring loop
    stops it vectorizing: 2.5x slower)."""
    d = codes.shape[1]
    big = np.float32(0.0)
    for j in range(d):
        big = max(big, abs(w[j]))
    if big == 0:
        big = np.float32(1.0)
    f = np.float32(min(32767, _INT32_MAX // (255 * d))) / big
    inv = np.float32(1.0) / f
    for j in range(d):
        wi[j] = np.int16(np.rint(w[j] * f))
    n = rows.shape[0]
    for t in range(min(SCAN_AHEAD, n)):
        for b in range(0, d, 64):
            prefetch_row(codes, rows[t], b)
    rsize = 0
    for lo in range(0, n, buf.shape[0]):
        hi = min(n, lo + buf.shape[0])
        _dots_sq8(wi, codes, rows, lo, hi, buf)
        for t in range(lo, hi):
            v = rows[t]
            s = np.float32(buf[t - lo]) * inv + bias
            if l2:
                s = np.float32(2.0) * s - norms[v] - qq
            rsize = _keep(s, v, rsc, rids, rsize)
    return rsize


@numba.njit(cache=True)
def selected_rows(sel):  # pragma: no cover - compiled
    """The positions of ``sel``'s true entries, ascending: ``np.flatnonzero`` without its
    branch per entry (a random 10% mask costs that branch a mispredict every ~10 rows)."""
    count = 0
    for v in range(sel.shape[0]):
        count += sel[v]
    out = np.empty(count + 1, np.int64)
    c = 0
    for v in range(sel.shape[0]):
        out[c] = v
        c += sel[v]
    return out[:c]


@numba.njit(nogil=True, fastmath=True, cache=True)
def search(q, qr, sq8, scale, center, codes, norms, l2, neighbors, offsets, cum, entry,
           max_level, ef, kc, visited, state, use_sel, sel, scan, rows, use_map, remap, x, refine_k,
           out_s, out_r):  # pragma: no cover - compiled
    ids = np.empty(ef, np.int64)
    sc = np.empty(ef, np.float32)
    done = np.zeros(ef, np.bool_)
    rids = np.empty(kc, np.int64)
    rsc = np.empty(kc, np.float32)
    w = np.empty(q.shape[1], np.float32)
    wi = np.empty(q.shape[1], np.int16)
    buf = np.empty(256 if scan and sq8 else 1, np.int32)
    out_s[:] = -np.inf
    out_r[:] = -1
    for i in range(q.shape[0]):
        if state[0] >= np.uint32(0xFFFFFFFE):  # stamps wrap: start over
            visited[:] = 0
            state[0] = 0
        state[0] += 1
        bias = np.float32(0.0)
        qq = np.float32(0.0)
        for j in range(q.shape[1]):  # q·x̂ = w·c + bias
            w[j] = q[i, j] * scale[j] if sq8 else q[i, j]
            if sq8:
                bias += q[i, j] * center[j]
            if l2:
                qq += q[i, j] * q[i, j]
        if scan and sq8:  # the codes of ``rows`` scored one by one, no graph
            size, rsize = 0, _scan_sq8(w, bias, qq, codes, norms, l2, rows, rsc, rids, wi, buf)
        elif scan:
            size, rsize = 0, _scan(w, bias, qq, codes, norms, l2, rows, rsc, rids)
        else:
            size, rsize = _walk(w, bias, qq, codes, norms, l2, neighbors, offsets, cum, entry,
                                max_level, ef, visited, state[0], ids, sc, done, use_sel, sel,
                                rsc, rids)
        if use_sel or scan:
            n, top, top_s = rsize, rids, rsc
        else:
            n, top, top_s = min(size, kc), ids, sc
        if use_map:  # the graph's rows are these rows of x (and of the results)
            for t in range(n):
                top[t] = remap[top[t]]
        if refine_k > 0:
            _refine(qr[i], x, l2, top, n, refine_k, out_s[i], out_r[i])
        else:
            for t in range(n):
                out_s[i, t], out_r[i, t] = top_s[t], top[t]
