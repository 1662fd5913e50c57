"""A LlamaIndex vector store over a polyvec collection (extra ``[llamaindex]``).

A node is an item: its node id, one dense vector field and the payload LlamaIndex's own
``node_to_metadata_dict`` makes (the node's metadata at the top, where filters read it; the
node itself as JSON, its text included; ``ref_doc_id``) plus ``_node_id``. The folder is the
store: nodes survive reopening, and several processes may share it.

>>> store = PolyvecVectorStore(path="./db")  # doctest: +SKIP
>>> index = VectorStoreIndex.from_documents(  # doctest: +SKIP
...     docs, storage_context=StorageContext.from_defaults(vector_store=store),
...     embed_model=PolyvecEmbedding(polyvec.embed.minilm()))
>>> index.as_retriever(similarity_top_k=3).retrieve("how do I ...")  # doctest: +SKIP

Metadata filters map onto polyvec's filter language: ``==``, ``!=``, ``>``, ``>=``, ``<``,
``<=``, ``in``, ``nin`` and ``is_empty``, combined by ``and``, ``or`` and ``not``. The
operators polyvec's filters lack (``any``, ``all``, ``contains``, ``text_match``: substring
tests on strings) raise :class:`~polyvec.errors.InvalidArgument` naming them. ``is_empty``
matches a missing key, ``null`` and ``""`` (not ``[]``, which a filter cannot name).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgument, MissingExtra
from ._target import Target

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.schema import BaseNode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise MissingExtra("polyvec.integrations.llamaindex needs llama-index-core: "
                       "pip install 'polyvec[llamaindex]'") from e

__all__ = ["PolyvecEmbedding", "PolyvecVectorStore", "to_polyvec_filter"]

NODE_ID = "_node_id"  # the payload key of a node's id (filters cannot read item ids)
_OPS = {FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt",
        FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte",
        FilterOperator.IN: "$in", FilterOperator.NIN: "$nin"}


def to_polyvec_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` as a polyvec filter over the node's metadata."""
    if filters is None or not filters.filters:
        return None
    parts: list[dict[str, Any]] = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            sub = to_polyvec_filter(f)
            if sub is not None:
                parts.append(sub)
        elif f.operator == FilterOperator.IS_EMPTY:
            parts.append({"$or": [{f.key: {"$exists": False}}, {f.key: None}, {f.key: ""}]})
        elif f.operator in _OPS:
            parts.append({f.key: {_OPS[f.operator]: f.value}})
        else:
            raise InvalidArgument(
                f"filter on {f.key!r}: operator {f.operator.value!r} has no polyvec "
                f"equivalent (supported: {sorted(op.value for op in _OPS)} and 'is_empty')")
    if not parts:
        return None
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.OR:
        return {"$or": parts}
    joined = parts[0] if len(parts) == 1 else {"$and": parts}
    return {"$not": joined} if condition == FilterCondition.NOT else joined


def _and(*filters: dict[str, Any] | None) -> dict[str, Any] | None:
    given = [f for f in filters if f]
    return None if not given else given[0] if len(given) == 1 else {"$and": given}


