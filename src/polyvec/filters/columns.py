"""In-memory columns of an indexed payload path, evaluated with vectorized numpy.

A :class:`Column` keeps, for every row position, the kind of the value found at its path
(missing, null, false, true, number, string, dict, list, or "slow"), its number as float64 and
its string as an int32 dictionary code. The elements of list values are kept the same way in
flat side arrays (one entry per element, with the row it belongs to), sharing the string
dictionary; a list row matches ``eq``/``in``/ranges when any of its elements does, so leaves
are evaluated with the same array comparisons on rows and on elements, and the element hits
are OR-ed into their rows. Elements that are not scalars (dicts, nested lists) never match.
Only "slow" rows (ints beyond +-2**53 that float64 cannot hold exactly, as the value or as a
list element) fall back to the reference evaluator, one Python call per such row.

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
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from .ast import Compare, Exists, In, Leaf, Path
from .parse import MAX_SAFE_INT
from .reference import MISSING, is_number, leaf_matches_value, resolve

__all__ = ["Column", "Encoded"]

# Kind codes of a row's value, or of a list element (an element is never K_MISSING nor K_SLOW:
# a list holding an element that float64 cannot represent makes its whole row K_SLOW).
K_MISSING, K_NULL, K_FALSE, K_TRUE, K_NUMBER, K_STRING, K_DICT, K_SLOW, K_LIST = range(9)
_MIN_CAPACITY = 16

Int8s: TypeAlias = npt.NDArray[np.int8]
Floats: TypeAlias = npt.NDArray[np.float64]
Int32s: TypeAlias = npt.NDArray[np.int32]
Bools: TypeAlias = npt.NDArray[np.bool_]
Indices: TypeAlias = npt.NDArray[np.intp]


_VALUED = (K_STRING, K_SLOW, K_LIST)  # the kinds whose rows carry their value in Encoded


@dataclass
class Encoded:
    """Rows of a column as arrays: each row's kind and number, and the values of the rows
    whose kind needs one (strings, lists, "slow" rows) at ``rows`` (sorted), in row order."""

    kinds: Int8s
    nums: Floats
    rows: npt.NDArray[np.int64]
    values: list[Any]

    def take(self, positions: npt.NDArray[np.int64]) -> Encoded:
        """The rows at ``positions`` (distinct), in that order."""
        where = np.full(len(self.kinds), -1, dtype=np.int64)
        where[positions] = np.arange(len(positions))
        new = where[self.rows]
        keep = np.flatnonzero(new >= 0)
        order = keep[np.argsort(new[keep], kind="stable")]
        return Encoded(self.kinds[positions], self.nums[positions], new[order],
                       [self.values[j] for j in order.tolist()])

    @staticmethod
    def concat(parts: Sequence[Encoded]) -> Encoded:
        """The rows of ``parts``, one after the other."""
        if not parts:
            return Encoded(np.zeros(0, np.int8), np.zeros(0), np.zeros(0, np.int64), [])
        bases = np.cumsum([0] + [len(p.kinds) for p in parts[:-1]])
        return Encoded(np.concatenate([p.kinds for p in parts]),
                       np.concatenate([p.nums for p in parts]),
                       np.concatenate([p.rows + b for p, b in zip(parts, bases, strict=True)]),
                       [v for p in parts for v in p.values])


def _element(kind: int, num: float, text: str | None) -> Any:
    """A list element rebuilt from its kind, number and string."""
    if kind == K_NUMBER:
        return num
    if kind == K_STRING:
        return text
    return {K_NULL: None, K_FALSE: False, K_TRUE: True, K_LIST: []}.get(kind, {})


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
        # Rows: the value's kind, number and string code; _raw holds the value of K_SLOW rows.
        self._n = 0
        self._kind = np.zeros(_MIN_CAPACITY, dtype=np.int8)
        self._num = np.full(_MIN_CAPACITY, np.nan)
        self._code = np.full(_MIN_CAPACITY, -1, dtype=np.int32)
        self._raw = np.full(_MIN_CAPACITY, None, dtype=object)
        self._raw_rows = 0  # how many rows are K_SLOW (an upper bound after take)
        # Elements of the K_LIST rows, flattened: _el_row is the row position of each element.
        # Invariant: _el_row is non-decreasing, so a row's elements are contiguous.
        self._el_n = 0
        self._el_row = np.zeros(_MIN_CAPACITY, dtype=np.int64)
        self._el_kind = np.zeros(_MIN_CAPACITY, dtype=np.int8)
        self._el_num = np.full(_MIN_CAPACITY, np.nan)
        self._el_code = np.full(_MIN_CAPACITY, -1, dtype=np.int32)
        # String dictionary shared by rows and elements.
        self._strings: list[str] = []
        self._codes: dict[str, int] = {}
        self._sorted: tuple[list[str], npt.NDArray[np.int64]] | None = None
        # What is worked out from the rows and kept (_small_ints, _counts, _postings), each
        # for the rows made when it was: shared by the frozen copies (a shallow copy shares
        # this dict), whatever their length, since rows never change once made.
        self._kept: dict[str, Any] = {}
        self._hist: tuple[int, npt.NDArray[np.int64]] | None = None  # this copy's counts

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
        if len(self.path) == 1:  # the common case: a top-level key
            key = self.path[0]
            values = [p.get(key, MISSING) if type(p) is dict else resolve(p, self.path)
                      for p in payloads]
        else:
            values = [resolve(payload, self.path) for payload in payloads]
        self.extend_values(values)

    def extend_values(self, values: Sequence[Any]) -> None:
        """Append rows whose values at :attr:`path` are already resolved (``MISSING`` where a
        payload has none)."""
        # each row's kind: by exact type for the common JSON types, by _kind_of for the rest
        kind_list = [_KIND_OF_TYPE.get(type(v), -1) for v in values]
        if -1 in kind_list:
            kind_list = [k if k != -1 else _kind_of(v)
                         for k, v in zip(kind_list, values, strict=True)]
        kinds = np.array(kind_list, dtype=np.int8)
        nums = np.full(len(values), np.nan)
        rows = np.flatnonzero(kinds == K_NUMBER)
        if len(rows):
            nums[rows] = [float(values[i]) + 0.0 for i in rows.tolist()]  # -0.0 -> 0.0
        rows = np.flatnonzero(np.isin(kinds, _VALUED))
        self.extend_encoded(Encoded(kinds, nums, rows, [values[i] for i in rows.tolist()]))

    def extend_encoded(self, enc: Encoded) -> None:
        """Append the rows of ``enc`` (what :meth:`encoded` returns): kinds and numbers as
        arrays, values only for the strings, lists and "slow" rows."""
        kinds = enc.kinds.astype(np.int8, copy=True)
        start, count = self._n, len(kinds)
        self._reserve(start + count)
        codes = np.full(count, -1, dtype=np.int32)
        value_kinds = kinds[enc.rows]
        picked = np.flatnonzero(value_kinds == K_STRING)
        if len(picked):
            texts = [enc.values[j] for j in picked.tolist()]
            known = self._codes.get
            found = [known(t) for t in texts]
            got: list[int] = (
                [self._intern(t) if c is None else c  # new strings, interned in row order
                 for c, t in zip(found, texts, strict=True)] if None in found
                else found)  # type: ignore[assignment]
            codes[enc.rows[picked]] = got
        # The elements of the list rows, flattened, and the row position of each.
        items: list[Any] = []
        owners: list[int] = []
        lists = np.flatnonzero(value_kinds == K_LIST).tolist()
        for j in lists:
            value = enc.values[j]
            items.extend(value)
            owners.extend([start + int(enc.rows[j])] * len(value))
        # the rows that the reference decides, one by one: row -> value
        slow = {start + int(enc.rows[j]): enc.values[j]
                for j in np.flatnonzero(value_kinds == K_SLOW).tolist()}
        item_kinds = [_kind_of(item) for item in items]
        if K_SLOW in item_kinds:  # a list holding a huge int: the reference decides that row
            slow_lists = {owners[j] for j, kind in enumerate(item_kinds) if kind == K_SLOW}
            slow |= {start + int(enc.rows[j]): enc.values[j] for j in lists
                     if start + int(enc.rows[j]) in slow_lists}
            kept = [j for j, row in enumerate(owners) if row not in slow_lists]
            items = [items[j] for j in kept]
            owners = [owners[j] for j in kept]
            item_kinds = [item_kinds[j] for j in kept]
            kinds[[row - start for row in slow_lists]] = K_SLOW
        if items:
            el_start, el_end = self._el_n, self._el_n + len(items)
            self._reserve_elements(el_end)
            self._el_row[el_start:el_end] = owners
            self._el_kind[el_start:el_end] = item_kinds
            self._el_num[el_start:el_end] = _numbers(items, item_kinds)
            self._el_code[el_start:el_end] = self._intern_all(items, item_kinds)
            self._el_n = el_end
        end = start + count
        self._kind[start:end] = kinds
        self._num[start:end] = np.where(kinds == K_NUMBER, enc.nums, np.nan)
        self._code[start:end] = codes
        self._raw_rows += len(slow)
        for row, value in slow.items():
            self._raw[row] = list(value) if isinstance(value, list) else value
        self._n = end

    def frozen(self) -> Column:
        """This column as it is now, for readers while it keeps growing: a shallow copy
        whose row counts stay put. Appends write past those counts or into new arrays, and the
        string dictionary only grows (a string interned later is in no frozen row), so the
        copy's answers never change; nothing may be appended to the copy."""
        return copy.copy(self)

    def encoded(self, positions: npt.ArrayLike) -> Encoded:
        """The rows at ``positions`` in the form :meth:`extend_encoded` takes; it makes the
        same rows. List elements that are not scalars come back as ``{}`` or ``[]`` (nothing
        matches them but their kind)."""
        pos = np.asarray(positions, dtype=np.intp)
        kinds = self._kind[pos].copy()
        rows = np.flatnonzero(np.isin(kinds, _VALUED))
        valued = kinds[rows]
        if (valued == K_STRING).all():  # the common column: strings, one lookup a row
            strings = self._strings
            return Encoded(kinds, self._num[pos].copy(), rows.astype(np.int64),
                           [strings[c] for c in self._code[pos[rows]].tolist()])
        count, start = self._element_spans()
        values: list[Any] = []
        for r in rows.tolist():
            p, kind = int(pos[r]), int(kinds[r])
            if kind == K_STRING:
                values.append(self._strings[int(self._code[p])])
            elif kind == K_SLOW:
                values.append(self._raw[p])
            else:
                a = int(start[p])
                values.append([_element(int(self._el_kind[j]), float(self._el_num[j]),
                                        self._strings[int(self._el_code[j])]
                                        if self._el_code[j] >= 0 else None)
                               for j in range(a, a + int(count[p]))])
        return Encoded(kinds, self._num[pos].copy(), rows.astype(np.int64), values)

    def take(self, positions: npt.ArrayLike) -> Column:
        """Return a new column keeping the rows at ``positions``, in that order.

        Parameters
        ----------
        positions : array_like of int
            Row positions in ``[0, len(self))``; repeats are allowed.

        Returns
        -------
        Column
            A column with ``len(positions)`` rows (list elements included) and a compacted
            string dictionary.
        """
        pos = np.asarray(positions)
        if pos.ndim != 1 or not (np.issubdtype(pos.dtype, np.integer) or pos.size == 0):
            raise TypeError(f"positions must be a 1-D integer array, got {pos.dtype} {pos.shape}")
        pos = pos.astype(np.intp)
        if pos.size and (pos.min() < 0 or pos.max() >= self._n):
            raise IndexError(f"positions must lie in [0, {self._n}), got {pos.min()}..{pos.max()}")
        # The elements of row r are _el_*[start[r] : start[r] + count[r]] (contiguous, as
        # _el_row is sorted); gather those of pos[0], pos[1], ... in turn, so that the new
        # _el_row is sorted too.
        count, start = self._element_spans()
        per_row = count[pos]
        total = int(per_row.sum())
        src = np.repeat(start[pos] - (np.cumsum(per_row) - per_row), per_row) + np.arange(total)
        # Renumber the string codes of rows and elements together, keeping their order.
        codes = np.concatenate([self._code[pos], self._el_code[src]])
        used = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(self._strings)))
        renumber = np.full(len(self._strings) + 1, -1, dtype=np.int32)  # last slot: code -1
        renumber[used] = np.arange(used.size)
        codes = renumber[codes]
        out = Column(self.path)
        out._strings = [self._strings[c] for c in used.tolist()]
        out._codes = {s: i for i, s in enumerate(out._strings)}
        out._reserve(pos.size)
        out._kind[: pos.size] = self._kind[pos]
        out._num[: pos.size] = self._num[pos]
        out._code[: pos.size] = codes[: pos.size]
        out._raw[: pos.size] = self._raw[pos]
        out._raw_rows = self._raw_rows
        out._n = int(pos.size)
        out._reserve_elements(total)
        out._el_row[:total] = np.repeat(np.arange(pos.size), per_row)
        out._el_kind[:total] = self._el_kind[src]
        out._el_num[:total] = self._el_num[src]
        out._el_code[:total] = codes[pos.size :]
        out._el_n = total
        return out

    def groups(self, positions: npt.ArrayLike, min_rows: int, max_rows: int
               ) -> list[tuple[Any, npt.NDArray[np.int64]]]:
        """The rows at ``positions`` grouped by scalar value (a number, a string, ``true``,
        ``false``): ``(value, indices into positions)`` for each value held by between
        ``min_rows`` and ``max_rows`` of them, indices sorted. ``eq`` on the value selects
        exactly its group among these rows, except that list rows holding the value also
        match it: they are in no group (nor are null, missing and nested values)."""
        pos = np.asarray(positions, dtype=np.intp)
        kind = self._kind[pos]
        val = np.where(kind == K_STRING, self._code[pos].astype(np.float64), self._num[pos])
        scalar = np.flatnonzero(np.isin(kind, (K_FALSE, K_TRUE, K_NUMBER, K_STRING)))
        val[np.isin(kind, (K_FALSE, K_TRUE))] = 0.0
        order = scalar[np.lexsort((val[scalar], kind[scalar]))]
        k, v = kind[order], val[order]
        starts = np.flatnonzero(np.r_[True, (k[1:] != k[:-1]) | (v[1:] != v[:-1])])
        ends = np.r_[starts[1:], len(order)]
        out = []
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            if min_rows <= b - a <= max_rows:
                kk, vv = int(k[a]), float(v[a])
                value: Any = (self._strings[int(vv)] if kk == K_STRING else
                              vv if kk == K_NUMBER else kk == K_TRUE)
                out.append((value, np.sort(order[a:b]).astype(np.int64)))
        return out

    def _element_spans(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per row, how many list elements it has and where they start (``_el_row`` is
        sorted, so a row's elements are contiguous)."""
        count = np.bincount(self._el_row[: self._el_n], minlength=self._n)
        return count, np.cumsum(count) - count

    def evaluate(self, leaf: Leaf, rows: npt.NDArray[np.intp] | None = None) -> Bools:
        """Evaluate a leaf over every row, or over the rows at ``rows``.

        Parameters
        ----------
        leaf : Compare, In or Exists
            A leaf whose path equals :attr:`path`.
        rows : numpy.ndarray of int, optional
            Row positions in ``[0, len(self))``: only these rows are evaluated (a few
            candidates of a search, checked after it), in that order.

        Returns
        -------
        numpy.ndarray of bool, shape (len(self),) or (len(rows),)
            Entry ``i`` is True iff the payload of row ``i`` (of ``rows[i]``) matches ``leaf``.
        """
        if not isinstance(leaf, (Compare, In, Exists)):
            raise TypeError(f"expected a Compare, In or Exists leaf, got {type(leaf).__name__}")
        if leaf.path != self.path:
            raise ValueError(f"leaf path {leaf.path!r} is not this column's path {self.path!r}")
        if rows is not None:
            if self._el_n or self._raw_rows:  # list rows: their elements decide, in one pass
                return self.evaluate(leaf)[rows]
            kind = self._kind[rows]
            if isinstance(leaf, Exists):
                return kind != K_MISSING
            return self._scalar_mask(leaf, kind, self._num[rows], self._code[rows],
                                     lambda: self._some_ints(rows))
        n = self._n
        kind = self._kind[:n]
        if isinstance(leaf, Exists):
            return kind != K_MISSING
        if isinstance(leaf, In) and leaf.ids is not None and len(leaf.ids) > 1:
            count = self.count(leaf)  # (one id: a comparison a row is quicker)
            if count is not None and count * FEW_SHARE <= n:  # a few rows: read by value
                mask = np.zeros(n, dtype=bool)
                mask[self.rows_of(leaf)] = True
                return mask
        mask = self._scalar_mask(leaf, kind, self._num[:n], self._code[:n], self._small_ints)
        m = self._el_n
        if m:  # only list rows have elements; a list row matches when any of its elements does
            hit = self._scalar_mask(leaf, self._el_kind[:m], self._el_num[:m], self._el_code[:m])
            mask[np.compress(hit, self._el_row[:m])] = True  # 3x faster than el_row[:m][hit]
        if self._raw_rows:  # K_SLOW rows (rare): the reference decides each
            for row in np.flatnonzero(kind == K_SLOW).tolist():
                mask[row] = leaf_matches_value(leaf, self._raw[row])
        return mask

    def _scalar_mask(self, leaf: Compare | In, kind: Int8s, num: Floats, code: Int32s,
                     ints: Callable[[], tuple[Indices, int]] | None = None) -> Bools:
        """Whether each scalar (a row's value or a list element) matches ``leaf``.

        Entries whose kind is not a scalar kind (missing, dict, list, slow) never match: their
        number is NaN and their string code -1. ``ints`` gives ``num`` as small ints (see
        :meth:`_small_ints`), for an ``$in`` over ids.
        """
        if isinstance(leaf, In):
            if leaf.ids is not None and len(leaf.ids) > 1:  # ids, as the parser found them
                return _isin_numbers(num, leaf.ids, ints)  # type: ignore[arg-type]
            return self._equal_any(leaf.values, kind, num, code, ints)
        if leaf.op == "eq":
            return self._equal_any((leaf.value,), kind, num, code)
        return self._range(leaf, num, code)

    def _equal_any(self, values: Sequence[object], kind: Int8s, num: Floats, code: Int32s,
                   ints: Callable[[], tuple[Indices, int]] | None = None) -> Bools:
        if len(values) == 1 and is_number(values[0]):  # the common filter: one pass
            return np.equal(num, float(values[0]) + 0.0)  # type: ignore[arg-type]
        if set(map(type, values)) == _INT:  # a list of ids: no strings, no atoms
            return _isin_numbers(num, values, ints)  # type: ignore[arg-type]
        mask = np.zeros(len(kind), dtype=bool)
        nums = [float(v) + 0.0 for v in values if is_number(v)]  # type: ignore[arg-type]
        if nums:
            mask |= num == nums[0] if len(nums) == 1 else _isin_numbers(num, nums, ints)
        codes = [self._codes[v] for v in values if isinstance(v, str) and v in self._codes]
        if len(codes) == 1:
            mask |= code == codes[0]
        elif codes:
            wanted = np.zeros(len(self._strings) + 1, dtype=bool)  # extra False slot for code -1
            wanted[codes] = True
            mask |= wanted[code]
        atoms = {K_NULL if v is None else (K_TRUE if v else K_FALSE) for v in values if _is_atom(v)}
        for atom in atoms:
            mask |= kind == atom
        return mask

    def _range(self, leaf: Compare, num: Floats, code: Int32s) -> Bools:
        value, op = leaf.value, leaf.op
        if isinstance(value, str):
            ordered, rank = self._sorted_strings()
            right = op in ("gt", "lte")  # do strings equal to the operand fall before the cut?
            cut = (bisect.bisect_right if right else bisect.bisect_left)(ordered, value)
            ok = np.zeros(len(ordered) + 1, dtype=bool)  # extra False slot for code -1
            ok[:-1] = rank >= cut if op in ("gt", "gte") else rank < cut
            return ok[code]
        operand = float(value) + 0.0  # type: ignore[arg-type]
        if op == "gt":
            return num > operand
        if op == "gte":
            return num >= operand
        if op == "lt":
            return num < operand
        return num <= operand

    def _small_ints(self) -> tuple[npt.NDArray[np.intp], int]:
        """The rows' numbers as indices where they are integers in ``[0, LUT_SPAN)``, else
        -1, and an upper bound on them: an ``$in`` over ids is then one table lookup a row.
        Kept for the most rows any copy made it for, and extended for those made since."""
        n = self._n
        done, (index, top) = self._kept.get("ints", (0, (np.empty(0, dtype=np.intp), -1)))
        if done < n:
            num = self._num[done:n]
            small = (num >= 0) & (num < LUT_SPAN) & (num == np.floor(num))  # NaN: no
            part = np.where(small, num, -1).astype(np.intp)
            index = np.concatenate([index, part]) if done else part
            top = max(top, int(part.max(initial=-1)))
            _keep_longest(self._kept, "ints", n, (index, top))
        return index[:n], top

    def count(self, leaf: Leaf) -> int | None:
        """How many rows match ``leaf`` where the column's value counts say it without a
        pass over the rows: an ``$in`` or ``eq`` over ids in ``[0, LUT_SPAN)`` on a column of
        scalars (``None`` for anything else, or a column holding lists)."""
        wanted = self._ids_of(leaf)
        if wanted is None:
            return None
        counts = self._counts()
        if wanted.max() >= len(counts):
            wanted = wanted[wanted < len(counts)]
        table = np.zeros(len(counts), dtype=bool)  # (an id listed twice counts once)
        table[wanted] = True
        return int(counts[table].sum())

    def rows_of(self, leaf: Leaf) -> npt.NDArray[np.intp] | None:
        """The rows matching ``leaf``, ascending, read from the rows kept by value
        (:meth:`_postings`) where :meth:`count` counts it (``None`` elsewhere): it costs what
        the rows matched and the ids listed cost, not a pass over every row (a tenant's or a
        few clusters' rows)."""
        wanted = self._ids_of(leaf)
        if wanted is None:
            return None
        index, top = self._small_ints()
        n = len(index)
        done, (order, starts) = self._postings()
        known = wanted[wanted < len(starts) - 1]
        if len(known) > 1:
            known = np.unique(known)
        first, sizes = starts[known], starts[known + 1] - starts[known]
        at = np.repeat(first - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
        rows = np.sort(order[at])
        if done > n:  # kept by a copy with more rows
            return rows[:np.searchsorted(rows, n)]
        if done < n:  # the rows made since: one lookup each
            tail = _isin_numbers(self._num[done:n], wanted, lambda: (index[done:], top))  # type: ignore[arg-type]
            rows = np.concatenate([rows, np.flatnonzero(tail) + done])
        return rows

    def _ids_of(self, leaf: Leaf) -> npt.NDArray[np.int64] | None:
        """The ids an ``$in`` or ``eq`` leaf lists, where they are ints in ``[0, LUT_SPAN)``
        and the column holds scalars only (where :meth:`count` and :meth:`rows_of` answer);
        else ``None`` (an id outside that span may match rows no small int marks)."""
        if leaf.path != self.path or self._el_n or self._raw_rows:
            return None
        if isinstance(leaf, In):
            wanted = leaf.ids
            if wanted is None:
                if set(map(type, leaf.values)) != _INT:
                    return None
                wanted = np.asarray(leaf.values, dtype=np.int64)
        elif isinstance(leaf, Compare) and leaf.op == "eq" and type(leaf.value) is int:
            wanted = np.array([leaf.value], dtype=np.int64)
        else:
            return None
        return wanted if wanted.min() >= 0 and wanted.max() < LUT_SPAN else None

    def _counts(self) -> npt.NDArray[np.int64]:
        """Rows per small int (see :meth:`_small_ints`) among this copy's rows: the counts
        kept for the most rows, plus (or less) those of the rows between."""
        index, _ = self._small_ints()
        n = len(index)
        mine = self._hist
        if mine is not None and mine[0] == n:
            return mine[1]
        done, counts = self._kept.get("hist", (0, np.zeros(0, dtype=np.int64)))
        whole = self._kept["ints"][1][0] if done > n else index  # (covers `done` rows)
        between = whole[min(done, n):max(done, n)]
        part = np.bincount(between[between >= 0])
        out = np.zeros(max(len(part), len(counts)), dtype=np.int64)
        out[:len(counts)] += counts
        out[:len(part)] += part if done <= n else -part
        if done < n:
            _keep_longest(self._kept, "hist", n, out)
        self._hist = (n, out)
        return out

    def _postings(self) -> tuple[int, tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
        """The rows by small int: ``(done, (order, starts))``, where value ``v``'s rows among
        the first ``done`` are ``order[starts[v]:starts[v + 1]]``, ascending. Kept for the
        most rows any copy made it for; made again (one sort) once the rows made since pass
        an eighth of those it holds."""
        index, top = self._small_ints()
        n = len(index)
        kept = self._kept.get("postings")
        if kept is None or n - kept[0] > kept[0] // 8:
            valid = np.flatnonzero(index >= 0)
            order = valid[np.argsort(index[valid], kind="stable")]
            starts = np.zeros(top + 2, dtype=np.intp)
            np.cumsum(np.bincount(index[valid], minlength=top + 1), out=starts[1:])
            kept = (n, (order, starts))
            _keep_longest(self._kept, "postings", n, kept[1])
        return kept

    def _some_ints(self, rows: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], int]:
        """:meth:`_small_ints` at ``rows``."""
        index, top = self._small_ints()
        return index[rows], top

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

    def _intern_all(self, values: list[Any], kinds: list[int]) -> list[int]:
        intern = self._intern
        return [intern(v) if k == K_STRING else -1 for v, k in zip(values, kinds, strict=True)]

    def _reserve(self, size: int) -> None:
        capacity = len(self._kind)
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity)
        self._kind = _grown(self._kind, capacity, 0)
        self._num = _grown(self._num, capacity, np.nan)
        self._code = _grown(self._code, capacity, -1)
        self._raw = _grown(self._raw, capacity, None)

    def _reserve_elements(self, size: int) -> None:
        capacity = len(self._el_kind)
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity)
        self._el_row = _grown(self._el_row, capacity, 0)
        self._el_kind = _grown(self._el_kind, capacity, 0)
        self._el_num = _grown(self._el_num, capacity, np.nan)
        self._el_code = _grown(self._el_code, capacity, -1)


_INT = {int}
FEW_SHARE = 32  # an id list matching at most 1/FEW_SHARE of the rows: its rows read by value
# (58,026 rows: 586 read in 0.022 ms, a lookup a row 0.037 ms; even at 2,500)
LUT_SPAN = 1 << 20  # $in over integers spanning at most this many values: a lookup table


def _isin_numbers(num: Floats, nums: Sequence[float],
                  ints: Callable[[], tuple[Indices, int]] | None = None) -> Bools:
    """``np.isin(num, nums)``; where every wanted value is an integer and they span at most
    :data:`LUT_SPAN`, by a table lookup per row (a cluster or tenant list of 500 ids over
    58,026 rows: 0.2 ms, where ``np.isin`` sorts both sides in 1.6 ms; the filters layer
    imports no kernels, so it stays numpy). With ``ints`` (``num`` as small ints, see
    ``Column._small_ints``) and ids in ``[0, LUT_SPAN)``, the lookup is one gather: 0.03 ms.
    NaN (a missing or non-numeric value), infinities and fractions never match an integer."""
    wanted = np.asarray(nums)
    whole = wanted.dtype.kind == "i" or (wanted.dtype.kind == "f"
                                         and np.array_equal(wanted, np.floor(wanted)))
    lo, hi = wanted.min(), wanted.max()
    if ints is not None and whole and lo >= 0 and hi < LUT_SPAN:
        index, top = ints()
        table = np.zeros(max(int(hi), top) + 2, dtype=bool)  # the last slot (-1): False
        table[wanted.astype(np.intp)] = True
        return table[index]
    wanted = np.unique(wanted.astype(np.float64))
    lo, hi = float(wanted[0]), float(wanted[-1])
    span = hi - lo
    if span > LUT_SPAN or not np.array_equal(wanted, np.floor(wanted)):
        return np.isin(num, wanted)
    table = np.zeros(int(span) + 1, dtype=bool)
    table[(wanted - lo).astype(np.int64)] = True
    offset = num - lo
    inside = (offset >= 0) & (offset < len(table)) & (offset == np.floor(offset))  # NaN: no
    padded = np.append(table, False)  # the extra last slot: rows out of range
    return padded[np.where(inside, offset, len(table)).astype(np.int64)]


def _keep_longest(kept: dict[str, Any], key: str, rows: int, value: Any) -> None:
    """Keep ``value``, worked out for the first ``rows`` rows, as ``kept[key]`` unless what
    is kept there covers more (copies of several lengths share ``kept``)."""
    old = kept.get(key)
    if old is None or old[0] < rows:
        kept[key] = (rows, value)


def _grown(buffer: npt.NDArray[Any], capacity: int, fill: Any) -> npt.NDArray[Any]:
    out = np.full(capacity, fill, dtype=buffer.dtype)
    out[: len(buffer)] = buffer
    return out


def _numbers(values: list[Any], kinds: list[int]) -> list[float]:
    nan = np.nan  # below, + 0.0 turns -0.0 into 0.0
    return [float(v) + 0.0 if k == K_NUMBER else nan for v, k in zip(values, kinds, strict=True)]


def _is_atom(value: object) -> bool:
    return value is None or isinstance(value, bool)


def _kind_of(value: object) -> int:
    kind = _KIND_OF_TYPE.get(type(value))  # the common JSON types, exactly
    if kind is not None:
        return kind
    if value is MISSING:
        return K_MISSING
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
    if isinstance(value, list):
        return K_LIST
    return K_SLOW  # anything that is not JSON: the reference decides, row by row


_KIND_OF_TYPE: dict[type, int] = {
    type(None): K_NULL,
    float: K_NUMBER,
    str: K_STRING,
    dict: K_DICT,
    list: K_LIST,
}
