"""Sparse fields: ``(indices, values)`` per item, dot-product scored, laid out as CSR arrays
(``offsets``, ``indices``, ``values``) in the buffer and in a segment. Searched exactly (the
inverted index comes with BM25)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate as v
from .._growing import SparseGrowing, SparseRows, decode_sparse, encode_sparse
from .._kernels import TopK
from .._kernels.sparse import Postings, Scoring, scan_sparse
from ..errors import InvalidArgument
from ..spec import FieldSpec, Sparse
from ..types import SparseVector
from .base import FieldKind

__all__ = ["SparseKind"]


class SparseKind(FieldKind):
    name = "sparse"
    model_output = "sparse"
    index_family = "sparse"
    prunes = True

    def check_vectors(self, name: str, spec: FieldSpec, data: object, n: int) -> SparseRows:
        return SparseRows.from_list(v.check_sparse_vectors(name, spec, data, n),
                                    v.storage_dtype(spec))

    def restore(self, name: str, spec: FieldSpec, data: object, n: int) -> SparseRows:
        """(``u8`` weights come back as step times scale: each is rounded to its step.)"""
        return SparseRows.from_list(v.check_sparse_vectors(name, spec, data, n, stored=True),
                                    v.storage_dtype(spec))

    def check_query(self, spec: FieldSpec, query: object
                    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
        return v.check_sparse_query(spec, query)

    def search_params(self, name: str, *, ef: Any, nprobe: Any, oversample: Any,
                      candidates: Any, rerank_depth: Any) -> None:
        given = [k for k, x in (("ef", ef), ("nprobe", nprobe), ("oversample", oversample),
                                ("candidates", candidates), ("rerank_depth", rerank_depth))
                 if x is not None]
        if given:
            raise InvalidArgument(f"search: {', '.join(given)}: for indexed Dense or Multi "
                                  f"fields; Sparse field {name!r} is searched exactly")
        return None

    def new_growing(self, spec: FieldSpec) -> SparseGrowing:  # type: ignore[override]
        return SparseGrowing(spec, v.storage_dtype(spec))

    def growing_data(self, g: Any) -> Any:
        return g.frozen()  # (made on first use, as a Multi field's)

    def to_chunk(self, spec: FieldSpec, data: Any) -> bytes:
        return encode_sparse(data)

    def from_chunk(self, spec: FieldSpec, part: bytes, count: int) -> SparseRows:
        return decode_sparse(part, count, v.storage_dtype(spec))

    def extend_from_chunk(self, g: Any, seqs: np.ndarray, rows: Any) -> None:
        g.extend(seqs, rows)

    def from_blobs(self, spec: FieldSpec, blobs: list[bytes]) -> Any:
        raise ValueError("format-1 catalogs hold no Sparse fields")

    def sealed_arrays(self, name: str, data: Any) -> dict[str, np.ndarray]:
        """The rows (CSR: a ragged layout, as merges stream it) and their inverted lists."""
        return {f"{name}.offsets": data.indptr, f"{name}.indices": data.indices,
                f"{name}.values": data.values} | Postings.file_arrays(name, data.inverted())

    def open_sealed(self, name: str, spec: FieldSpec, files: Any,
                    nrows: int) -> tuple[SparseRows, bool]:
        rows = SparseRows(files[f"{name}.offsets"], files[f"{name}.indices"],
                          files[f"{name}.values"])
        if f"{name}.lengths" in files.arrays:
            rows.lengths = files[f"{name}.lengths"]
        rows.sealed = True
        ok = (len(rows) == nrows and rows.consistent()
              and rows.indices.dtype == np.uint32
              and rows.values.dtype == v.storage_dtype(spec))
        post = Postings.from_files(files, name, nrows, rows.lengths)
        if post is not None:  # (else made from the rows on first use: an older segment)
            rows._postings = post
            ok = ok and post.consistent() and len(post.rows) == len(rows.indices)
        return rows, ok

    def take(self, data: Any, rows: np.ndarray) -> SparseRows:
        return data.subset(rows)

    def merge(self, spec: FieldSpec, parts: list[tuple[Any, np.ndarray]]) -> SparseRows:
        return SparseRows.from_list([d[int(i)] for d, r in parts for i in r],
                                    v.storage_dtype(spec))

    def row(self, spec: FieldSpec, data: Any, i: int) -> SparseVector:
        idx, val = data[i]
        scale = spec.scale if isinstance(spec, Sparse) else 1.0  # (u8: steps times scale)
        return SparseVector(np.array(idx), np.array(val, dtype=np.float32) * np.float32(scale))

    def scan(self, spec: FieldSpec, queries: Any, data: Any, seqs: np.ndarray, topk: TopK,
             mask: np.ndarray | None) -> None:
        scan_sparse(queries, data, seqs, topk, mask=mask,
                    scoring=Scoring(scale=spec.scale if isinstance(spec, Sparse) else 1.0))
