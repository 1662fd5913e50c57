"""Amortized-growth numpy buffers (capacity doubling): append is O(1) per row."""

from __future__ import annotations

import numpy as np

__all__ = ["Growable"]


class Growable:
    """A 1-D or 2-D array that grows along axis 0."""

    def __init__(self, dtype: np.dtype | type, width: int | None = None) -> None:
        shape = (16,) if width is None else (16, width)
        self._buf = np.empty(shape, dtype=dtype)
        self.n = 0

    def extend(self, rows: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self._buf):
            # headroom over a bulk load: the next small appends (a reader catching up with
            # another process's commit) must not copy the whole buffer (untouched pages cost
            # no RSS)
            cap = max(need + need // 8, 2 * len(self._buf))
            new = np.empty((cap, *self._buf.shape[1:]), dtype=self._buf.dtype)
            new[: self.n] = self._buf[: self.n]
            self._buf = new
        self._buf[self.n : need] = rows
        self.n = need

    @property
    def capacity(self) -> int:
        return len(self._buf)

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` rows in all (untouched pages cost no memory): appends up to
        there copy nothing and fault each page in once."""
        if rows > len(self._buf):
            new = np.empty((rows, *self._buf.shape[1:]), dtype=self._buf.dtype)
            new[: self.n] = self._buf[: self.n]
            self._buf = new

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self.n]

    def __len__(self) -> int:
        return self.n
