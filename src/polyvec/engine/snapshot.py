"""Immutable read views of a collection, published by writers and searched without a lock.

A writer changes the store's state under the collection's mutex, then builds a new
:class:`Snapshot` and publishes it with one attribute assignment. A reader takes the
current snapshot (one attribute read) and searches it while writers build the next one:
nothing a snapshot refers to is changed in place afterwards.

- sealed segments are immutable files; a segment's per-field indexes are replaced, never
  edited (``Segment.indexes`` is swapped for a new dict);
- the growing rows are views of the first ``n`` rows of append-only buffers (appends write
  past ``n``, a reallocation leaves the old buffer to the views that hold it);
- the live set is copied (``live_seqs``, ``alive``) and the seq -> key arrays are the
  append-only ones of the live table (a repack replaces them rather than editing them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._live import isin_sorted
from ..fields import kind_of
from ..storage import sidecar
from ..storage.catalog import SegmentRow

__all__ = ["Segment", "Snapshot"]


@dataclass
class Segment:
    """A sealed segment: its catalog row, row seqs, per-field data and per-field indexes."""

    row: SegmentRow
    seqs: np.ndarray
    fields: dict[str, Any]
    indexes: dict[str, tuple[str, Any]] = field(default_factory=dict)  # field -> (folder, index)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # item sidecars (storage.sidecar)
    # (key column they were made from, live-table position per row (-1: item gone), the
    # first position where the rows sit at consecutive positions (else -1), external id per
    # row (None: gone) or None until asked), made on first use
    rows_at: tuple[Any, np.ndarray, int, np.ndarray | None] | None = None

    def with_index(self, name: str, entry: tuple[str, Any] | None) -> None:
        """Set (or drop, with ``None``) the index of ``name``: a new dict, so a reader holding
        the old one keeps a consistent view."""
        new = dict(self.indexes)
        if entry is None:
            new.pop(name, None)
        else:
            new[name] = entry
        self.indexes = new


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One published state: what a search reads, none of it changed after publication."""

    version: int  # the catalog's data version it reflects
    segments: tuple[Segment, ...]
    # field -> (seqs, data) of the growing rows; data may be a callable making it on first use
    growing: dict[str, tuple[np.ndarray, Any]]
    live_seqs: np.ndarray  # sorted seqs of the live items
    seqs: np.ndarray  # the live table's seqs by position (dead ones included), sorted
    keys: Any  # the live table's KeyColumn: id by position (append-only; first len(seqs) count)
    masks: dict[str, np.ndarray | None] = field(default_factory=dict)  # segment -> alive mask
    memo: dict[str, Any] = field(default_factory=dict)  # what a search derives once
    # indexed payload path -> its column as of this snapshot (``Column.frozen``): filters
    # that the columns answer are evaluated on these, with no lock (see ``alive``)
    columns: dict[Any, Any] = field(default_factory=dict)
    # a filter's text (``repr`` of its parsed tree) -> its selection on this snapshot, kept
    # for the next search with the same filter (``SearchExecutor.select_columns``)
    selections: dict[str, np.ndarray] = field(default_factory=dict)
    # the catalog state it mirrors (``None``: not known): a reader whose own catalog
    # connection sees this cursor may read payloads there for this snapshot's items
    cursor: Any = None
    # field argument of a search -> its one-query plan (see ``engine.search.Plan``), made on
    # first use; ``None``: this snapshot takes the general path for that field
    plans: dict[Any, Any] = field(default_factory=dict)

    def sidecar(self, seqs: np.ndarray) -> dict[str, np.ndarray]:
        """The item sidecar arrays (ids, indexed values) of the live items ``seqs`` (sorted)
        as of this snapshot, for a segment being written (see :mod:`polyvec.storage.sidecar`):
        a background seal reads them here while writers go on."""
        pos = np.searchsorted(self.seqs, seqs)
        encoded = [c.encoded(pos) for c in self.columns.values()]
        return sidecar.encode(self.keys.raw(pos),
                              [(e.kinds, e.nums, e.rows, e.values) for e in encoded])

    def alive(self) -> np.ndarray | None:
        """Whether each live-table position (``seqs``) holds a live item; ``None``: all do.
        Made on first use and cached (the live table's own mask changes in place)."""
        if len(self.live_seqs) == len(self.seqs):  # live seqs are a subset of seqs
            return None
        key = "\0alive"
        if key not in self.masks:
            self.masks[key] = isin_sorted(self.seqs, self.live_seqs)
        return self.masks[key]

    def vectors_of(self, seq: int, fields: dict[str, Any]) -> dict[str, np.ndarray]:
        """Copies of item ``seq``'s vectors (``fields``: name -> spec); ``KeyError`` when
        no block of this snapshot holds it."""
        if self.growing:  # every field's growing rows have the same seqs
            gseqs = next(iter(self.growing.values()))[0]
            i = int(np.searchsorted(gseqs, seq))
            if i < len(gseqs) and gseqs[i] == seq:
                return {n: _copy(kind_of(fields[n]).row(fields[n], d() if callable(d) else d, i))
                        for n, (_, d) in self.growing.items()}
        for seg in self.segments:
            if seg.row.min_seq <= seq <= seg.row.max_seq:
                j = int(np.searchsorted(seg.seqs, seq))
                if j < len(seg.seqs) and seg.seqs[j] == seq:
                    return {n: _copy(kind_of(fields[n]).row(fields[n], d, j))
                            for n, d in seg.fields.items()}
        raise KeyError(seq)

    def live_keys(self) -> list[Any]:
        """Ids of the live items, in seq order."""
        alive = self.alive()
        positions = np.arange(len(self.seqs)) if alive is None else np.flatnonzero(alive)
        return self.keys.take(positions).tolist()

    def block_mask(self, seqs: np.ndarray, seg: Segment) -> np.ndarray | None:
        """Alive mask of a sealed segment's rows; ``None`` when every row is alive."""
        return self._alive_mask(seg.row.name, seqs)

    def growing_mask(self, name: str, seqs: np.ndarray) -> np.ndarray | None:
        """Alive mask of field ``name``'s growing rows (``seqs``); the growing rows change
        with every write, so the next snapshot drops it (``_carry_masks`` keeps segments)."""
        return self._alive_mask("\0growing:" + name, seqs)

    def _alive_mask(self, key: str, seqs: np.ndarray) -> np.ndarray | None:
        """Alive mask of ``seqs`` (``None``: all alive), cached on this snapshot under ``key``
        (idempotent: a racing reader computes the same)."""
        if key in self.masks:
            return self.masks[key]
        mask = isin_sorted(seqs, self.live_seqs)
        out = None if bool(mask.all()) else mask
        self.masks[key] = out
        return out

    def seqs_to_keys(self, seqs: np.ndarray) -> np.ndarray:
        """External ids for an array of seqs (any shape); ``-1`` maps to ``None``."""
        flat = seqs.ravel()
        if not flat.size or flat.min() >= 0:  # the common case: every slot filled
            return self.keys.take(np.searchsorted(self.seqs, flat)).reshape(seqs.shape)
        out = np.empty(flat.shape, dtype=object)
        valid = flat >= 0
        out[valid] = self.keys.take(np.searchsorted(self.seqs, flat[valid]))
        out[~valid] = None
        return out.reshape(seqs.shape)

    def positions(self, seg: Segment) -> np.ndarray:
        """Live-table position of every row of ``seg`` (``-1`` where the item is gone), cached
        on the segment: a seq names one version of one item for good, and positions only
        move when the live table repacks, which makes a new key column."""
        cached = seg.rows_at
        if cached is not None and cached[0] is self.keys:
            return cached[1]
        pos = self.positions_of(np.asarray(seg.seqs))
        n = len(pos)
        start = int(pos[0]) if n and pos.min() >= 0 and pos[-1] - pos[0] == n - 1 else -1
        seg.rows_at = (self.keys, pos, start, None)
        return pos

    def positions_of(self, seqs: np.ndarray) -> np.ndarray:
        """Live-table positions of ``seqs`` (``-1`` where not in the table)."""
        if not len(self.seqs):
            return np.full(len(seqs), -1, dtype=np.int64)
        pos = np.searchsorted(self.seqs, seqs)
        pos[pos == len(self.seqs)] = 0
        return np.where(self.seqs[pos] == seqs, pos, -1)

    def row_keys(self, seg: Segment) -> np.ndarray:
        """External id of every row of ``seg`` (``None`` where the item is gone), then one
        ``None`` more, so that ``row_keys(seg)[rows]`` maps a pad row ``-1`` to ``None``;
        cached on the segment beside its positions."""
        pos = self.positions(seg)
        cached = seg.rows_at
        assert cached is not None
        if cached[3] is not None:
            return cached[3]
        known = np.flatnonzero(pos >= 0)
        keys = np.full(len(pos) + 1, None, dtype=object)
        keys[known] = self.keys.take(pos[known])
        seg.rows_at = (*cached[:3], keys)
        return keys

    def select_rows(self, selected: np.ndarray, seg: Segment) -> np.ndarray:
        """The row mask of ``seg`` from ``selected`` (bool over live-table positions): a view
        of it where the segment's rows are consecutive positions (a segment sealed and not
        repacked since), else a gather through the segment's positions."""
        pos = self.positions(seg)
        assert seg.rows_at is not None
        start = seg.rows_at[2]
        if start >= 0:
            return selected[start:start + len(pos)]
        return self.select_by(selected, pos)

    def rows_at(self, positions: np.ndarray, seg: Segment) -> np.ndarray | None:
        """The rows of ``seg`` at live-table ``positions`` (ascending) that it holds, where
        its rows are consecutive positions (see :meth:`select_rows`); ``None`` elsewhere."""
        pos = self.positions(seg)
        assert seg.rows_at is not None
        start = seg.rows_at[2]
        if start < 0:
            return None
        lo, hi = np.searchsorted(positions, (start, start + len(pos)))
        return positions[lo:hi] - start

    @staticmethod
    def select_by(selected: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """A block's row mask from ``selected`` and the block's positions (``-1``: not
        selectable)."""
        return np.append(selected, False)[pos]


def _copy(row: Any) -> Any:
    """A copy of a row as a kind gives it (an array, or a Sparse field's SparseVector of
    copies already)."""
    return row if isinstance(row, tuple) else np.array(row)
