"""Where a framework store keeps its items: one collection, in a folder or given open."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import InvalidArgument


class Target:
    """The collection ``name`` of the database folder ``path`` (``coll`` is ``None`` until
    :meth:`made` makes it, with a ``Dense`` field ``field`` of ``metric`` and the payload
    paths ``indexed``), or ``collection``, an open one (a :class:`~polyvec.Collection`, or a
    :class:`~polyvec.client.Client`'s); ``metric`` is then the field's own."""

    def __init__(self, path: str | os.PathLike[str] | None, collection: Any, name: str,
                 field: str, metric: str, store: str, indexed: tuple[str, ...] = ()) -> None:
        if (path is None) == (collection is None):
            raise InvalidArgument(f"{store}: expected a database folder (path=) or an open "
                                  "collection (collection=), exactly one")
        self.name, self.field, self.metric, self.indexed = name, field, metric, indexed
        self.db: Any = None
        self.coll: Any = collection
        if path is not None:
            import polyvec

            self.db = polyvec.connect(path)
            if name in self.db.list_collections():
                self.coll = self.db.get_collection(name)
        if self.coll is not None:
            spec = dict(self.coll.schema.vectors).get(field)
            if spec is None:
                raise InvalidArgument(f"collection {name!r} has no vector field {field!r} "
                                      "(pass field=...)")
            self.metric = spec.metric

    def made(self, dim: int) -> Any:
        """The collection, made for vectors of ``dim`` on the first write."""
        if self.coll is None:
            import polyvec

            self.coll = self.db.create_collection(
                self.name, {self.field: polyvec.Dense(dim, metric=self.metric)},
                indexed=list(self.indexed), exist_ok=True)
        return self.coll

    def search(self, vector: Any, k: int, filter: dict[str, Any] | None
               ) -> list[tuple[Any, float]]:
        """The items nearest to ``vector`` among those ``filter`` keeps, with their scores,
        best first (empty slots, and an item deleted since the search, left out)."""
        if self.coll is None:
            return []
        res = self.coll.search(np.asarray(vector, dtype=np.float32), k, field=self.field,
                               filter=filter)
        hits = [(i, float(s)) for i, s in zip(res.ids, res.scores, strict=True)
                if i is not None]
        items = self.coll.get([i for i, _ in hits])
        return [(it, s) for it, (_, s) in zip(items, hits, strict=True) if it is not None]

    def close(self) -> None:
        """Close the database opened here (not a collection given open)."""
        if self.db is not None:
            self.db.close()
