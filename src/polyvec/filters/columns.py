"""In-memory columns of an indexed payload path, evaluated with vectorized numpy.

A :class:`Column` keeps, for every row position, the kind of the value found at its path
(missing, null, false, true, number, string, dict, or "slow"), its number as float64 and its
string as an int32 dictionary code. Leaves are then evaluated with array comparisons; only
"slow" rows (lists, and ints beyond +-2**53 that float64 cannot hold exactly) fall back to the
reference evaluator, one Python call per such row.

Examples
--------
>>> from polyvec.filters.ast import Compare
>>> col = Column(("year",))
>>> col.extend([{"year": 1999}, {"year": "2001"}, {}, {"year": [1990, 2005]}])
>>> col.evaluate(Compare(("year",), "gt", 2000)).tolist()
[False, False, False, True]
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .ast import Compare, Exists, In, Leaf, Path
from .parse import MAX_SAFE_INT
from .reference import MISSING, is_number, leaf_matches_value, resolve

__all__ = ["Column"]

# Kind codes of a row's value.
K_MISSING, K_NULL, K_FALSE, K_TRUE, K_NUMBER, K_STRING, K_DICT, K_SLOW = range(8)
_MIN_CAPACITY = 16


class Column:
    """Values of one payload path, one per row position, in growable numpy buffers.

    Parameters
    ----------
    path : tuple of str
        The indexed payload path, e.g. ``("meta", "year")``.
    """

    def __init__(self, path: Path) -> None:
        if not isinstance(path, tuple) or not path or not all(isinstance(s, str) for s in path):
            raise TypeError(f"path must be a non-empty tuple of str, got {path!r}")
        self.path: Path = path
        self._n = 0
        self._kind = np.zeros(_MIN_CAPACITY, dtype=np.int8)
        self._num = np.full(_MIN_CAPACITY, np.nan)
        self._code = np.full(_MIN_CAPACITY, -1, dtype=np.int32)
        self._raw = np.full(_MIN_CAPACITY, None, dtype=object)
        self._strings: list[str] = []
        self._codes: dict[str, int] = {}
        self._sorted: tuple[list[str], npt.NDArray[np.int64]] | None = None

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"Column(path={self.path!r}, rows={self._n}, strings={len(self._strings)})"

    def extend(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Append the value at :attr:`path` of each payload (a missing value is allowed).

        Parameters
        ----------
        payloads : sequence of dict
            One JSON payload per new row, in row-position order.
        """
        values = [resolve(payload, self.path) for payload in payloads]
        start, count = self._n, len(values)
        self._reserve(start + count)
        kinds = np.zeros(count, dtype=np.int8)
        nums = np.full(count, np.nan)
        codes = np.full(count, -1, dtype=np.int32)
        for i, value in enumerate(values):
            kind = _kind_of(value)
            kinds[i] = kind
            if kind == K_NUMBER:
                nums[i] = float(value) + 0.0  # + 0.0 turns -0.0 into 0.0
            elif kind == K_STRING:
                codes[i] = self._intern(value)
            elif kind == K_SLOW:
                self._raw[start + i] = list(value) if isinstance(value, list) else value
        self._kind[start : start + count] = kinds
        self._num[start : start + count] = nums
        self._code[start : start + count] = codes
        self._n = start + count

    def take(self, positions: npt.ArrayLike) -> Column:
        """Return a new column keeping the rows at ``positions``, in that order.

        Parameters
        ----------
        positions : array_like of int
            Row positions in ``[0, len(self))``; repeats are allowed.

        Returns
        -------
        Column
            A column with ``len(positions)`` rows and a compacted string dictionary.
        """
        pos = np.asarray(positions)
        if pos.ndim != 1 or not (np.issubdtype(pos.dtype, np.integer) or pos.size == 0):
            raise TypeError(f"positions must be a 1-D integer array, got {pos.dtype} {pos.shape}")
        pos = pos.astype(np.intp)
        if pos.size and (pos.min() < 0 or pos.max() >= self._n):
            raise IndexError(f"positions must lie in [0, {self._n}), got {pos.min()}..{pos.max()}")
        out = Column(self.path)
        out._reserve(pos.size)
        codes = self._code[pos]
        used, inverse = np.unique(codes[codes >= 0], return_inverse=True)
        codes[codes >= 0] = inverse
        out._strings = [self._strings[c] for c in used.tolist()]
        out._codes = {s: i for i, s in enumerate(out._strings)}
        out._kind[: pos.size] = self._kind[pos]
        out._num[: pos.size] = self._num[pos]
        out._code[: pos.size] = codes
        out._raw[: pos.size] = self._raw[pos]
        out._n = int(pos.size)
        return out

    def evaluate(self, leaf: Leaf) -> npt.NDArray[np.bool_]:
        """Evaluate a leaf over every row.

        Parameters
        ----------
        leaf : Compare, In or Exists
            A leaf whose path equals :attr:`path`.

        Returns
        -------
        numpy.ndarray of bool, shape (len(self),)
            Row ``i`` is True iff the payload of row ``i`` matches ``leaf``.
        """
        if not isinstance(leaf, (Compare, In, Exists)):
            raise TypeError(f"expected a Compare, In or Exists leaf, got {type(leaf).__name__}")
        if leaf.path != self.path:
            raise ValueError(f"leaf path {leaf.path!r} is not this column's path {self.path!r}")
        kind = self._kind[: self._n]
        if isinstance(leaf, Exists):
            return kind != K_MISSING
        if isinstance(leaf, In):
            mask = self._equal_any(leaf.values)
        elif leaf.op == "eq":
            mask = self._equal_any((leaf.value,))
        else:
            mask = self._range(leaf)
        for row in np.flatnonzero(kind == K_SLOW).tolist():
            mask[row] = leaf_matches_value(leaf, self._raw[row])
        return mask

    def _equal_any(self, values: Sequence[object]) -> npt.NDArray[np.bool_]:
        kind, n = self._kind[: self._n], self._n
        mask = np.zeros(n, dtype=bool)
        nums = [float(v) + 0.0 for v in values if is_number(v)]  # type: ignore[arg-type]
        if nums:
            mask |= self._num[:n] == nums[0] if len(nums) == 1 else np.isin(self._num[:n], nums)
        codes = [self._codes[v] for v in values if isinstance(v, str) and v in self._codes]
        if codes:
            wanted = np.zeros(len(self._strings) + 1, dtype=bool)  # extra False slot for code -1
            wanted[codes] = True
            mask |= wanted[self._code[:n]]
        atoms = {K_NULL if v is None else (K_TRUE if v else K_FALSE) for v in values if _is_atom(v)}
        for atom in atoms:
            mask |= kind == atom
        return mask

    def _range(self, leaf: Compare) -> npt.NDArray[np.bool_]:
        value, op = leaf.value, leaf.op
        if isinstance(value, str):
            ordered, rank = self._sorted_strings()
            right = op in ("gt", "lte")  # do strings equal to the operand fall before the cut?
            cut = (bisect.bisect_right if right else bisect.bisect_left)(ordered, value)
            ok = np.zeros(len(ordered) + 1, dtype=bool)  # extra False slot for code -1
            ok[:-1] = rank >= cut if op in ("gt", "gte") else rank < cut
            return ok[self._code[: self._n]]
        number = self._num[: self._n]
        operand = float(value) + 0.0  # type: ignore[arg-type]
        if op == "gt":
            return number > operand
        if op == "gte":
            return number >= operand
        if op == "lt":
            return number < operand
        return number <= operand

    def _sorted_strings(self) -> tuple[list[str], npt.NDArray[np.int64]]:
        if self._sorted is None or len(self._sorted[0]) != len(self._strings):
            order = sorted(range(len(self._strings)), key=self._strings.__getitem__)
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            self._sorted = ([self._strings[i] for i in order], rank)
        return self._sorted

    def _intern(self, text: str) -> int:
        code = self._codes.get(text)
        if code is None:
            code = self._codes[text] = len(self._strings)
            self._strings.append(text)
        return code

    def _reserve(self, size: int) -> None:
        capacity = len(self._kind)
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity)
        self._kind = _grown(self._kind, capacity, 0)
        self._num = _grown(self._num, capacity, np.nan)
        self._code = _grown(self._code, capacity, -1)
        self._raw = _grown(self._raw, capacity, None)


def _grown(buffer: npt.NDArray[Any], capacity: int, fill: Any) -> npt.NDArray[Any]:
    out = np.full(capacity, fill, dtype=buffer.dtype)
    out[: len(buffer)] = buffer
    return out


def _is_atom(value: object) -> bool:
    return value is None or isinstance(value, bool)


def _kind_of(value: object) -> int:
    if value is MISSING:
        return K_MISSING
    if value is None:
        return K_NULL
    if isinstance(value, bool):
        return K_TRUE if value else K_FALSE
    if isinstance(value, float):
        return K_NUMBER
    if isinstance(value, int):
        return K_NUMBER if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else K_SLOW
    if isinstance(value, str):
        return K_STRING
    if isinstance(value, dict):
        return K_DICT
    return K_SLOW  # lists and anything that is not JSON: the reference decides, row by row
