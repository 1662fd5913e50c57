"""HNSW graph index over faiss (``IndexHNSWFlat``, ``IndexHNSWSQ`` 8-bit or fp16).

Built with ``M`` and ``ef_construction`` from the spec; ``ef`` is passed per search
(default :data:`DEFAULT_EF`, raised to the number of candidates wanted).

Searches of SQ8 graphs walk faiss's graph with polyvec's numba kernel
(:mod:`polyvec._kernels.graph`: prefetched neighbour codes, codes scored without decoding,
the exact refine in the same call when unfiltered): same visits and candidates as faiss's
walk, ~1.4x faster per query on debian-minilm. Float graphs (flat, F16), where faiss's own
walk is as fast, go through faiss unfiltered.

A selection (a filter, deletes) is planned per search (:meth:`HNSWIndex._filtered`): the
selected rows' codes scanned where that is cheaper than the walk is expected to be, else
the numba kernel's filtered walk (SQ8 and flat graphs: the best ``ef`` selected rows it
meets, stepping through unselected ones), which scans instead once it has cost as much as
the scan, or where the selected rows are rare among the first nodes it meets (a filter far
from the query). F16 graphs, and searches while numba starts, take faiss's walk with an
``IDSelectorBitmap`` and a widened ``ef``. The exhaustive fallback scans the graph's storage.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import numpy as np

from .. import _progress as progress
from .._kernels._numba import numba_warm, resolve_backend
from .._kernels.graph import (
    MIN_CHUNK,
    Graph,
    GraphSearcher,
    graph_from_faiss,
    graph_from_serialized,
    scan_numpy,
    walk_numpy,
)
from ..errors import CorruptFile, InvalidArgument
from ..index_spec import F16, HNSW, SQ8
from .base import (
    FEW_EXACT,
    NEAR_SHARE,
    QueryParams,
    VectorIndex,
    _Final,
    deserialize,
    exact_topk,
    faiss_module,
    faiss_result,
    faiss_search,
    faiss_selector,
    serialize,
)
from .order import lid_order

__all__ = ["HNSWIndex", "DEFAULT_EF"]

# The filtered search's plan (numba walker; measured on Debian, HNSW32,SQ8): a filtered walk
# scores about WALK_SCORED * (level-0 links) * ef nodes unfiltered, times fraction ** -SPREAD
# under a filter keeping that fraction of the rows at random (1,200 at ef 64; 1,670 at 50%,
# 3,750 at 20%); a node it scores costs WALK_COST rows of the selected rows' scan (~190 vs
# ~50 ns). The selection is scanned where that is cheaper than the expected walk, and a walk
# gives up and scans past the scan's cost (a filter far from the query).
WALK_SCORED = 0.3
SPREAD = 0.7
WALK_COST = 4
BATCH_EXACT = 8  # a batch this large scans a selection in float32 by BLAS (exact_topk)
WIDEN_POWER = 0.5  # filtered walks: ef / fraction ** WIDEN_POWER (see HNSWIndex._widen)
DEFAULT_EF = 64
WARMING_QUERIES = 4  # batches up to this size walk with the numpy twin while numba starts


class HNSWIndex(VectorIndex):
    """Graph index; candidates from a faiss HNSW walk over flat, SQ8 or F16 storage."""

    knob = "ef"
    family = "graph"
    partitioned = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_params: dict[int, Any] = {}
        self._walker: GraphSearcher | None = None
        self._walker_checked = False
        self._flat_walker: GraphSearcher | None = None  # see _filter_walker
        self._flat_checked = False
        # a loaded index keeps its serialized bytes (a memory map) and becomes a faiss index
        # only when something needs one: an SQ8 graph is walked from the bytes themselves
        self._faiss: Any = None
        self._blob: np.ndarray | None = None
        self._graph: Graph | None = None
        self._graph_made = False

    @property
    def faiss_index(self) -> Any:
        if self._faiss is None:
            self._faiss = deserialize({"faiss": self._blob} if self._blob is not None else {})
        return self._faiss

    @faiss_index.setter
    def faiss_index(self, index: Any) -> None:
        self._faiss, self._blob, self._graph, self._graph_made = index, None, None, False
        self._flat_walker, self._flat_checked = None, False

    def _build(self, x: np.ndarray, seed: int) -> None:
        faiss = faiss_module()
        hnsw = cast(HNSW, self.spec.index)
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        d = x.shape[1]
        codec = self.spec.codec
        if codec is None:
            index = faiss.IndexHNSWFlat(d, hnsw.M, metric)
        elif isinstance(codec, SQ8 | F16):
            qt = faiss.ScalarQuantizer.QT_8bit if isinstance(codec, SQ8) else \
                faiss.ScalarQuantizer.QT_fp16
            index = faiss.IndexHNSWSQ(d, qt, hnsw.M, metric)
        else:
            raise InvalidArgument(f"HNSW: expected no codec, SQ8 or F16, got {codec!r}")
        index.hnsw.efConstruction = hnsw.ef_construction
        # levels come from faiss's fixed-seed RNG: a build is reproducible with one thread
        # (``seed`` is unused; parallel insertion is not bit-reproducible)
        index.train(x)
        if hnsw.order == "lid" and len(x) > 1:
            # insert hardest-first, then renumber the stored entries back to row order, so
            # faiss labels stay row numbers and nothing maps ids at search time
            order = lid_order(x)
            _add_reporting(index, np.ascontiguousarray(x[order]))
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            index.permute_entries(back)
        else:
            _add_reporting(index, x)
        self.faiss_index = index
        self._walker, self._walker_checked = None, False

    def _stage_arrays(self) -> dict[str, np.ndarray]:
        return {"faiss": serialize(self.faiss_index)}

    def _load_stage(self, arrays: dict[str, np.ndarray]) -> None:
        if "faiss" not in arrays:
            raise CorruptFile("index arrays", "missing array 'faiss'")
        self._faiss, self._blob = None, arrays["faiss"]
        self._graph, self._graph_made = None, False
        self._walker, self._walker_checked = None, False
        self._flat_walker, self._flat_checked = None, False
        if isinstance(self.spec.codec, SQ8):  # readable from the bytes: checked now
            self._graph = graph_from_serialized(self._blob, self.metric == "l2")
            self._graph_made = self._graph is not None and self._graph.n == self.n
        if not self._graph_made:
            self._faiss = deserialize(arrays)  # raises CorruptFile for unreadable bytes
            if self._faiss.ntotal != self.n:
                raise CorruptFile("index arrays", f"expected {self.n} vectors, got "
                                  f"{self._faiss.ntotal}")

    def _graph_arrays(self) -> Graph | None:
        """The SQ8 graph as arrays (read from the stored bytes when no faiss index is made
        yet); ``None`` for float graphs."""
        if not self._graph_made:
            l2 = self.metric == "l2"
            graph = None
            if isinstance(self.spec.codec, SQ8):
                if self._faiss is None and self._blob is not None:
                    graph = graph_from_serialized(self._blob, l2)
                if graph is None:
                    graph = graph_from_faiss(self.faiss_index, l2)
            self._graph, self._graph_made = graph, True
        return self._graph

    def _stage_bytes(self) -> int:
        """Links, levels and codes; for the numba walk also its visited stamps (4 bytes per
        vector per searching thread, one counted) and, under L2, the codes' norms."""
        walk = 4 * self.n * (2 if self.metric == "l2" else 1) if self._walks_itself() else 0
        g = self._graph if self._faiss is None else None  # no faiss index made for this
        if g is not None:
            return int(g.neighbors.size * 4 + g.offsets.size * 8 + self.n * 4 + g.codes.nbytes
                       + walk)
        idx = self.faiss_index
        links = idx.hnsw.neighbors.size() * 4 + idx.hnsw.offsets.size() * 8
        return int(links + idx.hnsw.levels.size() * 4 + idx.storage.sa_code_size() * idx.ntotal
                   + walk)

    def _walks_itself(self) -> bool:
        """Whether searches use the numba walk (SQ8 graphs with numba; float graphs stay with
        faiss, whose batched float kernels walk them as fast)."""
        return resolve_backend("auto") == "numba" and isinstance(self.spec.codec, SQ8)

    def _searcher(self) -> GraphSearcher | None:
        """The numba walker over this graph (made on first use); ``None`` where faiss walks,
        and while numba's runtime is still starting in this process (faiss walks meanwhile:
        same visits and candidates)."""
        if not self._walker_checked:
            if self._walks_itself() and not numba_warm():
                return None
            graph = self._graph_arrays() if self._walks_itself() else None
            self._walker = None if graph is None else _compiled_walker(graph)
            self._walker_checked = True
        return self._walker

    def bind(self, k: int, *, params: QueryParams | None = None,
             selection: np.ndarray | None = None, rerank: np.ndarray | None = None
             ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """An unfiltered search that :meth:`_fast_search` answers, bound to the walker: the
        checks and settings of :meth:`search` made once; a selection that is a whole
        partition, bound to that partition's walker (see :meth:`_bind_part`); anything else
        as the base class."""
        if selection is not None:
            got = self._bind_part(k, params, selection, rerank)
            if got is not None:
                return got
        if selection is not None or self.transform is not None \
                or not self._bindable(k, params, rerank):
            return super().bind(k, params=params, selection=selection, rerank=rerank)
        walker = self._searcher()
        if walker is None:
            if self._walker_checked:  # numba cannot build the walk here: faiss walks
                return super().bind(k, params=params, selection=selection, rerank=rerank)
            late: list[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = []

            def until_warm(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                """numba's runtime is still starting (see :meth:`_searcher`): searches go
                the general way until it is up, then through the walker bound then."""
                if not late:
                    if self._searcher() is None:
                        return self.search(q, k, params=params, rerank=rerank)
                    late.append(self.bind(k, params=params, rerank=rerank))
                return late[0](q)

            return until_warm
        assert rerank is not None  # (_bindable)
        return self._walk_bound(walker, self.n, k, params, rerank)

    def _bind_part(self, k: int, params: QueryParams | None, selection: np.ndarray,
                   rerank: np.ndarray | None
                   ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """A selection that is exactly one partition's rows (a filter on one value of an
        indexed column, nothing deleted), bound to the partition's walker: what
        :meth:`_as_part` does per call, found once; ``None`` for anything else."""
        if self.parts is None or not self._bindable(k, params, rerank):
            return None
        sel, n_sel = self._check_selection(selection)
        part = None if sel is None or not n_sel else self.parts.find(sel, n_sel)
        if part is None or n_sel != len(part.group.rows) or part.index.transform is not None:
            return None
        sub = part.index
        walker = sub._searcher() if isinstance(sub, HNSWIndex) else None
        if walker is None:
            return None
        assert rerank is not None  # (_bindable)
        return self._walk_bound(walker, sub.n, k, params, rerank, part.group.rows)

    def _bindable(self, k: Any, params: Any, rerank: np.ndarray | None) -> bool:
        """Whether a search with these arguments is one the numba walker answers in one
        kernel call: float32 rerank vectors of this index's shape that a compressed stage
        refines against, an int ``k`` >= 1, ``QueryParams`` or ``None``."""
        return (rerank is not None and self.refines and rerank.dtype == np.float32
                and rerank.shape == (self.n, self.dim) and isinstance(k, int)
                and not isinstance(k, bool) and k >= 1
                and isinstance(params, QueryParams | None) and self._walks_itself())

    def _walk_bound(self, walker: GraphSearcher, n: int, k: int, params: QueryParams | None,
                    rerank: np.ndarray, remap: np.ndarray | None = None
                    ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``queries -> (scores, rows)`` through ``walker`` (a graph over ``n`` rows;
        ``remap``: which rows of ``rerank`` they are) with this index's settings for ``k``
        and ``params``: a small batch is one kernel call whose arguments were checked once,
        a large one is split over threads."""
        p = params if params is not None else QueryParams()
        kc = min(max(k, math.ceil(k * self.oversample(p))), n)
        ef = _ef(p, kc, n)
        def large(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return walker.search(q, ef, kc, rerank=rerank, qr=q, k=k, remap=remap,
                                 threads=_batch_threads(q))

        return walker.bind(ef, kc, rerank=rerank, k=k, remap=remap, large=large)

    def _fast_search(self, q: np.ndarray, qt: np.ndarray, k: int, kc: int, params: QueryParams,
                     rerank: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Walk and refine in one kernel call; other searches (no float32 rerank vectors)
        take the general path, whose ``_candidates`` walks with the same kernel."""
        walker = self._searcher()
        if walker is None or rerank is None or rerank.dtype != np.float32:
            return None
        ef = _ef(params, kc, self.n)
        return walker.search(qt, ef, kc, rerank=rerank, qr=q, k=k, threads=_batch_threads(q))

    def _filtered(self, q: np.ndarray, qt: np.ndarray, k: int, kc: int, params: QueryParams,
                  sel: np.ndarray, n_sel: int, rerank: np.ndarray | None,
                  report: dict[str, Any] | None = None
                  ) -> tuple[np.ndarray, np.ndarray] | _Final | None:
        """With the numba walker and float32 rerank vectors, a filtered search is one kernel
        call, refined exactly in the same call: the selected rows' codes scanned where that
        costs less than the walk is expected to (:data:`WALK_SCORED`), else the filtered walk
        (the best ``ef`` selected rows it meets, through unselected rows too), which gives up
        and scans the selected rows once it has cost as much as their scan, or is projected
        to (Lucene's rule: a filter far from the query, whose rows the walk meets late, costs
        at most about twice the scan, and never its recall)."""
        walker = self._filter_walker()
        kc = min(kc, self.n)
        ef = _ef(params, kc, self.n)
        if walker is None and len(q) <= WARMING_QUERIES and self._walks_itself():
            graph = self._graph_arrays()  # numba is starting: the same plan, by the twins
            if graph is not None:
                scan = n_sel <= WALK_COST * _walk_nodes(graph, ef, n_sel / self.n)
                if report is not None:
                    report.update(strategy="scan" if scan else "graph", selected=n_sel)
                if scan:
                    return scan_numpy(graph, qt, np.flatnonzero(sel), kc)
                return walk_numpy(graph, qt, ef, kc, sel, budget=n_sel // WALK_COST,
                                  share=NEAR_SHARE * n_sel / self.n)
        if walker is None or (rerank is not None and rerank.dtype != np.float32):
            return super()._filtered(q, qt, k, kc, params, sel, n_sel, rerank, report)
        stats = np.empty((len(q), 2), np.int64)
        scan = n_sel <= WALK_COST * _walk_nodes(walker.graph, ef, n_sel / self.n)
        if scan and rerank is not None and (len(q) >= BATCH_EXACT or n_sel <= FEW_EXACT):
            # a batch sharing the selection, or a few rows: scored exactly, one product
            got = exact_topk(q, rerank, k, self.metric, np.flatnonzero(sel))
            if report is not None:
                report.update(strategy="scan", selected=n_sel, scored=float(n_sel),
                              scanned=len(q))
            return _Final(*got)
        qr, kr = (None, 0) if rerank is None else (q, k)
        if scan:
            got = walker.search(qt, ef, kc, sel=sel, scan=True, stats=stats, rerank=rerank,
                                qr=qr, k=kr)
        else:
            got = walker.search(qt, ef, kc, sel=sel, budget=n_sel // WALK_COST,
                                share=NEAR_SHARE * n_sel / self.n, stats=stats,
                                threads=_batch_threads(q), rerank=rerank, qr=qr, k=kr)
        if report is not None:
            report.update(_walk_report(stats, n_sel, scan))
        return got if rerank is None else _Final(*got)

    def _filter_walker(self) -> GraphSearcher | None:
        """The numba walker for filtered searches: :meth:`_searcher`'s for SQ8 graphs, and
        one over a flat graph's float rows too (unfiltered, faiss walks those as fast; a
        filtered search needs the walk of ``_graph_numba._walk_sel``); ``None`` for F16
        graphs and where numba does not run (faiss's walk, widened)."""
        if isinstance(self.spec.codec, SQ8):
            return self._searcher()
        if self.spec.codec is not None or resolve_backend("auto") != "numba" \
                or not numba_warm():
            return None
        if not self._flat_checked:
            graph = graph_from_faiss(self.faiss_index, self.metric == "l2")
            self._flat_walker = None if graph is None else _compiled_walker(graph)
            self._flat_checked = True
        return self._flat_walker

    def _as_part(self, q: np.ndarray, qt: np.ndarray, k: int, kc: int, params: QueryParams,
                 sel: np.ndarray | None, n_sel: int, rerank: np.ndarray | None,
                 rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | _Final:
        """A whole partition walked and refined in one kernel call (the walker reads the
        larger index's rerank vectors through ``rows``); anything else as the base class."""
        walker = self._searcher()
        if sel is not None or walker is None or not self.refines or rerank is None \
                or rerank.dtype != np.float32:
            return super()._as_part(q, qt, k, kc, params, sel, n_sel, rerank, rows)
        kc = min(kc, self.n)
        ef = _ef(params, kc, self.n)
        return _Final(*walker.search(qt, ef, kc, rerank=rerank, qr=q, k=k, remap=rows,
                                     threads=_batch_threads(q)))

    def _widen(self, params: QueryParams, kc: int, fraction: float) -> QueryParams:
        """faiss's filtered walk (F16 graphs, numba starting): its beam walks every row and
        only selected rows enter the results, so the beam needs less than ``1 / fraction``
        more width: ``ef / fraction ** WIDEN_POWER`` (measured on Debian at 10%: the same
        recall as the unfiltered search at its ``ef`` with 0.5; ``1 / fraction`` overshot
        to 0.99+). The numba walk keeps ``ef`` selected rows and is not widened."""
        ef = _ef(params, kc, self.n)
        return replace(params, ef=min(math.ceil(ef / max(fraction, 1e-9) ** WIDEN_POWER),
                                      max(kc, self.n)))

    def _prefer_exact(self, params: QueryParams, n_sel: int) -> bool:
        return params.ef is not None and params.ef >= n_sel

    def _candidates(self, q: np.ndarray, kc: int, params: QueryParams,
                    sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ef = _ef(params, kc, self.n)
        walker = self._searcher()
        if walker is not None:
            return walker.search(q, ef, kc, sel=sel,
                                 threads=_batch_threads(q))
        if len(q) <= WARMING_QUERIES and self._walks_itself():
            # numba is still starting in this process: a few queries walk with the numpy
            # twin (~6 ms each on Debian) rather than import faiss and deserialize the index
            graph = self._graph_arrays()
            if graph is not None:
                return walk_numpy(graph, q, ef, kc, sel)
        if sel is None:
            p = self._plain_params.get(ef)
            if p is None:  # SWIG objects are slow to make: one per ef, reused
                p = self._plain_params[ef] = faiss_module().SearchParametersHNSW(efSearch=ef)
            dist, ids = faiss_search(self.faiss_index, q, kc, p)
            return faiss_result(dist, ids, self.metric == "l2")
        selector, _bits = faiss_selector(sel)
        p = faiss_module().SearchParametersHNSW(efSearch=ef)
        p.sel = selector
        dist, ids = faiss_search(self.faiss_index, q, kc, p)
        return faiss_result(dist, ids, self.metric == "l2")

    def _exhaustive(self, q: np.ndarray, kc: int, sel: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = faiss_module()
        storage = faiss.downcast_index(self.faiss_index.storage)
        selector, _bits = faiss_selector(sel)
        p = faiss.SearchParameters()
        if selector is not None:
            p.sel = selector
        dist, ids = storage.search(q, kc, params=p)
        return faiss_result(dist, ids, self.metric == "l2")


def _ef(params: QueryParams, kc: int, n: int) -> int:
    """The beam width of a walk over ``n`` rows: ``params.ef`` (default :data:`DEFAULT_EF`),
    at least the ``kc`` candidates wanted, at most ``n``: a wider beam finds nothing more,
    and faiss allocates for its width (16 GB and a minute at ``ef=2**31 - 1``)."""
    ef = params.ef if params.ef is not None else DEFAULT_EF
    return max(kc, min(ef, n))


def _walk_nodes(graph: Graph, ef: int, fraction: float) -> float:
    """The nodes a filtered walk of ``graph`` is expected to score (see
    :data:`WALK_SCORED`)."""
    return WALK_SCORED * int(graph.cum[1]) * ef / max(fraction, 1e-9) ** SPREAD


def _walk_report(stats: np.ndarray, n_sel: int, planned_scan: bool) -> dict[str, Any]:
    """What a filtered search did, from the kernel's per-query ``stats`` (nodes scored,
    scanned): the strategy (``scan`` planned, ``graph``, or ``graph+scan`` where some walks
    gave up), the selection's size, the mean nodes scored per query, the queries that
    scanned."""
    scanned = int(stats[:, 1].sum())
    strategy = "scan" if planned_scan else "graph" if not scanned else "graph+scan"
    return {"strategy": strategy, "selected": n_sel,
            "scored": float(stats[:, 0].mean()) if len(stats) else 0.0,
            "scanned": scanned}


def _batch_threads(q: np.ndarray) -> int:
    """Threads for a walk of the batch ``q``: faiss's OpenMP setting for batches the walker
    splits (see ``GraphSearcher.search``), 1 for small ones (no SWIG call per query)."""
    if len(q) < 2 * MIN_CHUNK:
        return 1
    return int(faiss_module().omp_get_max_threads())


def _compiled_walker(graph: Any) -> GraphSearcher | None:
    """A walker whose kernel compiled here (one throwaway query); ``None``, with a warning,
    where numba cannot build it, so searches fall back to faiss's walk instead of failing."""
    from numba.core.errors import NumbaError

    walker = GraphSearcher(graph)
    try:
        walker.search(np.zeros((1, graph.codes.shape[1]), np.float32), 1, 1)
    except NumbaError as e:  # pragma: no cover - depends on the numba/LLVM build
        warnings.warn(f"polyvec: the numba graph walk does not compile here ({e}); "
                      "searching with faiss's walk", RuntimeWarning, stacklevel=3)
        return None
    return walker


ADD_STEPS = 50  # a big build adds its rows in about this many calls, reporting progress


def _add_reporting(index: Any, x: np.ndarray) -> None:
    """``index.add(x)`` in steps of at least 10,000 rows, each reported to the progress bar
    of the build. faiss inserts each step in parallel, ordered by level within the step: the
    graph is not bit-identical to one call's, and of the same quality (tests hold recall)."""
    step = max(10_000, -(-len(x) // ADD_STEPS))
    for a in range(0, len(x), step):
        index.add(x[a:a + step])
        progress.report(len(x[a:a + step]))
