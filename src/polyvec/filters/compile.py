"""Compile a filter into a boolean row mask, mixing indexed columns and SQLite.

Leaves on an indexed path are evaluated on their :class:`~polyvec.filters.Column`; every
maximal part of the tree that reads no indexed path goes, whole, to the caller's
``sql_mask`` (which runs :func:`~polyvec.filters.to_sql` against SQLite). The non-indexed
children of one ``And``/``Or`` are bundled into a single ``And``/``Or`` so that they cost one
query, and that query is skipped when the indexed children already decide the result.

Examples
--------
>>> import numpy as np
>>> from polyvec.filters.columns import Column
>>> from polyvec.filters.parse import parse_filter
>>> rows = [{"year": 1999, "lang": "en"}, {"year": 2005, "lang": "fr"}]
>>> year = Column(("year",))
>>> year.extend(rows)
>>> asked = []
>>> def sql_mask(node):  # stands in for a query on SQLite
...     asked.append(node)
...     return np.array([r.get("lang") == "fr" for r in rows])
>>> node = parse_filter({"year": {"$gt": 2000}, "lang": "fr"})
>>> compile_filter(node, n=2, columns={("year",): year}, sql_mask=sql_mask).tolist()
[False, True]
>>> asked
[Compare(path=('lang',), op='eq', value='fr')]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from .ast import And, Compare, Exists, In, MatchAll, Node, Not, Or, Path, leaf_paths
from .columns import Column

__all__ = ["compile_filter", "count_bound", "rows_by_value"]

Mask = npt.NDArray[np.bool_]


def compile_filter(
    node: Node,
    *,
    n: int,
    columns: Mapping[Path, Column],
    sql_mask: Callable[[Node], npt.ArrayLike],
    rows: npt.NDArray[np.intp] | None = None,
) -> Mask:
    """Return the boolean mask of the row positions that match ``node`` (of the positions
    ``rows`` only, where given).

    Parameters
    ----------
    node : Node
        A tree from :func:`polyvec.filters.parse_filter`.
    n : int
        Number of row positions.
    columns : mapping of path to Column
        The indexed paths; each column must hold ``n`` rows.
    sql_mask : callable
        ``sql_mask(subtree)`` returns a boolean array of shape ``(n,)`` for a subtree that
        reads no indexed path.
    rows : numpy.ndarray of int, optional
        Row positions in ``[0, n)``: the mask is of these rows, in that order (the
        candidates of a search, checked after it: a loose filter is never compiled whole).

    Returns
    -------
    numpy.ndarray of bool, shape (n,) or (len(rows),)

    Raises
    ------
    ValueError
        If ``n`` is negative, a column does not hold ``n`` rows, or ``sql_mask`` returns an
        array of the wrong shape.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if rows is not None and len(rows) and not 0 <= rows.min() <= rows.max() < n:
        raise ValueError(f"rows must lie in [0, {n}), got {rows.min()}..{rows.max()}")
    return _Compiler(n, columns, sql_mask, rows).mask(node)


def count_bound(node: Node, columns: Mapping[Path, Column]) -> int | None:
    """An upper bound on the rows ``node`` matches, from the columns' value counts alone
    (:meth:`Column.count`): a counted leaf, or the least of an ``$and``'s counted children;
    ``None`` where nothing is counted (then only a pass over the rows tells)."""
    if isinstance(node, (Compare, In)):
        column = columns.get(node.path)
        return None if column is None else column.count(node)
    if isinstance(node, And):
        counts = [c for c in (count_bound(child, columns) for child in node.children)
                  if c is not None]
        return min(counts) if counts else None
    return None


def rows_by_value(node: Node, columns: Mapping[Path, Column], *, n: int,
                  sql_mask: Callable[[Node], npt.ArrayLike]) -> npt.NDArray[np.intp] | None:
    """The rows ``node`` matches, ascending, without a pass over every row, where a column
    reads them by value (:meth:`Column.rows_of`): ``node`` is an id list, or an ``$and`` of
    one or more (the least counted read, the other children evaluated on those rows only,
    as :func:`compile_filter` with ``rows``); ``None`` elsewhere."""
    if isinstance(node, (Compare, In)):
        column = columns.get(node.path)
        return None if column is None or len(column) != n else column.rows_of(node)
    if not isinstance(node, And):
        return None
    counts = [(count_bound(child, columns), i) for i, child in enumerate(node.children)
              if isinstance(child, (Compare, In))]
    counted = [(count, i) for count, i in counts if count is not None]
    if not counted:
        return None
    i = min(counted)[1]
    rows = rows_by_value(node.children[i], columns, n=n, sql_mask=sql_mask)
    if rows is None:
        return None
    rest = node.children[:i] + node.children[i + 1:]
    sub = rest[0] if len(rest) == 1 else And(rest)
    return rows[compile_filter(sub, n=n, columns=columns, sql_mask=sql_mask, rows=rows)]


