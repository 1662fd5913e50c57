"""Typed syntax tree of a payload filter.

Every node is a frozen dataclass. The parser (:func:`polyvec.filters.parse_filter`) is the
validation boundary: it only builds nodes whose paths and operands obey the filter contract,
so the evaluators trust what they are given.

Examples
--------
>>> node = And((Compare(("year",), "gte", 2000), Not(Exists(("draft",)))))
>>> sorted(node.paths())
[('draft',), ('year',)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "Path",
    "Scalar",
    "CompareOp",
    "Node",
    "MatchAll",
    "And",
    "Or",
    "Not",
    "Compare",
    "In",
    "Exists",
    "Leaf",
    "leaf_paths",
]

Path: TypeAlias = tuple[str, ...]
"""A payload path: the keys walked from the payload root, e.g. ``("meta", "author")``."""

Scalar: TypeAlias = str | int | float | bool | None
"""An operand value: a JSON scalar (numbers finite, ints within +-2**53)."""

CompareOp: TypeAlias = Literal["eq", "gt", "gte", "lt", "lte"]


@dataclass(frozen=True)
class Node:
    """Base class of every filter node."""

    def paths(self) -> set[Path]:
        """Return every payload path used by a leaf under this node.

        Returns
        -------
        set of tuple of str
            The leaf paths; empty for :class:`MatchAll`.
        """
        return leaf_paths(self)


@dataclass(frozen=True)
class MatchAll(Node):
    """Matches every item (the filter ``None`` or ``{}``)."""


@dataclass(frozen=True)
class And(Node):
    """Matches when every child matches."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    """Matches when at least one child matches."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    """Plain boolean negation of ``child`` (a missing field makes ``$ne`` true)."""

    child: Node


@dataclass(frozen=True)
class Compare(Node):
    """Compare the value at ``path`` with ``value``.

    ``eq`` takes any scalar; ``gt``/``gte``/``lt``/``lte`` take a number (not bool) or a str.
    Note that dataclass equality treats ``1``, ``1.0`` and ``True`` operands as equal nodes.
    """

    path: Path
    op: CompareOp
    value: Scalar


@dataclass(frozen=True)
class In(Node):
    """Matches when the value at ``path`` equals one of ``values`` (``$in``). ``ids``: the
    values as an int64 array where every one is an int (a list of ids, as the parser found
    it), so that the evaluators need not look at them one by one again; it takes no part in
    equality or ``repr``."""

    path: Path
    values: tuple[Scalar, ...]
    ids: npt.NDArray[np.int64] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Exists(Node):
    """Matches when ``path`` resolves, whatever the value (JSON null included)."""

    path: Path


Leaf: TypeAlias = Compare | In | Exists
"""The nodes that read a payload path."""


def leaf_paths(node: Node) -> set[Path]:
    """Return every payload path used by a leaf under ``node``.

    Parameters
    ----------
    node : Node
        Root of the (sub)tree.

    Returns
    -------
    set of tuple of str
        The distinct leaf paths.

    Examples
    --------
    >>> leaf_paths(Or((Exists(("a", "b")), In(("c",), (1, 2)))))  == {("a", "b"), ("c",)}
    True
    """
    found: set[Path] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (Compare, In, Exists)):
            found.add(item.path)
        elif isinstance(item, (And, Or)):
            stack.extend(item.children)
        elif isinstance(item, Not):
            stack.append(item.child)
    return found
