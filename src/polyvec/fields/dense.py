"""Dense fields: one vector per item, an ``(n, dim)`` array in the buffer and in a segment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _validate as v
from .._growing import GrowingField, decode_dense
from .._kernels import TopK
from ..errors import InvalidArgument
from ..index import QueryParams, scan_dense
from ..spec import FieldSpec
from .base import FieldKind
from .params import query_params

__all__ = ["DenseKind"]


class DenseKind(FieldKind):
    name = "dense"
    model_output = "dense"
    index_family = "dense"

    def check_vectors(self, name: str, spec: FieldSpec, data: object, n: int) -> np.ndarray:
        return v.check_dense_vectors(name, spec, data, n)

    def restore(self, name: str, spec: FieldSpec, data: object, n: int) -> np.ndarray:
        return v.check_dense_vectors(name, spec, data, n, stored=True)

    def check_query(self, spec: FieldSpec, query: object) -> tuple[np.ndarray, bool]:
        return v.check_dense_query(spec, query)

    def query_checker(self, spec: FieldSpec) -> Callable[[object], tuple[np.ndarray, bool]]:
        return v.dense_query_checker(spec)

    def search_params(self, name: str, *, ef: Any, nprobe: Any, oversample: Any,
                      candidates: Any, rerank_depth: Any) -> QueryParams | None:
        if (candidates, rerank_depth) != (None, None):
            raise InvalidArgument("search: candidates/rerank_depth apply to Multi fields; "
                                  f"field {name!r} is Dense")
        if (ef, nprobe, oversample) == (None, None, None):
            return None
        return query_params(ef, nprobe, oversample)

    def from_blobs(self, spec: FieldSpec, blobs: list[bytes]) -> np.ndarray:
        return np.frombuffer(b"".join(blobs), dtype=v.storage_dtype(spec)
                             ).reshape(len(blobs), spec.dim)

    def to_chunk(self, spec: FieldSpec, data: Any) -> bytes:
        return np.ascontiguousarray(data, dtype=v.storage_dtype(spec)).tobytes()

    def from_chunk(self, spec: FieldSpec, part: bytes, count: int) -> np.ndarray:
        return decode_dense(part, count, v.storage_dtype(spec), spec.dim)

    def extend_from_chunk(self, g: GrowingField, seqs: np.ndarray, rows: Any) -> None:
        g.extend(seqs, rows)

    def sealed_arrays(self, name: str, data: Any) -> dict[str, np.ndarray]:
        return {name: data}

    def open_sealed(self, name: str, spec: FieldSpec, files: Any,
                    nrows: int) -> tuple[np.ndarray, bool]:
        x = files[name]
        return x, x.shape == (nrows, spec.dim)

    def take(self, data: Any, rows: np.ndarray) -> np.ndarray:
        # rows are sorted distinct positions: as many as the data means all of them (a seal
        # with nothing deleted writes the growing rows as they are, without a copy)
        return data if len(rows) == len(data) else data[rows]

    def merge(self, spec: FieldSpec, parts: list[tuple[Any, np.ndarray]]) -> np.ndarray:
        return np.concatenate([d[r] for d, r in parts])

    def row(self, spec: FieldSpec, data: Any, i: int) -> np.ndarray:
        return data[i]

    def scan(self, spec: FieldSpec, queries: Any, data: Any, seqs: np.ndarray, topk: TopK,
             mask: np.ndarray | None) -> None:
        scan_dense(queries, data, seqs, topk, metric=spec.metric, mask=mask)
