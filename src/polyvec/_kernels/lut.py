"""Residual codes of the compressed token index, and lookup-table (WARP-style) scoring.

A token ``x`` assigned to centroid ``c`` stores its residual ``r = x - c`` quantized per
dimension into ``2**nbits`` buckets (``nbits`` in 1, 2, 4): bucket ``b`` of value ``v`` is the
number of cut-offs strictly below ``v`` (``searchsorted(cutoffs, v, side="left")``). Codes are
packed little-endian: byte ``j`` holds dimensions ``j*per .. j*per + per - 1`` (``per = 8 //
nbits``), dimension ``j*per + k`` in bits ``k*nbits .. (k+1)*nbits - 1``.

Scoring a packed code against a query token ``q`` never decompresses: a table over byte values,
``lut[j, v] = sum_k q[j*per + k] * weights[(v >> k*nbits) & mask]``, turns the residual dot
product into one lookup per byte. :func:`lut_candidates` walks the probed posting lists of
every query token, keeps the best score per (document, query token) and sums per document,
imputing a missing-similarity estimate for the query tokens that did not reach a document.

Every kernel has a numpy twin; ``backend="numba"`` picks the compiled one.
"""

from __future__ import annotations

import numpy as np

from ._numba import lazy_njit, resolve_backend
from .widen import f16_to_f32

prange = range  # replaced by numba.prange when a parallel kernel is compiled

__all__ = [
    "NBITS",
    "code_bytes",
    "pack_residuals",
    "unpack_codes",
    "decode_residuals",
    "byte_lut",
    "lut_candidates",
    "top_per_row",
    "gather_f32",
]

NBITS = (1, 2, 4)


def code_bytes(d: int, nbits: int) -> int:
    """Bytes of one packed residual of dimension ``d``."""
    return d * nbits // 8


# ----------------------------------------------------------------------------- packing


def _pack_numpy(x: np.ndarray, centroids: np.ndarray, cids: np.ndarray, cutoffs: np.ndarray,
                nbits: int) -> np.ndarray:
    r = x - centroids[cids.astype(np.int64)]
    b = np.searchsorted(cutoffs, r, side="left").astype(np.uint8)  # (n, d)
    per = 8 // nbits
    b = b.reshape(len(x), -1, per)
    out = np.zeros(b.shape[:2], dtype=np.uint8)
    for k in range(per):
        out |= (b[:, :, k] << np.uint8(k * nbits)).astype(np.uint8)
    return out


