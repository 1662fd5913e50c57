"""HNSW search over a faiss-built graph, walked by our own kernel.

faiss builds the graph (``IndexHNSWFlat`` / ``IndexHNSWSQ`` 8-bit); :func:`graph_from_faiss`
takes zero-copy views of its arrays (links, per-node offsets, per-level slot bounds, codes), so
the walk costs no extra memory. The walk is the usual one: a greedy descent through the upper
levels from the entry point, then a beam of ``ef`` nodes on level 0, always expanding the best
node not yet expanded (the NSG/DiskANN form of HNSW's search: same visits, one sorted array
instead of two heaps). Visited nodes are stamped with the query's number in a per-thread
``uint32`` array, so nothing is cleared between queries.

Why not faiss's own walk: on a 2-core machine its single-query search spends most of its time
waiting on memory. The numba walk prefetches the codes of every unvisited neighbour of the
node it expands before scoring any of them (``llvm.prefetch``, see :mod:`._prefetch`), scores
8-bit codes without decoding them (``q·x̂ = Σ w_j c_j + bias``), and optionally rescores the
best ``kc`` candidates exactly in the same call (no Python between walk and refine).

Scores are higher-is-better: ``q·x̂`` for inner product, ``-‖q - x̂‖²`` for L2 (``x̂`` the
stored vector: the float row, or the SQ8 reconstruction ``center + c·scale``, faiss's
``vmin + (c + ½)·vdiff/255``).

A selection (bool per row) changes the walk to hnswlib's filtered form: the results are the
best ``ef`` selected rows met, the candidates every row met that beats the worst of them, so
the walk goes on through unselected rows until it has found ``ef`` selected ones near the
query, however far the filter's rows lie from where it started; past a budget of rows scored
(the caller's: the selection's size, Lucene's rule) it scans the selected rows instead.

``walk_numpy`` is the reference twin: the same algorithm in plain Python over numpy rows.
"""

from __future__ import annotations

import functools
import heapq
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DimensionMismatch, InvalidArgument
from ._numba import entry_point, register_warmer

__all__ = ["Graph", "GraphSearcher", "graph_from_faiss", "graph_from_serialized",
           "query_weights", "scan_numpy", "scan_weights", "walk_numpy"]


@dataclass(frozen=True, eq=False)
class Graph:
    """A faiss HNSW graph and its codes, as arrays (views into the faiss index)."""

    neighbors: np.ndarray   # int32, faiss layout, -1 ends a node's list early
    offsets: np.ndarray     # int64 (n + 1,): node i's slots start at offsets[i]
    cum: np.ndarray         # int64: level l's slots are [cum[l], cum[l + 1]) from offsets[i]
    entry: int
    max_level: int
    codes: np.ndarray       # (n, d) float32 (flat) or uint8 (SQ8)
    scale: np.ndarray | None   # SQ8: x̂ = center + c * scale, float32 (d,) each
    center: np.ndarray | None
    norms: np.ndarray | None  # ‖x̂‖², float32 (n,), for L2
    owner: Any = None         # the faiss index the views point into (kept alive)

    @property
    def n(self) -> int:
        return len(self.codes)


