"""BM25 fields: a text per item, kept as its term ids and counts (a Sparse field's CSR layout)
plus its length; queries are texts, bound to the collection's statistics before the scan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate as v
from .._growing import SparseGrowing, SparseRows, decode_sparse
from .._kernels import TopK
from .._kernels.sparse import scan_sparse
from ..errors import InvalidVector
from ..lexical import bm25, term_id, term_ids
from ..spec import FieldSpec
from .sparse import SparseKind

__all__ = ["BM25Kind"]


class BM25Kind(SparseKind):
    name = "bm25"
    model_output = "text"
    stats = True

    def check_vectors(self, name: str, spec: FieldSpec, data: object, n: int) -> SparseRows:
        where = f"vectors[{name!r}]"
        texts = _texts(data, where)
        if len(texts) != n:
            raise InvalidVector(f"{where}: expected {n} texts, got {len(texts)}")
        rows, lengths = [], np.zeros(n, np.int32)
        for i, text in enumerate(texts):
            ids, counts, lengths[i] = _analyzed(spec, text)
            rows.append((ids, counts))
        return SparseRows.from_list(rows, np.dtype(np.float32), lengths)

    def restore(self, name: str, spec: FieldSpec, data: object, n: int) -> SparseRows:
        """An item comes back as its term ids and counts (:meth:`row`); its length, the
        number of its terms, is the sum of the counts."""
        rows = v.check_sparse_vectors(name, spec, data, n)
        lengths = np.array([counts.sum() for _, counts in rows], np.int32)
        return SparseRows.from_list(rows, np.dtype(np.float32), lengths)

    def check_query(self, spec: FieldSpec, query: object
                    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
        if isinstance(query, str):
            return [_analyzed(spec, _text(query, "query"))[:2]], True
        if not isinstance(query, Sequence):
            raise InvalidVector(f"query: expected a text or a list of texts, got "
                                f"{type(query).__name__}")
        texts = _texts(query, "query")
        if not texts:
            raise InvalidVector("query: expected a text or a non-empty list of texts, got an "
                                "empty list")
        return [_analyzed(spec, t)[:2] for t in texts], False

    def new_growing(self, spec: FieldSpec) -> SparseGrowing:  # type: ignore[override]
        return SparseGrowing(spec, np.dtype(np.float32), lengths=True)

    def from_chunk(self, spec: FieldSpec, part: bytes, count: int) -> SparseRows:
        return decode_sparse(part, count, np.dtype(np.float32), lengths=True)

    def sealed_arrays(self, name: str, data: Any) -> dict[str, np.ndarray]:
        return super().sealed_arrays(name, data) | {f"{name}.lengths": data.lengths}

    def open_sealed(self, name: str, spec: FieldSpec, files: Any,
                    nrows: int) -> tuple[SparseRows, bool]:
        files[f"{name}.lengths"]  # (required: a KeyError names it missing)
        rows, ok = super().open_sealed(name, spec, files, nrows)
        return rows, ok and rows.lengths is not None and rows.lengths.dtype == np.int32

    def merge(self, spec: FieldSpec, parts: list[tuple[Any, np.ndarray]]) -> SparseRows:
        out = super().merge(spec, parts)
        out.lengths = np.concatenate([np.asarray(d.lengths)[r] for d, r in parts]
                                     ).astype(np.int32) if parts else np.zeros(0, np.int32)
        return out

    def bind(self, spec: FieldSpec, queries: Any, blocks: list[tuple[Any, np.ndarray | None]],
             memo: dict[str, Any]) -> list[bm25.BM25Query]:
        return bm25.bind(queries, spec.k1, spec.b, blocks, memo)  # type: ignore[union-attr]

    def statistics(self, queries: Any, blocks: list[tuple[Any, np.ndarray | None]]
                   ) -> dict[str, Any]:
        return bm25.statistics(queries, blocks)

    def given(self, stats: dict[str, Any]) -> dict[str, Any]:
        return bm25.given(stats)

    def scan(self, spec: FieldSpec, queries: Any, data: Any, seqs: np.ndarray, topk: TopK,
             mask: np.ndarray | None) -> None:
        assert all(isinstance(q, bm25.BM25Query) for q in queries), \
            "BM25 queries are bound before a scan"
        # (one bind: every query of the batch has the collection's one scoring)
        scan_sparse([(q.ids, q.weights) for q in queries], data, seqs, topk, mask=mask,
                    scoring=queries[0].scoring)


def _text(x: object, where: str) -> str:
    if not isinstance(x, str):
        raise InvalidVector(f"{where}: expected a text (str), got {type(x).__name__}")
    if not x.strip():
        raise InvalidVector(f"{where}: expected a non-empty text, got {x!r}")
    return x


def _texts(data: object, where: str) -> list[str]:
    if isinstance(data, str) or not isinstance(data, Sequence):
        raise InvalidVector(f"{where}: expected a list of texts, got {type(data).__name__}")
    return [_text(t, f"{where}[{i}]") for i, t in enumerate(data)]


def _analyzed(spec: FieldSpec, text: str) -> tuple[np.ndarray, np.ndarray, int]:
    """A text's distinct term ids (sorted), their counts, and its number of terms."""
    terms = spec.analyzer.terms(text)  # type: ignore[union-attr]
    if len(terms) > 64:
        ids, counts = np.unique(term_ids(terms), return_counts=True)
        return ids, counts.astype(np.float32), len(terms)
    tally: dict[int, int] = {}  # (a query's few terms: cheaper in Python than numpy)
    for t in terms:
        h = term_id(t)
        tally[h] = tally.get(h, 0) + 1
    keys = sorted(tally)
    return (np.array(keys, np.uint32), np.array([tally[t] for t in keys], np.float32),
            len(terms))