def _pack_loop(x, centroids, cids, cutoffs, nbits, out):  # pragma: no cover
    n, d = x.shape
    per = 8 // nbits
    ncut = cutoffs.shape[0]
    for t in prange(n):
        c = cids[t]
        for j in range(d // per):
            byte = 0
            for k in range(per):
                dim = j * per + k
                v = x[t, dim] - centroids[c, dim]
                b = 0
                while b < ncut and cutoffs[b] < v:
                    b += 1
                byte |= b << (k * nbits)
            out[t, j] = byte


_pack_parallel = lazy_njit(parallel=True)(_pack_loop)
_pack_serial = lazy_njit()(_pack_loop)
_PARALLEL_MIN_TOKENS = 1 << 14


def pack_residuals(x: np.ndarray, centroids: np.ndarray, cids: np.ndarray,
                   cutoffs: np.ndarray, nbits: int, *, backend: str = "auto") -> np.ndarray:
    """Packed codes ``(n, d * nbits // 8)`` uint8 of the residuals ``x - centroids[cids]``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    cutoffs = np.ascontiguousarray(cutoffs, dtype=np.float32)
    if resolve_backend(backend) == "numpy":
        return _pack_numpy(x, centroids, cids, cutoffs, nbits)
    out = np.empty((len(x), code_bytes(x.shape[1], nbits)), dtype=np.uint8)
    if len(x):
        kernel = _pack_parallel if len(x) >= _PARALLEL_MIN_TOKENS else _pack_serial
        kernel(x, centroids, np.ascontiguousarray(cids), cutoffs, nbits, out)
    return out


# ----------------------------------------------------------------------------- decoding


def unpack_codes(codes: np.ndarray, nbits: int) -> np.ndarray:
    """Bucket ids ``(n, d)`` uint8 from packed codes ``(n, d * nbits // 8)``."""
    per = 8 // nbits
    mask = np.uint8((1 << nbits) - 1)
    shifts = (np.arange(per, dtype=np.uint8) * np.uint8(nbits))
    b = (codes[:, :, None] >> shifts[None, None, :]) & mask
    return b.reshape(len(codes), -1)


def _decode_loop(codes, weights, nbits, out):  # pragma: no cover
    n, nb = codes.shape
    per = 8 // nbits
    mask = (1 << nbits) - 1
    for t in prange(n):
        for j in range(nb):
            v = codes[t, j]
            for k in range(per):
                out[t, j * per + k] = weights[(v >> (k * nbits)) & mask]


_decode_parallel = lazy_njit(parallel=True)(_decode_loop)
_decode_serial = lazy_njit()(_decode_loop)


def decode_residuals(codes: np.ndarray, weights: np.ndarray, nbits: int, *,
                     backend: str = "auto") -> np.ndarray:
    """Reconstructed residuals ``(n, d)`` f32: each bucket id replaced by its weight."""
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    if resolve_backend(backend) == "numpy":
        return weights[unpack_codes(codes, nbits)]
    out = np.empty((len(codes), codes.shape[1] * (8 // nbits)), dtype=np.float32)
    if len(codes):
        kernel = _decode_parallel if len(codes) >= _PARALLEL_MIN_TOKENS else _decode_serial
        kernel(np.ascontiguousarray(codes), weights, nbits, out)
    return out


# ----------------------------------------------------------------------------- scoring


def byte_lut(q: np.ndarray, weights: np.ndarray, nbits: int) -> np.ndarray:
    """Table ``(d * nbits // 8, 256)`` f32: the residual dot product of every byte value."""
    per = 8 // nbits
    values = np.arange(256, dtype=np.uint8)[None, :]
    shifts = np.arange(per, dtype=np.uint8) * np.uint8(nbits)
    buckets = (values >> shifts[:, None]) & np.uint8((1 << nbits) - 1)  # (per, 256)
    w = np.asarray(weights, dtype=np.float32)[buckets]  # (per, 256)
    qb = np.asarray(q, dtype=np.float32).reshape(-1, per)  # (nb, per)
    return (qb @ w).astype(np.float32)


def _lut_candidates_numpy(Q, probe_cids, probe_scores, mse, list_offsets, post_docs,
                          post_codes, weights, nbits, selection):
    docs_all, gains_all = [], []
    for i in range(len(Q)):
        lut = byte_lut(Q[i], weights, nbits)
        idx_parts, base_parts = [], []
        for c, s in zip(probe_cids[i], probe_scores[i], strict=True):
            lo, hi = int(list_offsets[c]), int(list_offsets[c + 1])
            idx_parts.append(np.arange(lo, hi))
            base_parts.append(np.full(hi - lo, s, dtype=np.float32))
        idx = np.concatenate(idx_parts)
        base = np.concatenate(base_parts)
        docs = post_docs[idx].astype(np.int64)
        if selection is not None:
            keep = selection[docs]
            idx, base, docs = idx[keep], base[keep], docs[keep]
        if len(idx) == 0:
            continue
        codes = post_codes[idx]
        score = base + lut[np.arange(codes.shape[1])[None, :], codes].sum(axis=1,
                                                                          dtype=np.float32)
        order = np.lexsort((-score, docs))
        docs, score = docs[order], score[order]
        first = np.ones(len(docs), dtype=bool)
        first[1:] = docs[1:] != docs[:-1]
        docs_all.append(docs[first])
        gains_all.append(score[first] - mse[i])
    if not docs_all:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    docs = np.concatenate(docs_all)
    gains = np.concatenate(gains_all)
    uniq, inv = np.unique(docs, return_inverse=True)
    acc = np.zeros(len(uniq), dtype=np.float64)
    np.add.at(acc, inv, gains)
    return uniq, (acc + float(np.sum(mse, dtype=np.float64))).astype(np.float32)


def _lut_candidates_loop(Q, probe_cids, probe_scores, mse, list_offsets, post_docs,
                         post_codes, weights, nbits, selection, use_selection, pos,
                         total):  # pragma: no cover
    m = Q.shape[0]
    nprobe = probe_cids.shape[1]
    nb = post_codes.shape[1]
    per = 8 // nbits
    mask = (1 << nbits) - 1
    lut = np.empty((nb, 256), dtype=np.float32)
    wtab = np.empty((per, 256), dtype=np.float32)
    for k in range(per):
        for v in range(256):
            wtab[k, v] = weights[(v >> (k * nbits)) & mask]
    cand = np.empty(total, dtype=np.int64)  # compact slot -> document row
    acc = np.zeros(total, dtype=np.float32)  # sum over query tokens of (best - mse)
    best = np.empty(total, dtype=np.float32)  # best score of the current query token
    stamp = np.full(total, -1, dtype=np.int32)  # query token that last wrote ``best``
    touched = np.empty(total, dtype=np.int32)  # slots reached by the current query token
    n = 0
    mse_sum = np.float32(0.0)
    for i in range(m):
        mse_sum += mse[i]
        # the byte table of query token i (a small per-dimension table folded per byte)
        for j in range(nb):
            for v in range(256):
                lut[j, v] = 0.0
            for k in range(per):
                qv = Q[i, j * per + k]
                for v in range(256):
                    lut[j, v] += qv * wtab[k, v]
        nt = 0
        for p in range(nprobe):
            c = probe_cids[i, p]
            cscore = probe_scores[i, p]
            for e in range(list_offsets[c], list_offsets[c + 1]):
                doc = post_docs[e]
                if use_selection and not selection[doc]:
                    continue
                s = cscore
                for j in range(nb):
                    s += lut[j, post_codes[e, j]]
                slot = pos[doc]
                if slot < 0:
                    slot = n
                    pos[doc] = slot
                    cand[slot] = doc
                    acc[slot] = 0.0
                    n += 1
                if stamp[slot] != i:
                    stamp[slot] = i
                    best[slot] = s
                    touched[nt] = slot
                    nt += 1
                elif s > best[slot]:
                    best[slot] = s
        for t in range(nt):
            slot = touched[t]
            acc[slot] += best[slot] - mse[i]
    out_docs = np.empty(n, dtype=np.int64)
    out_scores = np.empty(n, dtype=np.float32)
    for slot in range(n):
        out_docs[slot] = cand[slot]
        out_scores[slot] = acc[slot] + mse_sum
        pos[cand[slot]] = -1  # leave the scratch clean for the next query
    return out_docs, out_scores


_lut_candidates_serial = lazy_njit()(_lut_candidates_loop)


def lut_candidates(Q: np.ndarray, probe_cids: np.ndarray, probe_scores: np.ndarray,
                   mse: np.ndarray, list_offsets: np.ndarray, post_docs: np.ndarray,
                   post_codes: np.ndarray, weights: np.ndarray, nbits: int,
                   selection: np.ndarray | None, *, pos: np.ndarray | None = None,
                   backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Approximate MaxSim of every document reached by the probed posting lists.

    Parameters
    ----------
    Q : (m, d) f32 query tokens.
    probe_cids, probe_scores : (m, nprobe) probed centroid ids and their scores ``q_i . c``.
    mse : (m,) f32 missing-similarity estimate of each query token, added for a document
        that no posting of that query token reached.
    list_offsets : (K + 1,) int64 bounds of each centroid's postings.
    post_docs, post_codes : document row and packed residual of each posting.
    selection : (n_docs,) bool or None; postings of unselected documents are skipped.
    pos : (n_docs,) int32 scratch, all -1 (numba only; left all -1 on return).

    Returns
    -------
    (docs int64, scores f32) of every reached document, in no particular order.
    """
    if resolve_backend(backend) == "numpy":
        return _lut_candidates_numpy(Q, probe_cids, probe_scores, mse, list_offsets,
                                     post_docs, post_codes, weights, nbits, selection)
    lo = list_offsets[probe_cids]
    hi = list_offsets[probe_cids + 1]
    total = int((hi - lo).sum())
    if pos is None:
        n_docs = int(post_docs.max()) + 1 if len(post_docs) else 0
        if selection is not None:
            n_docs = max(n_docs, len(selection))
        pos = np.full(n_docs, -1, dtype=np.int32)
    use_sel = selection is not None
    sel = (np.ascontiguousarray(selection, dtype=np.bool_) if use_sel
           else np.zeros(1, dtype=np.bool_))
    return _lut_candidates_serial(
        np.ascontiguousarray(Q, dtype=np.float32),
        np.ascontiguousarray(probe_cids, dtype=np.int64),
        np.ascontiguousarray(probe_scores, dtype=np.float32),
        np.ascontiguousarray(mse, dtype=np.float32),
        list_offsets, post_docs, post_codes,
        np.ascontiguousarray(weights, dtype=np.float32), nbits, sel, use_sel, pos, total)


# ----------------------------------------------------------------------------- probing


def _top_rows_loop(S, n, out_ids, out_scores):  # pragma: no cover
    m, k = S.shape
    for i in range(m):
        # insertion into a sorted (descending) buffer of the n best so far
        filled = 0
        for c in range(k):
            s = S[i, c]
            if filled == n and s <= out_scores[i, n - 1]:
                continue
            j = filled if filled < n else n - 1
            while j > 0 and out_scores[i, j - 1] < s:
                out_scores[i, j] = out_scores[i, j - 1]
                out_ids[i, j] = out_ids[i, j - 1]
                j -= 1
            out_scores[i, j] = s
            out_ids[i, j] = c
            if filled < n:
                filled += 1


_top_rows_serial = lazy_njit()(_top_rows_loop)


def top_per_row(S: np.ndarray, n: int, *, backend: str = "auto"
                ) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` largest entries of each row of ``S``: (column ids int64, scores f32), best
    first; equal scores keep the smaller column first. ``n`` must not exceed ``S.shape[1]``."""
    S = np.ascontiguousarray(S, dtype=np.float32)
    if resolve_backend(backend) == "numpy":
        order = np.argsort(-S, axis=1, kind="stable")[:, :n]
        return order.astype(np.int64), np.take_along_axis(S, order, axis=1)
    ids = np.empty((S.shape[0], n), dtype=np.int64)
    scores = np.empty((S.shape[0], n), dtype=np.float32)
    _top_rows_serial(S, n, ids, scores)
    return ids, scores


# ----------------------------------------------------------------------------- f16 gather


def _gather_f16_loop(bits, starts, lens, new_off, out):  # pragma: no cover
    # exact float16 -> float32 (widen.f16_to_f32, inlined)
    d = bits.shape[1]
    for r in range(starts.shape[0]):
        lo = starts[r]
        o = new_off[r]
        for t in range(lens[r]):
            for j in range(d):
                out[o + t, j] = f16_to_f32(bits[lo + t, j])


def _gather_f32_loop(x, starts, lens, new_off, out):  # pragma: no cover
    d = x.shape[1]
    for r in range(starts.shape[0]):
        lo = starts[r]
        o = new_off[r]
        for t in range(lens[r]):
            for j in range(d):
                out[o + t, j] = x[lo + t, j]


_gather_f16_serial = lazy_njit()(_gather_f16_loop)
_gather_f32_serial = lazy_njit()(_gather_f32_loop)


def gather_f32(tokens: np.ndarray, offsets: np.ndarray, rows: np.ndarray, *,
               backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The tokens of documents ``rows`` as one f32 block ``(sum of lengths, d)`` and its
    ``offsets``. f16 inputs are upcast exactly (same values as ``astype(np.float32)``)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(offsets[rows], dtype=np.int64)
    lens = np.asarray(offsets[rows + 1], dtype=np.int64) - starts
    new_off = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=new_off[1:])
    fast = resolve_backend(backend) == "numba" and tokens.dtype in (np.float16, np.float32) \
        and tokens.flags.c_contiguous
    if not fast:
        idx = np.arange(int(new_off[-1]), dtype=np.int64) + np.repeat(starts - new_off[:-1],
                                                                       lens)
        return np.asarray(tokens[idx], dtype=np.float32), new_off
    out = np.empty((int(new_off[-1]), tokens.shape[1]), dtype=np.float32)
    if tokens.dtype == np.float16:
        _gather_f16_serial(tokens.view(np.uint16), starts, lens, new_off, out)
    else:
        _gather_f32_serial(tokens, starts, lens, new_off, out)
    return out, new_off