def graph_from_faiss(index: Any, l2: bool) -> Graph | None:
    """Views of an ``IndexHNSWFlat`` / ``IndexHNSWSQ`` (QT_8bit); ``None`` for other storage."""
    import faiss

    storage: Any = faiss.downcast_index(index.storage)
    n, d = index.ntotal, index.d
    if n == 0:
        return None
    raw = faiss.rev_swig_ptr(storage.codes.data(), storage.codes.size())
    scale = center = None
    if isinstance(storage, faiss.IndexFlat):
        codes = raw.view(np.float32).reshape(n, d)
    elif (isinstance(storage, faiss.IndexScalarQuantizer)
          and storage.sq.qtype == faiss.ScalarQuantizer.QT_8bit):
        codes = raw.reshape(n, d)
        trained = faiss.vector_to_array(storage.sq.trained).astype(np.float32)
        scale = (trained[d:] / np.float32(255.0)).astype(np.float32)
        center = (trained[:d] + np.float32(0.5) * scale).astype(np.float32)
    else:
        return None
    h = index.hnsw
    norms = None
    if l2:
        x = codes if scale is None or center is None else center + codes * scale
        norms = np.einsum("ij,ij->i", x, x).astype(np.float32)
    return Graph(
        neighbors=faiss.rev_swig_ptr(h.neighbors.data(), h.neighbors.size()),
        offsets=faiss.rev_swig_ptr(h.offsets.data(), h.offsets.size()).view(np.int64),
        cum=faiss.vector_to_array(h.cum_nneighbor_per_level).astype(np.int64),
        entry=int(h.entry_point), max_level=int(h.max_level), codes=codes, scale=scale,
        center=center, norms=norms, owner=index)


def graph_from_serialized(blob: np.ndarray, l2: bool) -> Graph | None:
    """The graph of a serialized ``IndexHNSWSQ`` (QT_8bit), read from the bytes themselves:
    no faiss import, no deserialization (an open's first query walks it with the numpy twin
    while numba starts). ``None`` when the bytes are not that layout, as faiss's
    ``write_index`` lays it out (``IHNs``: index header, the HNSW vectors, then the ``IxSQ``
    storage); every size is checked against the others."""
    b = np.asarray(blob)
    if b.dtype != np.uint8 or b.ndim != 1:
        return None
    pos = 0

    def take(nbytes: int) -> np.ndarray:
        nonlocal pos
        if nbytes < 0 or pos + nbytes > len(b):
            raise ValueError("truncated")
        out = b[pos:pos + nbytes]
        pos += nbytes
        return out

    def scalar(dtype: str) -> int:
        return int(take(np.dtype(dtype).itemsize).view(dtype)[0])

    def vector(dtype: str) -> np.ndarray:
        size = scalar("<i8")
        return take(size * np.dtype(dtype).itemsize).view(dtype)

    def header(fourcc: bytes) -> tuple[int, int, int]:
        if take(4).tobytes() != fourcc:
            raise ValueError("layout")
        d, n = scalar("<i4"), scalar("<i8")
        take(17)  # two unused int64s, is_trained
        metric = scalar("<i4")
        if metric > 1:
            take(4)  # metric_arg
        return d, n, metric

    try:
        d, n, _ = header(b"IHNs")
        vector("<f8")  # assign_probas
        cum = vector("<i4").astype(np.int64)
        levels = vector("<i4")
        offsets = vector("<u8").view(np.int64)
        neighbors = vector("<i4")
        entry, max_level = scalar("<i4"), scalar("<i4")
        take(12)  # efConstruction, efSearch, upper_beam
        d2, n2, _ = header(b"IxSQ")
        qtype, _, _ = scalar("<i4"), scalar("<i4"), take(4)
        sq_d, code_size = scalar("<i8"), scalar("<i8")
        trained = vector("<f4").astype(np.float32)
        codes = vector("<u1")
    except ValueError:
        return None
    if (pos != len(b) or qtype != 0 or d != d2 or n != n2 or sq_d != d or code_size != d
            or len(levels) != n or len(offsets) != n + 1 or int(offsets[-1]) != len(neighbors)
            or len(codes) != n * d or len(trained) != 2 * d or not 0 <= entry < max(n, 1)
            or n == 0):
        return None
    # writable, aligned copies (the bytes are a read-only map at unaligned offsets): the
    # walk kernel is compiled and cached for the arrays faiss's own graphs give it
    neighbors, offsets, codes = np.array(neighbors), np.array(offsets), np.array(codes)
    codes = codes.reshape(n, d)
    scale = (trained[d:] / np.float32(255.0)).astype(np.float32)
    center = (trained[:d] + np.float32(0.5) * scale).astype(np.float32)
    norms = None
    if l2:
        x = center + codes * scale
        norms = np.einsum("ij,ij->i", x, x).astype(np.float32)
    return Graph(neighbors=neighbors, offsets=offsets, cum=cum, entry=entry,
                 max_level=max_level, codes=codes, scale=scale, center=center, norms=norms,
                 owner=blob)