class PolyvecEmbedding(BaseEmbedding):
    """A polyvec embedder (``polyvec.embed.minilm()``, ...) as a LlamaIndex embed model."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Any, **kwargs: Any) -> None:
        super().__init__(model_name=getattr(getattr(embedder, "spec", None), "name", "polyvec"),
                         **kwargs)
        self._embedder = embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return np.asarray(self._embedder.embed_queries([query])[0]).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return np.asarray(self._embedder.embed_documents(list(texts))).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class PolyvecVectorStore(BasePydanticVectorStore):
    """Nodes in the polyvec collection ``collection_name`` of the database folder ``path``
    (made on the first add, with a ``Dense`` field ``field`` of the first embeddings'
    dimension and ``metric``); or in ``collection``, an open collection (a
    :class:`~polyvec.Collection`, or one of a :class:`~polyvec.client.Client`)."""

    stores_text: bool = True
    flat_metadata: bool = False

    _target: Target = PrivateAttr()

    def __init__(self, *, path: str | os.PathLike[str] | None = None,
                 collection_name: str = "llamaindex", collection: Any = None,
                 field: str = "vector", metric: str = "cosine") -> None:
        super().__init__(stores_text=True)
        self._target = Target(path, collection, collection_name, field, metric,
                              "PolyvecVectorStore")

    @property
    def client(self) -> Any:
        """The polyvec collection (``None`` until the first add made it)."""
        return self._target.coll

    @property
    def _coll(self) -> Any:
        return self._target.coll

    @property
    def _field(self) -> str:
        return self._target.field

    def close(self) -> None:
        """Close the database this store opened (not a collection it was given)."""
        self._target.close()

    # -- writing --------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Store ``nodes`` with their embeddings; a node whose id the collection holds is
        replaced."""
        if not nodes:
            return []
        missing = [n.node_id for n in nodes if n.embedding is None]
        if missing:
            raise InvalidArgument(f"nodes without an embedding: {missing[:5]} (embed them "
                                  "first, e.g. through a VectorStoreIndex's embed_model)")
        ids = [n.node_id for n in nodes]
        vectors = np.asarray([n.get_embedding() for n in nodes], dtype=np.float32)
        payloads = [{**node_to_metadata_dict(n, remove_text=False,
                                             flat_metadata=self.flat_metadata),
                     NODE_ID: n.node_id} for n in nodes]
        self._target.made(vectors.shape[1]).upsert(ids, {self._field: vectors}, payloads)
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        if self._coll is not None:
            self._coll.delete(self._coll.find({"ref_doc_id": ref_doc_id}))

    def delete_nodes(self, node_ids: list[str] | None = None,
                     filters: MetadataFilters | None = None, **delete_kwargs: Any) -> None:
        """Delete the nodes ``node_ids`` that match ``filters`` (all of either when
        ``None``)."""
        if self._coll is not None:
            self._coll.delete(self._ids(node_ids, filters))

    def clear(self) -> None:
        """Delete every node."""
        self.delete_nodes()

    # -- reading --------------------------------------------------------------------------------
    def get_nodes(self, node_ids: list[str] | None = None,
                  filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The nodes ``node_ids`` that match ``filters`` (all of either when ``None``; none
        for an empty ``node_ids``), in insertion order."""
        if self._coll is None:
            return []
        return [metadata_dict_to_node(it.payload)
                for it in self._coll.get(self._ids(node_ids, filters)) if it is not None]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nearest nodes to ``query.query_embedding`` among those
        matching its filters, ``doc_ids`` and ``node_ids`` (when not empty); similarities
        are polyvec's scores (cosine or dot similarity, or minus the squared L2 distance)."""
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise InvalidArgument(f"query mode {query.mode.value!r}: only 'default' (dense "
                                  "vector search) is supported")
        if query.query_embedding is None:
            raise InvalidArgument("query: expected a query_embedding")
        if self._coll is None:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        # (an empty doc_ids or node_ids restricts nothing: a VectorStoreIndex over a store
        # that keeps the text passes its empty node list)
        flt = _and(to_polyvec_filter(query.filters),
                   {"ref_doc_id": {"$in": query.doc_ids}} if query.doc_ids else None,
                   {NODE_ID: {"$in": query.node_ids}} if query.node_ids else None)
        kept = self._target.search(query.query_embedding, query.similarity_top_k, flt)
        return VectorStoreQueryResult(nodes=[metadata_dict_to_node(it.payload) for it, _ in kept],
                                      similarities=[s for _, s in kept],
                                      ids=[str(it.id) for it, _ in kept])

    def _ids(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[Any]:
        if node_ids is not None and not node_ids:
            return []
        flt = _and(to_polyvec_filter(filters),
                   None if node_ids is None else {NODE_ID: {"$in": list(node_ids)}})
        return list(self._coll.find(flt))
