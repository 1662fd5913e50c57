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

@numba.njit(fastmath=True, cache=True, inline="always")
def _descend(w, bias, qq, codes, norms, l2, neighbors, offsets, cum, entry, max_level
             ):  # pragma: no cover - compiled
    """The greedy descent through the upper levels: level 0's entry node and its score."""
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
    return cur, best


@numba.njit(cache=True, inline="always")
def _prefetch_links(codes, neighbors, o, end, visited, stamp):  # pragma: no cover - compiled
    """Issue the loads of every unvisited neighbour's codes before any is scored."""
    width = codes.shape[1] * codes.itemsize
    for p in range(o, end):
        v = neighbors[p]
        if v < 0:
            break
        if visited[v] != stamp:
            for b in range(0, width, 64):
                prefetch_row(codes, v, b // codes.itemsize)


@numba.njit(fastmath=True, cache=True)
def _walk(w, bias, qq, codes, norms, l2, neighbors, offsets, cum, entry, max_level, ef,
          visited, stamp, ids, sc, done):  # pragma: no cover - compiled
    """The unfiltered level-0 beam: the best ``ef`` nodes seen, always expanding the best
    one not yet expanded; its size and the nodes it scored."""
    cur, best = _descend(w, bias, qq, codes, norms, l2, neighbors, offsets, cum, entry,
                         max_level)
    ids[0], sc[0], done[0] = cur, best, False
    size = 1
    visited[cur] = stamp
    scored = 1
    k = 0
    while k < size:
        if done[k]:
            k += 1
            continue
        done[k] = True
        o = offsets[ids[k]]
        _prefetch_links(codes, neighbors, o, o + cum[1], visited, stamp)
        lowest = size
        for p in range(o, o + cum[1]):
            v = neighbors[p]
            if v < 0:
                break
            if visited[v] == stamp:
                continue
            visited[v] = stamp
            s = _score(w, bias, qq, codes, norms, l2, v)
            scored += 1
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
    return size, scored


PROBE = 256  # nodes a filtered walk scores before it judges the selection's share near the query


@numba.njit(cache=True, inline="always")
def _before(s, v, hs, hi, j):  # pragma: no cover - compiled
    """Whether (s, v) pops before heap entry j: the higher score, then the lower row."""
    return s > hs[j] or (s == hs[j] and v < hi[j])


@numba.njit(cache=True)
def _heap_push(hs, hi, size, s, v):  # pragma: no cover - compiled
    """Push (s, v) onto the max-heap (hs, hi) of ``size`` entries; the new size."""
    j = size
    while j > 0:
        parent = (j - 1) >> 1
        if not _before(s, v, hs, hi, parent):
            break
        hs[j], hi[j] = hs[parent], hi[parent]
        j = parent
    hs[j], hi[j] = s, v
    return size + 1


@numba.njit(cache=True)
def _heap_pop(hs, hi, size):  # pragma: no cover - compiled
    """Remove the top of the max-heap (hs, hi) of ``size`` > 0 entries (read it first)."""
    size -= 1
    s, v = hs[size], hi[size]
    j = 0
    while True:
        c = 2 * j + 1
        if c >= size:
            break
        if c + 1 < size and _before(hs[c + 1], hi[c + 1], hs, hi, c):
            c += 1
        if not _before(hs[c], hi[c], hs, hi, size):  # (s, v) is still at [size]
            break
        hs[j], hi[j] = hs[c], hi[c]
        j = c
    hs[j], hi[j] = s, v
    return size


@numba.njit(fastmath=True, cache=True)
def _walk_sel(w, bias, qq, codes, norms, l2, neighbors, offsets, cum, entry, max_level,
              visited, stamp, sel, rsc, rids, hs, hi, budget, share
              ):  # pragma: no cover - compiled
    """The filtered level-0 walk (hnswlib's form): the results are the best ``len(rsc)``
    *selected* nodes seen; the candidates, every node seen that beats the worst result (all
    of them until the results fill), expanded best first through selected and unselected
    nodes alike, until the best candidate left is worse than the worst of full results.
    A filter far from the query (few selected rows near it) makes it walk further instead
    of stopping with the nearest selected rows it happened to meet.

    Gives up (the caller then scans the selected rows) once it has scored more than
    ``budget`` nodes (Lucene's rule, in the scan's cost), or, after ``PROBE`` nodes, where
    the selected rows met so far are under ``share`` of the nodes scored, or, at their rate,
    would need more than ``budget`` nodes to fill the results (a filter negatively
    correlated with the query: its rows are rare near the query, however common elsewhere).
    Returns (results kept, nodes scored, gave up)."""
    cap = rsc.shape[0]
    cur, best = _descend(w, bias, qq, codes, norms, l2, neighbors, offsets, cum, entry,
                         max_level)
    visited[cur] = stamp
    scored = 1
    rsize = 0
    if sel[cur]:
        rsize = _keep(best, cur, rsc, rids, rsize)
    hsize = _heap_push(hs, hi, 0, best, cur)
    while hsize > 0:
        sc, u = hs[0], hi[0]
        if rsize == cap and sc < rsc[cap - 1]:
            break
        hsize = _heap_pop(hs, hi, hsize)
        o = offsets[u]
        _prefetch_links(codes, neighbors, o, o + cum[1], visited, stamp)
        for p in range(o, o + cum[1]):
            v = neighbors[p]
            if v < 0:
                break
            if visited[v] == stamp:
                continue
            visited[v] = stamp
            s = _score(w, bias, qq, codes, norms, l2, v)
            scored += 1
            if rsize < cap or s > rsc[cap - 1]:
                hsize = _heap_push(hs, hi, hsize, s, v)
                if sel[v]:
                    rsize = _keep(s, v, rsc, rids, rsize)
        if scored > budget or (rsize < cap and scored >= PROBE and (
                rsize < share * scored
                or np.float64(scored) * cap > np.float64(budget) * max(rsize, 1))):
            return rsize, scored, True
    return rsize, scored, False

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
           max_level, ef, kc, visited, state, use_sel, sel, scan, rows, use_map, remap, x,
           refine_k, budget, share, out_s, out_r, stats):  # pragma: no cover - compiled
    """Each query's candidates (the unfiltered walk; with ``use_sel`` the filtered walk,
    falling back to a scan of the selected rows past ``budget`` nodes scored; with ``scan``
    the scan of ``rows``), refined exactly against ``x`` when ``refine_k`` > 0.
    ``stats[i]``: nodes scored, and 1 where query i scanned."""
    ids = np.empty(ef, np.int64)
    sc = np.empty(ef, np.float32)
    done = np.zeros(ef, np.bool_)
    # a filtered walk keeps ef selected rows, as its beam; a scan keeps ef rows too, all
    # refined (a scan of thousands of codes costs far more than refining ef of them)
    cap = ef if use_sel or scan else kc
    rids = np.empty(cap, np.int64)
    rsc = np.empty(cap, np.float32)
    heap = min(budget, codes.shape[0]) + cum[1] + 1 if use_sel else 1
    hs = np.empty(heap, np.float32)
    hi = np.empty(heap, np.int64)
    w = np.empty(q.shape[1], np.float32)
    wi = np.empty(q.shape[1], np.int16)
    buf = np.empty(256 if sq8 else 1, np.int32)
    out_s[:] = -np.inf
    out_r[:] = -1
    picked = rows
    found = False  # the selected rows, found on the first fallback to a scan
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
        scanned = scan
        scored = 0
        if not scan and use_sel:
            rsize, scored, gave_up = _walk_sel(w, bias, qq, codes, norms, l2, neighbors,
                                               offsets, cum, entry, max_level, visited,
                                               state[0], sel, rsc, rids, hs, hi, budget,
                                               share)
            if gave_up:  # the walk would cost more than the scan
                if not found:
                    picked, found = selected_rows(sel), True
                scanned = True
        elif not scan:
            size, scored = _walk(w, bias, qq, codes, norms, l2, neighbors, offsets, cum,
                                 entry, max_level, ef, visited, state[0], ids, sc, done)
        if scanned:
            scored += picked.shape[0]
            if sq8:
                rsize = _scan_sq8(w, bias, qq, codes, norms, l2, picked, rsc, rids, wi, buf)
            else:
                rsize = _scan(w, bias, qq, codes, norms, l2, picked, rsc, rids)
        stats[i, 0], stats[i, 1] = scored, scanned
        if scanned:
            n, top, top_s = rsize if refine_k > 0 else min(rsize, kc), rids, rsc
        elif use_sel:
            n, top, top_s = min(rsize, kc), rids, rsc
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
