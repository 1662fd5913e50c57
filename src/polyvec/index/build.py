"""Registry of index classes by the spec's index type, and the flat (code scan) index.

>>> import numpy as np
>>> from polyvec.factory import parse_index
>>> x = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
>>> index = build_index(x, parse_index("SQ8,Refine"), "l2")
>>> scores, rows = index.search(x[:2], 3, rerank=x)
>>> rows[:, 0].tolist()
[0, 1]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._kernels import TopK
from ..codecs import Codec, load_codec, make_codec
from ..errors import InvalidArgument
from ..index_spec import IndexSpec
from .base import QueryParams, VectorIndex, exact_topk
from .hnsw import HNSWIndex
from .ivf import IVFIndex
from .parts import Group

__all__ = ["FlatIndex", "INDEXES", "build_index", "load_index"]

_BLOCK = 16384  # code rows scored at once


class FlatIndex(VectorIndex):
    """Exhaustive scan of the stored codes (or of the float vectors when there is no codec)."""

    knob = "oversample"
    codec: Codec | None
    codes: np.ndarray

    def _build(self, x: np.ndarray, seed: int) -> None:
        if self.spec.codec is None:
            self.codec, self.codes = None, x
            return
        self.codec = make_codec(self.spec.codec).fit(x)
        self.codes = self.codec.encode(x)

    def _stage_arrays(self) -> dict[str, np.ndarray]:
        out = {"codes": self.codes}
        if self.codec is not None:
            out.update({f"codec.{k}": v for k, v in self.codec.to_arrays().items()})
        return out

    def _load_stage(self, arrays: dict[str, np.ndarray]) -> None:
        from ..errors import CorruptFile

        if "codes" not in arrays:
            raise CorruptFile("index arrays", "missing array 'stage.codes'")
        self.codes = np.ascontiguousarray(arrays["codes"])
        self.codec = None
        if self.spec.codec is not None:
            sub = {k[6:]: v for k, v in arrays.items() if k.startswith("codec.")}
            self.codec = load_codec(self.spec.codec, sub, where="index codec")
        if len(self.codes) != self.n:
            raise CorruptFile("index arrays", f"expected {self.n} code rows, got "
                                              f"{len(self.codes)}")

    def _stage_bytes(self) -> int:
        fitted = 0 if self.codec is None else sum(
            a.nbytes for a in self.codec.to_arrays().values())
        return int(self.codes.nbytes + fitted)

    def _candidates(self, q: np.ndarray, kc: int, params: QueryParams,
                    sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self._exhaustive(q, kc, sel)

    def _exhaustive(self, q: np.ndarray, kc: int, sel: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        rows = None if sel is None else np.flatnonzero(sel)
        if self.codec is None:
            return exact_topk(q, self.codes, kc, self.metric, rows)
        ids = np.arange(self.n, dtype=np.int64) if rows is None else rows
        top = TopK(len(q), kc)
        metric = "l2" if self.metric == "l2" else "dot"
        for lo in range(0, len(ids), _BLOCK):
            block = ids[lo:lo + _BLOCK]
            codes = self.codes[lo:lo + _BLOCK] if rows is None else self.codes[block]
            top.push(self.codec.scores(q, codes, metric=metric), block)
        return top.result()


INDEXES: dict[str, type[VectorIndex]] = {"Flat": FlatIndex, "HNSW": HNSWIndex, "IVF": IVFIndex}


def _cls(spec: Any) -> type[VectorIndex]:
    if not isinstance(spec, IndexSpec):
        raise InvalidArgument(f"expected an IndexSpec, got {spec!r}")
    return INDEXES[spec.index.name]


def build_index(vectors: np.ndarray, spec: IndexSpec, metric: str, *,
                sample_queries: np.ndarray | None = None, seed: int = 0,
                threads: int | None = None, groups: list[Group] | None = None) -> VectorIndex:
    """Build the index ``spec`` describes over ``vectors`` (n, d) float32.

    ``threads`` sets faiss's OpenMP threads for training and building (``None``: as is);
    ``groups``: rows sharing a payload value, each given a partition graph where the index
    is a graph (see :mod:`polyvec.index.parts`).
    """
    return _cls(spec).build(vectors, spec=spec, metric=metric, sample_queries=sample_queries,
                            seed=seed, threads=threads, groups=groups)


def load_index(spec: IndexSpec, arrays: dict[str, np.ndarray], metric: str, *,
               part_arrays: Callable[[int], dict[str, np.ndarray]] | None = None
               ) -> VectorIndex:
    """An index from its :meth:`~VectorIndex.to_arrays` output (partition graphs from
    ``part_arrays`` on first use, see :meth:`VectorIndex.from_arrays`)."""
    return _cls(spec).from_arrays(spec, arrays, metric, part_arrays=part_arrays)
