"""IVF index over faiss (``IndexIVFFlat``, ``IndexIVFScalarQuantizer``, ``IndexIVFPQ``).

The coarse k-means (``nlist`` cells) is seeded by ``IVF(seed=...)``, PQ's by ``PQ(seed=...)``;
``nprobe`` is passed per search (default :data:`DEFAULT_NPROBE`). A selection goes to faiss as
an ``IDSelectorBitmap``; the exhaustive fallback visits every cell.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, cast

import numpy as np

from ..errors import InvalidArgument
from ..index_spec import F16, IVF, PQ, SQ8
from .base import (
    EXACT_BELOW,
    NEAR_SHARE,
    QueryParams,
    VectorIndex,
    _Final,
    deserialize,
    faiss_module,
    faiss_result,
    faiss_selector,
    serialize,
)

__all__ = ["IVFIndex", "DEFAULT_NPROBE"]

DEFAULT_NPROBE = 8
FILTER_CANDIDATES = 64  # a filtered search refines at least this many candidates


class IVFIndex(VectorIndex):
    """Partition index; candidates from the ``nprobe`` nearest cells."""

    knob = "nprobe"
    family = "ivf"
    faiss_index: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cell_of: np.ndarray | None = None  # each row's cell, read once (see _cells)

    def _build(self, x: np.ndarray, seed: int) -> None:
        faiss = faiss_module()
        ivf = cast(IVF, self.spec.index)
        if ivf.nlist > len(x):
            raise InvalidArgument(f"IVF{ivf.nlist}: expected nlist <= the number of rows "
                                  f"{len(x)}, got {ivf.nlist}")
        l2 = self.metric == "l2"
        metric = faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT
        d = x.shape[1]
        quantizer = faiss.IndexFlatL2(d) if l2 else faiss.IndexFlatIP(d)
        codec = self.spec.codec
        if codec is None:
            index = faiss.IndexIVFFlat(quantizer, d, ivf.nlist, metric)
        elif isinstance(codec, SQ8 | F16):
            qt = faiss.ScalarQuantizer.QT_8bit if isinstance(codec, SQ8) else \
                faiss.ScalarQuantizer.QT_fp16
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, ivf.nlist, qt, metric)
        elif isinstance(codec, PQ):
            index = faiss.IndexIVFPQ(quantizer, d, ivf.nlist, codec.m, codec.nbits, metric)
            index.pq.cp.seed = codec.seed + seed
        else:
            raise InvalidArgument(f"IVF: expected no codec, SQ8, F16 or PQ, got {codec!r}")
        index.cp.seed = ivf.seed + seed
        index.train(x)
        index.add(x)
        self._quantizer = quantizer  # the IVF index borrows it
        self.faiss_index = index
        self._cell_of = None

    def _stage_arrays(self) -> dict[str, np.ndarray]:
        return {"faiss": serialize(self.faiss_index)}

    def _load_stage(self, arrays: dict[str, np.ndarray]) -> None:
        self.faiss_index = deserialize(arrays)
        self._cell_of = None

    def _stage_bytes(self) -> int:
        idx = self.faiss_index
        return int(idx.ntotal * (idx.code_size + 8) + idx.nlist * idx.d * 4)

    def _search(self, q: np.ndarray, kc: int, nprobe: int, sel: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
        faiss = faiss_module()
        selector, _bits = faiss_selector(sel)
        p = faiss.SearchParametersIVF(nprobe=min(nprobe, self.faiss_index.nlist))
        if selector is not None:
            p.sel = selector
        dist, ids = self.faiss_index.search(q, kc, params=p)
        return faiss_result(dist, ids, self.metric == "l2")

    def _filtered(self, q: np.ndarray, qt: np.ndarray, k: int, kc: int, params: QueryParams,
                  sel: np.ndarray, n_sel: int, rerank: np.ndarray | None,
                  report: dict[str, Any] | None = None
                  ) -> tuple[np.ndarray, np.ndarray] | _Final | None:
        """Probes chosen by the selection, per query: the cells nearest to the query, as many
        as hold the selected rows an unfiltered search scores (``nprobe`` cells' worth), so
        a filter far from the query probes farther cells instead of returning the few
        selected rows of the near ones (a random filter keeping a fraction f of the rows
        probes about ``nprobe / f`` cells, as the widening did). A query whose cells would
        hold as many rows as are selected, or selected rows at under ``NEAR_SHARE`` of the
        selected fraction (a filter far from the query: its best rows lie where the cells'
        order ranks nothing), scans the selected rows instead; so do small selections (the
        base).
        Either way at least :data:`FILTER_CANDIDATES` candidates go to the refine."""
        nlist = self.faiss_index.nlist
        want = (params.nprobe or DEFAULT_NPROBE) * self.n / nlist
        if n_sel <= kc or n_sel < EXACT_BELOW * self.n or want >= n_sel:
            return super()._filtered(q, qt, k, kc, params, sel, n_sel, rerank, report)
        kc = min(max(kc, FILTER_CANDIDATES), n_sel) if self.refines else kc
        cells = self._cells()
        counts = np.bincount(cells[sel], minlength=nlist)
        sizes = np.bincount(cells, minlength=nlist)
        quantizer = faiss_module().downcast_index(self.faiss_index.quantizer)
        _, order = quantizer.search(qt, nlist)  # each query's cells, nearest first
        order = np.maximum(order, 0)
        held = np.cumsum(counts[order], axis=1)
        probes = np.minimum((held < want).sum(axis=1) + 1, nlist)
        rows_probed = np.cumsum(sizes[order], axis=1)[np.arange(len(q)), probes - 1]
        share = held[np.arange(len(q)), probes - 1] / np.maximum(rows_probed, 1)
        # 0: scan the selected rows (as many probed; or few of them near the query: a far
        # filter, whose best rows the cells' order does not rank)
        probes[(rows_probed >= n_sel) | (share < NEAR_SHARE * n_sel / self.n)] = 0
        s = np.full((len(q), kc), -np.inf, np.float32)
        r = np.full((len(q), kc), -1, np.int64)
        for p in np.unique(probes):  # queries probing as many cells, in one call
            at = np.flatnonzero(probes == p)
            s[at], r[at] = self._search(qt[at], kc, int(p), sel) if p else \
                self._exhaustive(qt[at], kc, sel)
        scanned = int((probes == 0).sum())
        if report is not None:
            report.update(strategy="ivf+scan" if scanned else "ivf", selected=n_sel,
                          probes=float(probes[probes > 0].mean()) if scanned < len(q) else 0.0,
                          scanned=scanned)
        self._scan_short(qt, s, r, min(kc, n_sel), sel)  # never fewer than k
        return s, r

    def _cells(self) -> np.ndarray:
        """The cell of each row (int64, (n,)), read from the inverted lists once."""
        cells = self._cell_of
        if cells is None:
            faiss = faiss_module()
            lists = faiss.extract_index_ivf(self.faiss_index).invlists
            cells = np.empty(self.n, np.int64)
            for c in range(lists.nlist):
                size = lists.list_size(c)
                if size:
                    ids = faiss.rev_swig_ptr(lists.get_ids(c), size)
                    cells[np.asarray(ids, dtype=np.int64)] = c
            self._cell_of = cells
        return cells

    def _widen(self, params: QueryParams, kc: int, fraction: float) -> QueryParams:
        nprobe = params.nprobe or DEFAULT_NPROBE
        return replace(params, nprobe=min(self.faiss_index.nlist,
                                          math.ceil(nprobe / max(fraction, 1e-9))))

    def _candidates(self, q: np.ndarray, kc: int, params: QueryParams,
                    sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self._search(q, kc, params.nprobe or DEFAULT_NPROBE, sel)

    def _exhaustive(self, q: np.ndarray, kc: int, sel: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        return self._search(q, kc, self.faiss_index.nlist, sel)
