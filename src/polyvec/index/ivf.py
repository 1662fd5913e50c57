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
    QueryParams,
    VectorIndex,
    deserialize,
    faiss_module,
    faiss_result,
    faiss_selector,
    serialize,
)

__all__ = ["IVFIndex", "DEFAULT_NPROBE"]

DEFAULT_NPROBE = 8


class IVFIndex(VectorIndex):
    """Partition index; candidates from the ``nprobe`` nearest cells."""

    knob = "nprobe"
    family = "ivf"
    faiss_index: Any

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

    def _stage_arrays(self) -> dict[str, np.ndarray]:
        return {"faiss": serialize(self.faiss_index)}

    def _load_stage(self, arrays: dict[str, np.ndarray]) -> None:
        self.faiss_index = deserialize(arrays)

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
