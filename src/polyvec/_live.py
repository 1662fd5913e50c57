"""The live table: every live item's seq and id, in seq order, plus the indexed payload columns.

Positions are append-only; a delete marks a position dead, and the table repacks itself when
more than half of it is dead. Seqs grow monotonically, so ``seqs`` stays sorted and a seq is
found by binary search.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._buffers import Growable
from .filters import Column

__all__ = ["LiveTable", "isin_sorted"]


def isin_sorted(values: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_ref)`` for a sorted ``sorted_ref``, by binary search."""
    if len(sorted_ref) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.searchsorted(sorted_ref, values)
    idx[idx == len(sorted_ref)] = 0
    return sorted_ref[idx] == values


class LiveTable:
    def __init__(self, indexed: Sequence[str]) -> None:
        self.seqs = Growable(np.int64)
        self.alive = Growable(np.bool_)
        self.keys: list[Any] = []
        self.pos: dict[Any, int] = {}
        self.columns = {tuple(p.split(".")): Column(tuple(p.split("."))) for p in indexed}
        self.n_dead = 0
        self._live_seqs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pos)

    @property
    def size(self) -> int:
        """Positions, dead ones included (the length of masks over the table)."""
        return self.seqs.n

    def append(self, seqs: np.ndarray, keys: Sequence[Any],
               payloads: Sequence[dict[str, Any]] | None) -> None:
        start = self.seqs.n
        self.seqs.extend(np.asarray(seqs, dtype=np.int64))
        self.alive.extend(np.ones(len(keys), dtype=bool))
        self.keys.extend(keys)
        for j, k in enumerate(keys):
            self.pos[k] = start + j
        for col in self.columns.values():
            col.extend(payloads if payloads is not None else [{}] * len(keys))
        self._live_seqs = None

    def kill(self, keys: Sequence[Any]) -> None:
        for k in keys:
            p = self.pos.pop(k)
            self.alive.view[p] = False
            self.n_dead += 1
        self._live_seqs = None
        if self.n_dead > 1024 and self.n_dead * 2 > self.size:
            self._repack()

    def _repack(self) -> None:
        keep = np.flatnonzero(self.alive.view)
        seqs, keys = self.seqs.view[keep], [self.keys[i] for i in keep]
        self.seqs, self.alive = Growable(np.int64), Growable(np.bool_)
        self.seqs.extend(seqs)
        self.alive.extend(np.ones(len(keep), dtype=bool))
        self.keys = keys
        self.pos = {k: i for i, k in enumerate(keys)}
        self.columns = {p: c.take(keep) for p, c in self.columns.items()}
        self.n_dead = 0

    def live_seqs(self) -> np.ndarray:
        """Sorted seqs of the live items (cached until the next write)."""
        if self._live_seqs is None:
            self._live_seqs = self.seqs.view[self.alive.view]
        return self._live_seqs

    def seqs_to_keys(self, seqs: np.ndarray) -> np.ndarray:
        """External ids for an array of seqs (any shape); ``-1`` maps to ``None``."""
        flat = seqs.ravel()
        keys = self.keys
        out = np.empty(flat.shape, dtype=object)
        if not flat.size or flat.min() >= 0:  # the common case: every slot filled
            out[:] = [keys[p] for p in np.searchsorted(self.seqs.view, flat).tolist()]
            return out.reshape(seqs.shape)
        valid = flat >= 0
        positions = np.searchsorted(self.seqs.view, flat[valid])
        out[valid] = [keys[p] for p in positions]
        out[~valid] = None
        return out.reshape(seqs.shape)