def query_weights(g: Graph, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(w, bias)`` with ``q·x̂ = w·c + bias`` for every stored code ``c``."""
    q = np.asarray(q, dtype=np.float32)
    if g.scale is None or g.center is None:
        return q, np.zeros(len(q), np.float32)
    return (q * g.scale).astype(np.float32), (q @ g.center).astype(np.float32)


# ----------------------------------------------------------------------------- reference
def walk_numpy(g: Graph, q: np.ndarray, ef: int, kc: int, sel: np.ndarray | None = None,
               budget: int | None = None, share: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Reference twin of the numba walk: top-``kc`` ``(scores, rows)`` of each query (of the
    selected rows only, given ``sel``: the filtered walk, or past ``budget`` nodes scored,
    the scan of the selected rows)."""
    w, bias = query_weights(g, q)
    nq = len(q)
    out_s = np.full((nq, kc), -np.inf, np.float32)
    out_r = np.full((nq, kc), -1, np.int64)
    ef = max(ef, kc)
    for i in range(nq):
        qq = float(q[i] @ q[i])

        def score(v: int, i: int = i, qq: float = qq) -> float:
            dot = float(np.dot(w[i], g.codes[v].astype(np.float32))) + float(bias[i])
            return dot if g.norms is None else 2.0 * dot - float(g.norms[v]) - qq

        cur, best = g.entry, score(g.entry)
        for level in range(g.max_level, 0, -1):
            changed = True
            while changed:
                changed = False
                for v in _links(g, cur, level):
                    s = score(v)
                    if s > best:
                        best, cur, changed = s, v, True
        walked = _beam_numpy(g, score, cur, best, ef) if sel is None else \
            _walk_sel_numpy(g, score, cur, best, ef, sel, budget, share)
        if walked is None:  # the filtered walk gave up: the selected rows, scanned
            assert sel is not None
            s_, r_ = scan_numpy(g, q[i:i + 1], np.flatnonzero(sel), kc)
            walked = [(float(a), int(b)) for a, b in zip(s_[0], r_[0], strict=True) if b >= 0]
        top = walked[:kc]
        out_s[i, :len(top)] = [b[0] for b in top]
        out_r[i, :len(top)] = [b[1] for b in top]
    return out_s, out_r


def _beam_numpy(g: Graph, score: Callable[[int], float], cur: int, best: float, ef: int
                ) -> list[tuple[float, int]]:
    """The unfiltered level-0 beam (``_graph_numba._walk``), best first."""
    beam = [(best, cur, False)]      # sorted best first: (score, node, expanded)
    seen = {cur}
    while True:
        k = next((t for t, b in enumerate(beam) if not b[2]), None)
        if k is None:
            break
        s0, u, _ = beam[k]
        beam[k] = (s0, u, True)
        for v in _links(g, u, 0):
            if v in seen:
                continue
            seen.add(v)
            s = score(v)
            if len(beam) == ef and s <= beam[-1][0]:
                continue
            pos = len(beam)
            while pos > 0 and beam[pos - 1][0] < s:  # after equal scores, like the kernel
                pos -= 1
            beam.insert(pos, (s, v, False))
            del beam[ef:]
    return [(b[0], b[1]) for b in beam]


def _walk_sel_numpy(g: Graph, score: Callable[[int], float], cur: int, best: float, ef: int,
                    sel: np.ndarray, budget: int | None, share: float
                    ) -> list[tuple[float, int]] | None:
    """The filtered level-0 walk (``_graph_numba._walk_sel``): the best ``ef`` selected rows
    met, best first; ``None`` where it gives up (past ``budget`` nodes scored, or projected
    past it from the selected share of the nodes met)."""
    kept: list[tuple[float, int]] = []  # best first; equal scores in the order kept

    def keep(s: float, v: int) -> None:
        if len(kept) == ef and s <= kept[-1][0]:
            return
        pos = len(kept)
        while pos > 0 and kept[pos - 1][0] < s:
            pos -= 1
        kept.insert(pos, (s, v))
        del kept[ef:]

    seen = {cur}
    if sel[cur]:
        keep(best, cur)
    heap = [(-best, cur)]  # the higher score first, then the lower row (as the kernel)
    scored = 1
    while heap:
        if len(kept) == ef and -heap[0][0] < kept[-1][0]:
            break
        _, u = heapq.heappop(heap)
        for v in _links(g, u, 0):
            if v in seen:
                continue
            seen.add(v)
            s = score(v)
            scored += 1
            if len(kept) < ef or s > kept[-1][0]:
                heapq.heappush(heap, (-s, v))
                if sel[v]:
                    keep(s, v)
        cap = _NO_BUDGET if budget is None else budget
        if scored > cap or (len(kept) < ef and scored >= PROBE and (
                len(kept) < share * scored or scored * ef > cap * max(len(kept), 1))):
            return None
    return kept


def scan_numpy(g: Graph, q: np.ndarray, rows: np.ndarray, kc: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Reference twin of the kernel's scan of ``rows`` (``GraphSearcher.search(rows=)``): the
    top-``kc`` ``(scores, rows)`` of each query among those rows' codes; equal scores keep
    the order of ``rows``."""
    w, bias = query_weights(g, q)
    c = g.codes[rows]
    if g.scale is None:
        s = w @ c.astype(np.float32).T + bias[:, None]
    else:  # 8-bit codes: the kernel's integer dot products
        wi, inv = scan_weights(w)
        s = (wi.astype(np.int64) @ c.T.astype(np.int64)).astype(np.float32) * inv[:, None] \
            + bias[:, None]
    if g.norms is not None:
        s = 2.0 * s - g.norms[rows][None, :] - np.einsum("ij,ij->i", q, q)[:, None]
    kc_ = min(kc, len(rows))
    order = np.argsort(-s, axis=1, kind="stable")[:, :kc_]
    out_s = np.full((len(q), kc), -np.inf, np.float32)
    out_r = np.full((len(q), kc), -1, np.int64)
    out_s[:, :kc_] = np.take_along_axis(s, order, axis=1)
    out_r[:, :kc_] = np.asarray(rows, dtype=np.int64)[order]
    return out_s, out_r


def scan_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scan's integer form of the SQ8 weights ``w`` (nq, d): ``(wi, inv)`` with
    ``w·c ≈ (wi·c) * inv`` for 8-bit codes ``c``; ``wi`` int16, scaled per query so that
    ``|wi|`` reaches ``min(32767, (2³¹ - 1) // (255 d))`` and no sum of ``d`` products leaves
    int32 (each weight rounded to ~1/2¹⁵ of the largest: far below the codes' own error)."""
    w = np.asarray(w, dtype=np.float32)
    big = np.abs(w).max(axis=1)
    big[big == 0] = 1.0
    f = np.float32(min(32767, (2**31 - 1) // (255 * w.shape[1]))) / big
    wi = np.rint(w * f[:, None]).astype(np.int16)
    return wi, (np.float32(1.0) / f).astype(np.float32)


def _links(g: Graph, node: int, level: int) -> list[int]:
    o = int(g.offsets[node])
    links = g.neighbors[o + g.cum[level]:o + g.cum[level + 1]]
    end = np.flatnonzero(links < 0)
    return links[:end[0] if len(end) else len(links)].tolist()


# ----------------------------------------------------------------------------- numba
@functools.cache
def _compiled() -> Any:
    """The numba search kernel (imports numba; compiled on first call, or loaded from
    numba's on-disk cache)."""
    from ._graph_numba import search

    return search


@functools.cache
def _compiled_rows() -> Any:
    """The numba ``flatnonzero`` of a selection (see ``_graph_numba.selected_rows``)."""
    from ._graph_numba import selected_rows

    return selected_rows


class GraphSearcher:
    """Runs the numba walk over one :class:`Graph`; per-thread visited stamps."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._local = threading.local()
        self._rerank: tuple[np.ndarray, np.ndarray] | None = None
        g = graph
        sq8 = g.scale is not None and g.center is not None
        # the kernel's per-graph arguments, in its order, made once
        self._graph_args = (sq8, g.scale if sq8 else _NONE_F32, g.center if sq8 else _NONE_F32,
                            g.codes, _NONE_F32 if g.norms is None else g.norms,
                            g.norms is not None, g.neighbors, g.offsets, g.cum, g.entry,
                            g.max_level)

    def _rerank_arg(self, rerank: np.ndarray) -> np.ndarray:
        """``rerank`` read-only (see :func:`_readonly`), the view kept for the next call."""
        cached = self._rerank
        if cached is not None and cached[0] is rerank:
            return cached[1]
        view = _readonly(rerank)
        self._rerank = (rerank, view)
        return view

    def _scratch(self) -> tuple[np.ndarray, np.ndarray]:
        s = getattr(self._local, "scratch", None)
        if s is None:
            s = self._local.scratch = (np.zeros(self.graph.n, np.uint32),
                                       np.zeros(1, np.uint32))
        return s

    def search(self, q: np.ndarray, ef: int, kc: int, *, rerank: np.ndarray | None = None,
               qr: np.ndarray | None = None, k: int = 0, sel: np.ndarray | None = None,
               rows: np.ndarray | None = None, scan: bool = False, threads: int = 1,
               remap: np.ndarray | None = None, budget: int | None = None,
               share: float = 0.0, stats: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``kc`` walk candidates of each query ``q`` (in the graph's space), or, given
        float32 ``rerank`` vectors, the exact top-``k`` of them for the queries ``qr``.

        ``sel`` (bool, (n,)): only these rows are returned; the walk keeps the best ``ef``
        selected rows it meets and steps through the others to reach them (see
        ``_graph_numba._walk_sel``); past ``budget`` nodes scored (default: no limit), or
        where the selected rows are under ``share`` of the nodes scored (after the first
        ``PROBE``), a query scans the selected rows instead.
        ``rows`` (int64, each in [0, n)): no walk; the codes of these rows are scored one by
        one (a filtered search whose selection is cheaper to scan than to walk).
        ``scan`` with ``sel``: the same scan of the selected rows (found by the kernel).
        ``remap`` (int64, sorted, one per graph row): the graph is over these rows of
        ``rerank`` (a partition graph), and results are rows of ``rerank``.
        A batch is split over ``threads`` Python threads (the kernel releases the GIL).
        ``stats`` (int64, (nq, 2)), where given, gets each query's nodes scored and whether
        it scanned (1) or walked (0).
        """
        q = _query_arg(q)
        qr = None if qr is None else q if qr is q else _query_arg(qr)
        # the kernel trusts its shapes (no bounds checks): check them here
        if q.ndim != 2 or q.shape[1] != self.graph.codes.shape[1]:
            raise DimensionMismatch(f"graph search: expected queries (nq, "
                                    f"{self.graph.codes.shape[1]}), got {q.shape}")
        if remap is not None:
            self._check_remap(remap, rerank)
        if rerank is not None and (qr is None or rerank.ndim != 2 or k < 1
                                   or qr.shape != (len(q), rerank.shape[1])
                                   or len(rerank) != self.graph.n and remap is None):
            raise DimensionMismatch(f"graph search: rerank {rerank.shape} needs queries "
                                    f"(nq, {rerank.shape[-1]}) and k >= 1 over "
                                    f"{self.graph.n} rows")
        if sel is not None and sel.shape != (self.graph.n,):
            raise DimensionMismatch(f"graph search: expected a selection of shape "
                                    f"({self.graph.n},), got {sel.shape}")
        if scan:
            if sel is None or rows is not None:
                raise InvalidArgument("graph search: scan=True takes a selection (sel=) and "
                                      "no rows")
            rows, sel = _compiled_rows()(sel), None
        elif rows is not None:
            rows = np.ascontiguousarray(rows, dtype=np.int64)
            if rows.ndim != 1 or (len(rows) and not 0 <= rows.min() <= rows.max()
                                  < self.graph.n):
                raise DimensionMismatch(f"graph search: expected rows in [0, "
                                        f"{self.graph.n}), got shape {rows.shape}")
        budget = _NO_BUDGET if budget is None else max(0, min(int(budget), _NO_BUDGET))
        if stats is None:
            stats = np.empty((len(q), 2), np.int64)
        elif stats.dtype != np.int64 or stats.shape != (len(q), 2):
            raise DimensionMismatch(f"graph search: expected stats int64 ({len(q)}, 2), got "
                                    f"{stats.dtype} {stats.shape}")
        if threads > 1 and len(q) >= 2 * MIN_CHUNK:
            bounds = np.linspace(0, len(q), min(threads, len(q) // MIN_CHUNK) + 1).astype(int)
            parts = list(_pool(threads).map(
                lambda ab: self._search(q[ab[0]:ab[1]], ef, kc, rerank,
                                        None if qr is None else qr[ab[0]:ab[1]], k, sel,
                                        rows, remap, budget, share, stats[ab[0]:ab[1]]),
                zip(bounds[:-1], bounds[1:], strict=True)))
            return (np.concatenate([p[0] for p in parts]),
                    np.concatenate([p[1] for p in parts]))
        return self._search(q, ef, kc, rerank, qr, k, sel, rows, remap, budget, share, stats)

    def bind(self, ef: int, kc: int, *, rerank: np.ndarray, k: int,
             remap: np.ndarray | None = None,
             large: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
             ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``q -> search(q, ef, kc, rerank=rerank, qr=q, k=k, remap=remap)`` for checked
        queries (float32, C-contiguous, writable, ``(nq, dim)``): the arguments checked once
        here, each call one kernel call (through its compiled entry point once the
        dispatcher has run it); batches of ``2 * MIN_CHUNK`` queries or more go to
        ``large`` where given (the caller's split over threads)."""
        dim = self.graph.codes.shape[1]
        if remap is not None:
            self._check_remap(remap, rerank)
        if rerank.ndim != 2 or rerank.shape[1] != dim or k < 1 or kc < 1 or (
                remap is None and len(rerank) != self.graph.n):
            raise DimensionMismatch(f"graph search: rerank {rerank.shape} needs k >= 1 over "
                                    f"{self.graph.n} rows of dim {dim}")
        kernel, args, x = _compiled(), self._graph_args, self._rerank_arg(rerank)
        mapped = _NONE_ROWS if remap is None else _readonly(remap)
        ef = max(ef, kc)
        scratch = self._scratch
        entry: list[Any] = []  # the compiled overload, once the dispatcher has run it

        def run(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if large is not None and len(q) >= 2 * MIN_CHUNK:
                return large(q)
            if q.shape[1] != dim:  # the kernel trusts its shapes
                raise DimensionMismatch(f"graph search: expected queries (nq, {dim}), got "
                                        f"{q.shape}")
            out_s = np.empty((len(q), k), np.float32)
            out_r = np.empty((len(q), k), np.int64)
            visited, state = scratch()
            call = (q, q, *args, ef, kc, visited, state, False, _NONE_SEL, False, _NONE_ROWS,
                    remap is not None, mapped, x, k, _NO_BUDGET, 0.0, out_s, out_r,
                    np.empty((len(q), 2), np.int64))
            if entry and _plain_query(q):
                entry[0](*call)
            else:
                kernel(*call)
                if not entry and _plain_query(q):
                    entry.append(entry_point(kernel, call))
            return out_s, out_r

        return run

    def _check_remap(self, remap: np.ndarray, rerank: np.ndarray | None) -> None:
        """``remap`` must be one int64 row of ``rerank`` per graph row, sorted (its ends are
        checked: the kernel trusts them)."""
        if (remap.dtype != np.int64 or remap.shape != (self.graph.n,) or rerank is None
                or (len(remap) and (remap[0] < 0 or remap[-1] >= len(rerank)))):
            raise DimensionMismatch(f"graph search: expected remap int64 ({self.graph.n},), "
                                    "sorted, within the rerank rows")

    def _search(self, q: np.ndarray, ef: int, kc: int, rerank: np.ndarray | None,
                qr: np.ndarray | None, k: int, sel: np.ndarray | None = None,
                rows: np.ndarray | None = None, remap: np.ndarray | None = None,
                budget: int = 0, share: float = 0.0, stats: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        width = k if rerank is not None else kc
        out_s = np.empty((len(q), width), np.float32)
        out_r = np.empty((len(q), width), np.int64)
        visited, state = self._scratch()
        _compiled()(q, q if qr is None else qr, *self._graph_args, max(ef, kc), kc,
                    visited, state, sel is not None, _NONE_SEL if sel is None else sel,
                    rows is not None, _NONE_ROWS if rows is None else _readonly(rows),
                    remap is not None, _NONE_ROWS if remap is None else _readonly(remap),
                    _NONE_X if rerank is None else self._rerank_arg(rerank),
                    0 if rerank is None else k, budget, float(share), out_s, out_r, stats)
        return out_s, out_r


def _plain_query(q: np.ndarray) -> bool:
    """Whether ``q`` has the one query type of the kernel's entry point (float32, C-ordered,
    writable, aligned): the entry point converts nothing, so it takes nothing else."""
    f = q.flags
    return q.dtype is _F32 and f.c_contiguous and f.writeable and f.aligned


def _query_arg(a: np.ndarray) -> np.ndarray:
    """Queries as the kernel's one signature takes them: writable C-contiguous float32 (a
    copy only where they are not: the callers' queries are fresh, checked arrays)."""
    flags = a.flags
    if a.dtype == np.float32 and flags.c_contiguous and flags.writeable:
        return a
    return np.array(a, dtype=np.float32, order="C")


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: sealed vectors are read-only memory maps, and one array type for
    every call (queries, rerank vectors) means one compiled and cached kernel signature."""
    if not a.flags.writeable:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


_F32 = np.dtype(np.float32)
_NONE_F32 = np.zeros(1, np.float32)
_NONE_X = _readonly(np.zeros((1, 1), np.float32))
_NONE_SEL = np.zeros(1, np.bool_)
_NONE_ROWS = _readonly(np.zeros(1, np.int64))
_NO_BUDGET = 2**62  # a filtered walk with no limit on the nodes it scores
PROBE = 256  # as _graph_numba.PROBE (that module imports numba)
MIN_CHUNK = 16  # queries per thread: a batch splits over threads only above 2 * MIN_CHUNK


@register_warmer
def _warm_walk() -> None:
    """Load the search kernel for the argument types of SQ8 graphs from faiss (two nodes)."""
    d = 4
    g = Graph(neighbors=np.array([1, -1, 0, -1], np.int32), offsets=np.array([0, 2, 4]),
              cum=np.array([0, 2]), entry=0, max_level=0, codes=np.zeros((2, d), np.uint8),
              scale=np.ones(d, np.float32), center=np.zeros(d, np.float32), norms=None)
    q = np.zeros((1, d), np.float32)
    walker = GraphSearcher(g)
    walker.search(q, 2, 2, rerank=np.zeros((2, d), np.float32), qr=q, k=1)
    walker.search(q, 2, 2, rerank=np.zeros((2, d), np.float32), qr=q, k=1,
                  sel=np.ones(2, np.bool_), scan=True)


@functools.cache
def _pool(threads: int) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads, thread_name_prefix="polyvec-walk")


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's pool threads
    os.register_at_fork(after_in_child=_pool.cache_clear)
