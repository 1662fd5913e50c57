"""The live table: every live item's seq and id, in seq order, plus the indexed payload columns.

Positions are append-only; a delete marks a position dead, and the table repacks itself when
more than half of it is dead. Seqs grow monotonically, so ``seqs`` stays sorted and a seq is
found by binary search. Ids are kept as a numpy column (int64 while every id is an int), never
as a Python dict: id -> seq lookups go to the catalog's unique key index, which answers them
inside the read snapshot the table was built from. Per item that is 8 B of seq, 1 B of alive
flag and 8 B of id (plus the string object for str ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._buffers import Growable
from .filters import Column
from .filters.columns import Encoded

__all__ = ["KeyColumn", "LiveTable", "isin_sorted"]


def isin_sorted(values: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_ref)`` for a sorted ``sorted_ref``, by binary search."""
    if len(sorted_ref) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.searchsorted(sorted_ref, values)
    idx[idx == len(sorted_ref)] = 0
    return sorted_ref[idx] == values


class KeyColumn:
    """External ids by position: an int64 array while every id is an int, else an object array
    (a str id costs its pointer and the string)."""

    def __init__(self) -> None:
        self._ints: Growable | None = Growable(np.int64)
        self._objs: Growable | None = None

    def __len__(self) -> int:
        return len(self._ints if self._ints is not None else self._objs)  # type: ignore[arg-type]

    def extend(self, keys: Sequence[Any] | np.ndarray) -> None:
        if isinstance(keys, np.ndarray) and keys.dtype == np.int64:  # a segment's id sidecar
            if self._ints is not None:
                self._ints.extend(keys)
                return
            keys = keys.tolist()
        if self._ints is not None:
            if all(type(k) is int for k in keys):
                self._ints.extend(np.fromiter(keys, dtype=np.int64, count=len(keys)))
                return
            self._objs = Growable(object)
            self._objs.extend(self._ints.view.astype(object))
            self._ints = None
        arr = np.empty(len(keys), dtype=object)
        arr[:] = list(keys)
        self._objs.extend(arr)  # type: ignore[union-attr]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The ids at ``positions`` as an object array of Python ints/strs."""
        if self._ints is not None:
            return self._ints.view[positions].astype(object)
        return self._objs.view[positions]  # type: ignore[union-attr]

    def raw(self, positions: np.ndarray) -> np.ndarray:
        """The ids at ``positions``: int64 while every id is an int, else objects."""
        if self._ints is not None:
            return self._ints.view[positions]
        return self._objs.view[positions]  # type: ignore[union-attr]

    def nbytes(self) -> int:
        if self._ints is not None:
            return self._ints.view.nbytes
        objs: np.ndarray = self._objs.view  # type: ignore[union-attr]
        return int(objs.nbytes) + sum(int(k.__sizeof__()) for k in objs if isinstance(k, str))


class LiveTable:
    def __init__(self, indexed: Sequence[str]) -> None:
        self.seqs = Growable(np.int64)
        self.alive = Growable(np.bool_)
        self.keys = KeyColumn()
        self.columns = {tuple(p.split(".")): Column(tuple(p.split("."))) for p in indexed}
        self.n_dead = 0
        self._live_seqs: np.ndarray | None = None

    def __len__(self) -> int:
        return self.seqs.n - self.n_dead

    @property
    def size(self) -> int:
        """Positions, dead ones included (the length of masks over the table)."""
        return self.seqs.n

    def append(self, seqs: np.ndarray, keys: Sequence[Any] | np.ndarray,
               payloads: Sequence[dict[str, Any]] | None, *,
               columns: Sequence[Encoded] | None = None) -> None:
        """Add items; their seqs are larger than every seq already in the table. The indexed
        columns take the items' ``payloads``, or their rows already encoded (``columns``)."""
        self.seqs.extend(np.asarray(seqs, dtype=np.int64))
        self.alive.extend(np.ones(len(keys), dtype=bool))
        self.keys.extend(keys)
        for i, col in enumerate(self.columns.values()):
            if columns is not None:
                col.extend_encoded(columns[i])
            else:
                col.extend(payloads if payloads is not None else [{}] * len(keys))
        self._live_seqs = None

    def kill_seqs(self, seqs: Sequence[int] | np.ndarray) -> int:
        """Mark the items of ``seqs`` dead (seqs not in the table are ignored); returns how
        many died."""
        seqs = np.asarray(seqs, dtype=np.int64)
        if not len(seqs) or not self.seqs.n:
            return 0
        pos = np.searchsorted(self.seqs.view, seqs)
        inside = pos < self.seqs.n
        pos = pos[inside]
        pos = pos[self.seqs.view[pos] == seqs[inside]]
        pos = pos[self.alive.view[pos]]
        self.alive.view[pos] = False
        self.n_dead += len(pos)
        self._live_seqs = None
        if self.n_dead > 1024 and self.n_dead * 2 > self.size:
            self._repack()
        return len(pos)

    def apply(self, deleted: Sequence[int], seqs: np.ndarray, keys: Sequence[Any],
              payloads: Sequence[dict[str, Any]] | None) -> None:
        """Catch up with another process's commits: kill ``deleted``, append the new items."""
        self.kill_seqs(deleted)
        if len(seqs):
            self.append(seqs, keys, payloads)

    def _repack(self) -> None:
        keep = np.flatnonzero(self.alive.view)
        seqs, keys = self.seqs.view[keep], self.keys.take(keep)
        self.seqs, self.alive, self.keys = Growable(np.int64), Growable(np.bool_), KeyColumn()
        self.seqs.extend(seqs)
        self.alive.extend(np.ones(len(keep), dtype=bool))
        self.keys.extend(keys.tolist())
        self.columns = {p: c.take(keep) for p, c in self.columns.items()}
        self.n_dead = 0

    def live_seqs(self) -> np.ndarray:
        """Sorted seqs of the live items (cached until the next write)."""
        if self._live_seqs is None:  # no copy while nothing died (appends write past it)
            seqs = self.seqs.view
            self._live_seqs = seqs if not self.n_dead else seqs[self.alive.view]
        return self._live_seqs

    def live_keys(self) -> list[Any]:
        """Ids of the live items, in seq order."""
        return self.keys.take(np.flatnonzero(self.alive.view)).tolist()

    def seqs_to_keys(self, seqs: np.ndarray) -> np.ndarray:
        """External ids for an array of seqs (any shape); ``-1`` maps to ``None``."""
        flat = seqs.ravel()
        if not flat.size or flat.min() >= 0:  # the common case: every slot filled
            return self.keys.take(np.searchsorted(self.seqs.view, flat)).reshape(seqs.shape)
        out = np.empty(flat.shape, dtype=object)
        valid = flat >= 0
        out[valid] = self.keys.take(np.searchsorted(self.seqs.view, flat[valid]))
        out[~valid] = None
        return out.reshape(seqs.shape)

    def nbytes(self) -> int:
        """Bytes of the per-item bookkeeping (seqs, alive flags, ids; not payload columns)."""
        return self.seqs.view.nbytes + self.alive.view.nbytes + self.keys.nbytes()
