"""Multi fields: a token set per item (MaxSim), laid out as ``tokens`` + ``offsets`` arrays."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .. import _validate as v
from .._growing import GrowingField, TokenSets, decode_sets, encode_sets
from .._kernels import TopK
from ..errors import InvalidArgument
from ..multivector import scan_multi
from ..spec import FieldSpec
from .base import FieldKind

__all__ = ["MultiKind"]


class MultiKind(FieldKind):
    name = "multi"
    model_output = "tokens"
    index_family = "multi"

    def check_vectors(self, name: str, spec: FieldSpec, data: object, n: int
                      ) -> list[np.ndarray]:
        return v.check_multi_vectors(name, spec, data, n)

    def restore(self, name: str, spec: FieldSpec, data: object, n: int) -> list[np.ndarray]:
        return v.check_multi_vectors(name, spec, data, n, stored=True)

    def check_query(self, spec: FieldSpec, query: object) -> tuple[list[np.ndarray], bool]:
        return v.check_multi_query(spec, query)

    def prepare(self, spec: FieldSpec, data: Any) -> Any:
        """Token sets pooled when the field's ``pool_factor`` > 1."""
        if getattr(spec, "pool_factor", 1) > 1:
            from ..multivector.pooling import pool_sets

            return pool_sets(data, spec.pool_factor)  # type: ignore[union-attr]
        return data

    def search_params(self, name: str, *, ef: Any, nprobe: Any, oversample: Any,
                      candidates: Any, rerank_depth: Any) -> Any:
        from ..multivector.planner import MultiQueryParams

        if oversample is not None:
            raise InvalidArgument("search: oversample applies to Dense fields; for a Multi "
                                  "field pass candidates= and rerank_depth=")
        if (ef, nprobe, candidates, rerank_depth) == (None, None, None, None):
            return None
        return MultiQueryParams(candidates=candidates, rerank_depth=rerank_depth,
                                nprobe=nprobe, ef=ef)

    def growing_data(self, g: GrowingField) -> Any:
        """Packed on first use (a search), not at every write: the token rows and counts
        are append-only, so their first ``n`` rows are what the snapshot sees."""
        frozen = g.frozen_sets()
        return functools.cache(frozen)

    def to_chunk(self, spec: FieldSpec, data: Any) -> bytes:
        return encode_sets(data, v.storage_dtype(spec))

    def from_chunk(self, spec: FieldSpec, part: bytes, count: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        return decode_sets(part, count, v.storage_dtype(spec), spec.dim)

    def extend_from_chunk(self, g: GrowingField, seqs: np.ndarray, rows: Any) -> None:
        g.extend_sets(seqs, *rows)

    def from_blobs(self, spec: FieldSpec, blobs: list[bytes]) -> list[np.ndarray]:
        dtype = v.storage_dtype(spec)
        return [np.frombuffer(d, dtype=dtype).reshape(-1, spec.dim) for d in blobs]

    def sealed_arrays(self, name: str, data: Any) -> dict[str, np.ndarray]:
        return {f"{name}.tokens": data.tokens, f"{name}.offsets": data.offsets}

    def open_sealed(self, name: str, spec: FieldSpec, files: Any,
                    nrows: int) -> tuple[TokenSets, bool]:
        ts = TokenSets(files[f"{name}.tokens"], files[f"{name}.offsets"])
        ok = (len(ts) == nrows and ts.tokens.shape[1:] == (spec.dim,)
              and int(ts.offsets[-1]) == len(ts.tokens)
              and bool((np.diff(ts.offsets) > 0).all()))
        return ts, ok

    def take(self, data: Any, rows: np.ndarray) -> TokenSets:
        return data.subset(rows)

    def merge(self, spec: FieldSpec, parts: list[tuple[Any, np.ndarray]]) -> TokenSets:
        sets = [d[int(i)] for d, r in parts for i in r]
        return TokenSets.from_list(sets, spec.dim, v.storage_dtype(spec))

    def row(self, spec: FieldSpec, data: Any, i: int) -> np.ndarray:
        return data[i]

    def scan(self, spec: FieldSpec, queries: Any, data: Any, seqs: np.ndarray, topk: TopK,
             mask: np.ndarray | None) -> None:
        scan_multi(queries, data.tokens, data.offsets, seqs, topk, mask=mask)
