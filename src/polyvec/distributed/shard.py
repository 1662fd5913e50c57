"""One replica of one shard: an ordinary polyvec collection in a folder on its node's disk.

:class:`ShardReplica` is a plain class; :func:`replica_class` makes it a Ray actor class
(threaded, so searches run beside a write). Everything it returns is picklable (numpy
arrays, :class:`~polyvec.SearchResult`, :class:`~polyvec.collection.Item`).
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Sequence
from typing import Any

from ..db import connect
from ..spec import CollectionSchema
from ..types import SearchResult

__all__ = ["ShardReplica", "replica_class"]


class ShardReplica:
    """Opens (or creates, from ``schema``) collection ``name`` in the database folder
    ``folder``."""

    def __init__(self, folder: str, name: str, schema: dict[str, Any], segment_rows: int) -> None:
        self.folder = folder
        self.db = connect(folder, create=True)
        if name in self.db.list_collections():
            self.coll = self.db.get_collection(name)
        else:
            s = CollectionSchema.from_dict(schema)
            self.coll = self.db.create_collection(name, dict(s.vectors), indexed=s.indexed,
                                                  segment_rows=segment_rows)

    def node(self) -> str:
        """The Ray node this replica runs on."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def write(self, ids: list[Any], vectors: dict[str, Any], payloads: list[Any] | None,
              replace: bool) -> int:
        (self.coll.upsert if replace else self.coll.add)(ids, vectors, payloads)
        return len(ids)

    def add_absent(self, ids: list[Any], vectors: dict[str, Any], payloads: list[Any]) -> int:
        """Insert the items whose ids this replica does not hold (a move that must not undo
        a newer write); how many were inserted."""
        keep = [i for i, item in enumerate(self.coll.get(ids)) if item is None]
        if keep:
            self.coll._restore([ids[i] for i in keep],
                               {f: take(v, keep) for f, v in vectors.items()},
                               [payloads[i] for i in keep])
        return len(keep)

    def delete(self, ids: list[Any]) -> int:
        return self.coll.delete(ids)

    def get(self, ids: list[Any]) -> list[Any]:
        return self.coll.get(ids)

    def export(self, ids: list[Any]) -> tuple[list[Any], dict[str, Any], list[Any]]:
        """The items of ``ids`` this replica holds, as :meth:`add_absent` takes them back
        (their vectors in their stored form)."""
        items = [it for it in self.coll.get(ids) if it is not None]
        fields = dict(self.coll.schema.vectors)
        vectors = {f: _stack(spec, [it.vectors[f] for it in items]) for f, spec in fields.items()}
        return [it.id for it in items], vectors, [it.payload for it in items]

    def ids(self) -> list[Any]:
        return self.coll.find()

    def find(self, filter: Any) -> list[Any]:
        return self.coll.find(filter)

    def count(self) -> int:
        return len(self.coll)

    def search(self, query: Any, k: int, knobs: dict[str, Any]) -> SearchResult:
        return self.coll.search(query, k, **knobs)

    def statistics(self, query: Any, field: str | None) -> dict[str, Any]:
        return self.coll._statistics(query, field)

    def search_as(self, query: Any, k: int, stats: dict[str, Any], field: str | None,
                  filter: Any) -> SearchResult:
        return self.coll._search_as(query, k, stats, field=field, filter=filter)

    def create_index(self, field: str, spec: Any, knobs: dict[str, Any]) -> None:
        self.coll.create_index(field, spec, **knobs)

    def flush(self) -> None:
        self.coll.flush()

    def info(self) -> dict[str, Any]:
        return self.coll.info()

    def close(self, remove: bool = False) -> None:
        self.db.close()
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)


def take(values: Any, rows: Sequence[int]) -> Any:
    """Rows ``rows`` of a field's input: an array's or a sparse matrix's rows, or a list's
    items."""
    if hasattr(values, "tocsr"):  # a scipy sparse matrix
        return values.tocsr()[list(rows)]
    if hasattr(values, "take") and getattr(values, "ndim", 0) >= 1:
        return values.take(list(rows), axis=0)
    return [values[i] for i in rows]


def _stack(spec: Any, rows: list[Any]) -> Any:
    import numpy as np

    from ..spec import Dense

    if isinstance(spec, Dense):
        return np.stack(rows) if rows else np.zeros((0, spec.dim), dtype=np.float32)
    return rows


@functools.cache
def replica_class() -> Any:
    """:class:`ShardReplica` as a Ray actor class (Ray is imported here, on first use)."""
    import ray

    return ray.remote(ShardReplica)