class _Compiler:
    def __init__(
        self, n: int, columns: Mapping[Path, Column], sql_mask: Callable[[Node], npt.ArrayLike],
        rows: npt.NDArray[np.intp] | None = None,
    ) -> None:
        self.n = n
        self.columns = columns
        self.sql_mask = sql_mask
        self.rows = rows
        self.size = n if rows is None else len(rows)  # the length of every mask made

    def indexed(self, node: Node) -> bool:
        return any(path in self.columns for path in leaf_paths(node))

    def mask(self, node: Node) -> Mask:
        if isinstance(node, MatchAll):
            return np.ones(self.size, dtype=bool)
        if not self.indexed(node):
            return self.sql(node)
        if isinstance(node, (Compare, In, Exists)):
            return self.leaf(node)
        if isinstance(node, Not):
            return ~self.mask(node.child)
        if isinstance(node, (And, Or)):
            return self.junction(node)
        raise TypeError(f"expected a filter Node, got {type(node).__name__}")

    def junction(self, node: And | Or) -> Mask:
        is_and = isinstance(node, And)
        result = np.full(self.size, is_and, dtype=bool)
        rest = []
        for child in node.children:
            if not self.indexed(child):
                rest.append(child)
                continue
            result = result & self.mask(child) if is_and else result | self.mask(child)
            if (is_and and not result.any()) or (not is_and and result.all()):
                return result  # decided: all False under And, all True under Or
        if rest:
            sub = rest[0] if len(rest) == 1 else type(node)(tuple(rest))
            result = result & self.sql(sub) if is_and else result | self.sql(sub)
        return result

    def leaf(self, leaf: Compare | In | Exists) -> Mask:
        column = self.columns[leaf.path]
        if len(column) != self.n:
            raise ValueError(f"column {leaf.path!r} holds {len(column)} rows, expected {self.n}")
        return column.evaluate(leaf, self.rows)

    def sql(self, node: Node) -> Mask:
        """``sql_mask`` of a subtree, cut into pieces of at most :data:`SQL_CHUNK` operands
        when it is large: SQLite refuses expressions deeper than 1,000 and statements with
        more than 32,766 parameters (a 5,000-branch ``$or`` was one). With ``rows``, the
        whole mask is read and those rows taken."""
        if self.rows is not None:
            whole = _Compiler(self.n, self.columns, self.sql_mask)
            return whole.sql(node)[self.rows]
        big = isinstance(node, (And, Or, Not)) and _size(node) > SQL_CHUNK
        if big and isinstance(node, Not):
            return ~self.sql(node.child)
        if big and isinstance(node, (And, Or)):
            is_and = isinstance(node, And)
            result = np.full(self.n, is_and, dtype=bool)
            piece: list[Node] = []
            weight = 0
            for child in (*node.children, None):
                w = 0 if child is None else _size(child)
                if piece and (child is None or weight + w > SQL_CHUNK):
                    sub = piece[0] if len(piece) == 1 else type(node)(tuple(piece))
                    result = result & self.sql(sub) if is_and else result | self.sql(sub)
                    piece, weight = [], 0
                if child is not None:
                    piece.append(child)
                    weight += w
            return result
        if isinstance(node, In) and len(node.values) > SQL_CHUNK:
            result = np.zeros(self.n, dtype=bool)
            for i in range(0, len(node.values), SQL_CHUNK):
                result |= self.sql(In(node.path, node.values[i:i + SQL_CHUNK]))
            return result
        mask = np.asarray(self.sql_mask(node), dtype=bool)
        if mask.shape != (self.n,):
            raise ValueError(f"sql_mask must return shape ({self.n},), got {mask.shape}")
        return mask


SQL_CHUNK = 256
"""At most this many operands (leaves, and values of an ``$in``) go to SQLite in one query."""


def _size(node: Node) -> int:
    """Operands of a subtree: its leaves, an ``$in`` counting one per value."""
    total, stack = 0, [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (And, Or)):
            stack.extend(n.children)
        elif isinstance(n, Not):
            stack.append(n.child)
        else:
            total += len(n.values) if isinstance(n, In) else 1
    return total
