"""The small abstract class every vector field kind implements.

A field kind is everything the engine needs to know about one kind of vector field (one vector
per item, a token set per item, later sparse vectors): how its input is checked, how a batch is
laid out in the growing buffer and in a sealed segment's ``.npy`` arrays, how sealed rows are
merged, how a block is scanned exactly, which index family indexes it and which search
parameters it takes. The engine never asks what kind a field is: it calls its kind.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .. import _validate as v
from .._growing import GrowingField
from .._kernels import TopK
from ..spec import FieldSpec

__all__ = ["FieldKind"]


class FieldKind(ABC):
    """One kind of vector field. Subclasses are stateless; one instance each is registered in
    :data:`polyvec.fields.KINDS` under the ``kind`` name of its spec class."""

    name: ClassVar[str]  # the spec's ``kind`` ("dense", "multi", ...)
    model_output: ClassVar[str]  # the ModelSpec.output of a model that fills this kind
    index_family: ClassVar[str]  # key of its engine in polyvec.engine.indexes.ENGINES
    prunes: ClassVar[bool] = False  # its scan skips what cannot beat the running k-th score

    # -- validation (the boundary) ----------------------------------------------------------
    @abstractmethod
    def check_vectors(self, name: str, spec: FieldSpec, data: object, n: int) -> Any:
        """Checked, storage-typed input for ``n`` items (raise typed errors)."""

    @abstractmethod
    def check_query(self, spec: FieldSpec, query: object) -> tuple[Any, bool]:
        """Float32 queries and whether the input was a single query."""

    def query_checker(self, spec: FieldSpec) -> Callable[[object], tuple[Any, bool]]:
        """:meth:`check_query` of ``spec`` as one callable, for a caller that checks many
        queries of one field (a search executor's plan); a kind may bind a shorter path
        that must give the same arrays and raise the same errors."""
        return functools.partial(self.check_query, spec)

    def prepare(self, spec: FieldSpec, data: Any) -> Any:
        """Write-time transform of checked input (e.g. token pooling); identity by default."""
        return data

    def restore(self, name: str, spec: FieldSpec, data: object, n: int) -> Any:
        """What ``write`` takes for ``n`` items given back as :meth:`row` gives them (their
        stored form: pooled, quantized or analyzed already), checked but not prepared again;
        :meth:`check_vectors` by default. Items copied between collections (a sharded
        collection's moves and new replicas) come back through this."""
        return self.check_vectors(name, spec, data, n)

    @abstractmethod
    def search_params(self, name: str, *, ef: Any, nprobe: Any, oversample: Any,
                      candidates: Any, rerank_depth: Any) -> Any:
        """The kind's typed, frozen query-time parameters (``None`` when none is given)."""

    # -- growing buffer ---------------------------------------------------------------------
    def new_growing(self, spec: FieldSpec) -> GrowingField:
        return GrowingField(spec, v.storage_dtype(spec))

    def growing_data(self, g: GrowingField) -> Any:
        """The growing rows' data as of now, for a snapshot: a value that later appends do
        not change, or a zero-argument callable that makes it on first use."""
        return g.data

    @abstractmethod
    def from_blobs(self, spec: FieldSpec, blobs: list[bytes]) -> Any:
        """Rows of a format-1 catalog's ``vectors`` table (one blob per item) as growing input;
        raises ``ValueError`` on a blob of the wrong size."""

    @abstractmethod
    def to_chunk(self, spec: FieldSpec, data: Any) -> bytes:
        """A checked batch as its part of one growing-file chunk (see ``storage.growing``)."""

    @abstractmethod
    def from_chunk(self, spec: FieldSpec, part: bytes, count: int) -> Any:
        """A chunk part of ``count`` rows back as growing rows; ``ValueError`` on a bad size."""

    @abstractmethod
    def extend_from_chunk(self, g: GrowingField, seqs: np.ndarray, rows: Any) -> None:
        """Append the rows :meth:`from_chunk` decoded to the growing buffer."""

    # -- sealed arrays ----------------------------------------------------------------------
    @abstractmethod
    def sealed_arrays(self, name: str, data: Any) -> dict[str, np.ndarray]:
        """The ``.npy`` arrays (file name -> array) that store ``data`` in a segment."""

    @abstractmethod
    def open_sealed(self, name: str, spec: FieldSpec, files: Any,
                    nrows: int) -> tuple[Any, bool]:
        """The field's data from a segment's arrays and whether their shapes agree with the
        catalog (``nrows`` rows); a missing array raises ``KeyError``."""

    @abstractmethod
    def take(self, data: Any, rows: np.ndarray) -> Any:
        """The rows ``rows`` of ``data`` (growing or sealed), as sealable data."""

    @abstractmethod
    def merge(self, spec: FieldSpec, parts: list[tuple[Any, np.ndarray]]) -> Any:
        """The rows of several blocks, concatenated in order (compaction, upgrades)."""

    @abstractmethod
    def row(self, spec: FieldSpec, data: Any, i: int) -> Any:
        """Item ``i``'s vector(s), as stored: an array (a view), or a Sparse field's
        :class:`~polyvec.types.SparseVector` (of copies)."""

    # -- reading ----------------------------------------------------------------------------
    stats: ClassVar[bool] = False  # whether queries are bound to collection statistics

    def bind(self, spec: FieldSpec, queries: Any, blocks: list[tuple[Any, np.ndarray | None]],
             memo: dict[str, Any]) -> Any:
        """Checked queries bound to statistics of the whole collection before any block is
        scanned (``stats`` kinds: BM25's document frequencies and mean length), from
        ``blocks``: every block's data and alive mask (``None``: all rows alive). ``memo``
        (the field's, in this snapshot) keeps what depends on the blocks only."""
        return queries

    def statistics(self, queries: Any, blocks: list[tuple[Any, np.ndarray | None]]
                   ) -> dict[str, Any]:
        """What :meth:`bind` reads of ``blocks`` for ``queries``, as plain data that adds up
        over the shards of a collection (``stats`` kinds only)."""
        raise TypeError(f"{type(self).__name__} binds its queries to no statistics")

    def given(self, stats: dict[str, Any]) -> dict[str, Any]:
        """A ``memo`` for :meth:`bind` holding ``stats`` (:meth:`statistics`' form, summed
        over shards) in place of the blocks' own."""
        raise TypeError(f"{type(self).__name__} binds its queries to no statistics")

    @abstractmethod
    def scan(self, spec: FieldSpec, queries: Any, data: Any, seqs: np.ndarray, topk: TopK,
             mask: np.ndarray | None) -> None:
        """Exact scan of one block: push (score, seq) of every row where ``mask`` holds."""

    def __repr__(self) -> str:
        return f"<field kind {self.name!r}>"
