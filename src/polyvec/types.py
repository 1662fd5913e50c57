"""Small value types shared by every layer: metrics and search results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Metric", "SearchResult", "SparseVector"]


class Metric(StrEnum):
    """How similarity is measured. Scores are always "higher is better".

    - ``cosine``: vectors are L2-normalized on write; score = cosine similarity.
    - ``dot``: score = inner product.
    - ``l2``: score = minus the squared Euclidean distance.
    """

    COSINE = "cosine"
    DOT = "dot"
    L2 = "l2"


class SparseVector(NamedTuple):
    """One sparse vector: ``indices`` (uint32, strictly increasing) and their ``values``
    (float32), as :meth:`Collection.get` returns a ``Sparse`` field's vector. As input, a
    ``(indices, values)`` pair, a ``{index: value}`` dict or a scipy.sparse row serve too."""

    indices: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class SearchResult:
    """Top-k answer of a search, numpy-native, keeping the query's shape.

    For one query (a 1-D vector, or one token set), ``ids`` and ``scores`` are 1-D of
    length <= k; for a batch they are 2-D ``(nq, k)``. Where fewer than k items match,
    trailing slots hold id ``None`` and score ``-inf``. ``ids`` is an object array of the
    external ids (str or int); ``info`` says how the answer was computed.
    """

    ids: np.ndarray
    scores: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def made(cls, ids: np.ndarray, scores: np.ndarray, info: dict[str, Any]) -> SearchResult:
        """``SearchResult(ids, scores, info)`` for a search's hot path: the same frozen
        object, its fields set in one step rather than one ``object.__setattr__`` each."""
        out = object.__new__(cls)
        out.__dict__.update(ids=ids, scores=scores, info=info)
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        """Iterate ``(id, score)`` pairs of a single-query result."""
        if self.ids.ndim != 1:
            raise TypeError("iterate a batch result row by row: result[i]")
        return iter(
            [(i, float(s)) for i, s in zip(self.ids, self.scores, strict=True) if i is not None]
        )

    def __getitem__(self, i: int) -> SearchResult:
        """Row ``i`` of a batch result, as a single-query result."""
        if self.ids.ndim != 2:
            raise TypeError("indexing selects a query row of a batch result")
        return SearchResult(self.ids[i], self.scores[i], self.info)
