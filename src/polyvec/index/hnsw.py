"""HNSW graph index over faiss (``IndexHNSWFlat``, ``IndexHNSWSQ`` 8-bit or fp16).

Built with ``M`` and ``ef_construction`` from the spec; ``ef`` is passed per search
(default :data:`DEFAULT_EF`, raised to the number of candidates wanted). A selection goes to
faiss as an ``IDSelectorBitmap``; the exhaustive fallback scans the graph's storage (the
flat or scalar-quantized codes) with the same selector.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, cast

import numpy as np

from ..errors import InvalidArgument
from ..index_spec import F16, HNSW, SQ8
from .base import (
    QueryParams,
    VectorIndex,
    deserialize,
    faiss_module,
    faiss_result,
    faiss_search,
    faiss_selector,
    serialize,
)
from .order import lid_order

__all__ = ["HNSWIndex", "DEFAULT_EF"]

DEFAULT_EF = 64


class HNSWIndex(VectorIndex):
    """Graph index; candidates from a faiss HNSW walk over flat, SQ8 or F16 storage."""

    knob = "ef"
    faiss_index: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_params: dict[int, Any] = {}

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
            index.add(np.ascontiguousarray(x[order]))
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            index.permute_entries(back)
        else:
            index.add(x)
        self.faiss_index = index

    def _stage_arrays(self) -> dict[str, np.ndarray]:
        return {"faiss": serialize(self.faiss_index)}

    def _load_stage(self, arrays: dict[str, np.ndarray]) -> None:
        self.faiss_index = deserialize(arrays)

    def _stage_bytes(self) -> int:
        idx = self.faiss_index
        links = idx.hnsw.neighbors.size() * 4 + idx.hnsw.offsets.size() * 8
        return int(links + idx.hnsw.levels.size() * 4 + idx.storage.sa_code_size() * idx.ntotal)

    def _widen(self, params: QueryParams, kc: int, fraction: float) -> QueryParams:
        ef = max(kc, params.ef if params.ef is not None else DEFAULT_EF)
        return replace(params, ef=math.ceil(ef / max(fraction, 1e-9)))

    def _prefer_exact(self, params: QueryParams, n_sel: int) -> bool:
        return params.ef is not None and params.ef >= n_sel

    def _candidates(self, q: np.ndarray, kc: int, params: QueryParams,
                    sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ef = max(kc, params.ef if params.ef is not None else DEFAULT_EF)
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
