"""Partition graphs: one more graph per frequent value of an indexed payload column.

A filtered graph walk at 10% selectivity steps through ten rows for every one it may return,
so it scores several times the nodes of the unfiltered walk for its recall, or scans (see
``HNSWIndex._filtered``). Where the filter is ``column == value`` on an indexed payload column,
a graph over just that value's rows answers it with the unfiltered walk's cost. So a graph
index built over a segment also builds one over the rows of each value that between
:data:`MIN_PART_ROWS` rows and :data:`MAX_PART_FRACTION` of the segment hold (rarer values are
scanned: see ``hnsw.WALK_SCORED``; commoner ones cost the full walk little more), for every indexed
column, up to :data:`MAX_PART_ROWS` times the segment's rows in all (columns in path order).

A search does not match filters against values: it takes the smallest partition that
holds every selected row (the value's filter, or it combined with anything narrower, or with
deletes), walks that partition's graph with the selection restricted to it, maps the rows
back and refines them exactly against the segment's vectors like any other candidates.
A selection no partition holds walks the whole graph as before. The partitions are built with
the index from the columns indexed then: a payload index created later has none until the
vector index is rebuilt (``create_index`` again) or the segment is merged or compacted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .base import VectorIndex

__all__ = ["MAX_PART_FRACTION", "MAX_PART_ROWS", "MIN_PART_ROWS", "Part", "Parts"]

MIN_PART_ROWS = 2_000  # fewer selected rows are always scanned
MAX_PART_FRACTION = 0.5  # a value on more rows than this fraction walks the whole graph
MAX_PART_ROWS = 2  # rows over all partitions of a segment, per row of the segment


@dataclass(frozen=True)
class Group:
    """Rows sharing one value of one indexed column: what a partition is built over."""

    path: tuple[str, ...]
    value: Any
    rows: np.ndarray  # int64, sorted, rows of the segment


class Part:
    """A partition: its group and the index over the group's rows, built, or loaded from
    its files on first use (``load``): a collection's open reads only the rows of each
    partition, and the first filtered search a partition serves loads its graph."""

    def __init__(self, group: Group, index: VectorIndex | None = None,
                 load: Callable[[], VectorIndex] | None = None) -> None:
        if (index is None) == (load is None):
            raise ValueError("Part: expected an index or a loader")
        self.group = group
        self._index, self._load = index, load
        self._lock = threading.Lock()

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            with self._lock:  # searches from several threads load it once
                if self._index is None:
                    assert self._load is not None
                    self._index = self._load()
        return self._index

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def describe(self) -> dict[str, Any]:
        return {"path": ".".join(self.group.path), "value": self.group.value,
                "rows": len(self.group.rows)}


def pick_groups(candidates: list[Group], n: int) -> list[Group]:
    """The groups worth a partition among ``candidates`` (a segment of ``n`` rows), in
    order, within the size bounds and the rows budget."""
    budget = MAX_PART_ROWS * n
    out = []
    for g in candidates:
        if MIN_PART_ROWS <= len(g.rows) <= MAX_PART_FRACTION * n and len(g.rows) <= budget:
            out.append(g)
            budget -= len(g.rows)
    return out


class Parts:
    """The partitions of one index over ``n`` rows, and the lookup a search makes."""

    def __init__(self, n: int, parts: list[Part]) -> None:
        self.parts = parts
        # per indexed path: each row's partition of that path (-1: none); a row is in at most
        # one partition per path (its value's)
        self._of: list[np.ndarray] = []
        by_path: dict[tuple[str, ...], np.ndarray] = {}
        for i, p in enumerate(parts):
            of = by_path.get(p.group.path)
            if of is None:
                of = by_path[p.group.path] = np.full(n, -1, np.int32)
                self._of.append(of)
            of[p.group.rows] = i

    def find(self, sel: np.ndarray, n_sel: int) -> Part | None:
        """The smallest partition holding every row of ``sel`` (bool, ``n_sel`` > 0 set):
        only the partitions of the first selected row are candidates, one per path."""
        first = int(np.argmax(sel))
        best: Part | None = None
        for of in self._of:
            i = int(of[first])
            if i < 0:
                continue
            part = self.parts[i]
            size = len(part.group.rows)
            if n_sel <= size and (best is None or size < len(best.group.rows)) \
                    and int(np.count_nonzero(sel[part.group.rows])) == n_sel:
                best = part
        return best

    def nbytes(self) -> int:
        """Bytes held: the loaded partitions' indexes, every partition's rows, the lookup."""
        return sum((p.index.bytes_in_ram() if p.loaded else 0) + p.group.rows.nbytes
                   for p in self.parts) + sum(of.nbytes for of in self._of)
