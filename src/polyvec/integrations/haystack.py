"""A Haystack document store and embedding retriever over a polyvec collection (extra
``[haystack]``).

A document is an item: its id, one dense vector field and a payload ``{"id", "content",
"meta"}`` (plus ``blob`` and ``sparse_embedding`` when the document has them). The folder is
the store: documents survive reopening, and several processes may share it.

>>> store = PolyvecDocumentStore(path="./db", embedding_dim=384)  # doctest: +SKIP
>>> store.write_documents(docs_with_embeddings)  # doctest: +SKIP
>>> retriever = PolyvecEmbeddingRetriever(document_store=store, top_k=3)  # doctest: +SKIP
>>> retriever.run(query_embedding=embedder.embed_queries(["how do I ..."])[0].tolist())
... # doctest: +SKIP

Haystack's filters map onto polyvec's: ``field`` is ``id``, ``content`` or ``meta.<path>``
(a bare name is read as ``meta.<name>``, as Haystack reads it). ``==``/``!=`` with ``None``
match a missing or null value (or exclude it); ``>``, ``>=``, ``<``, ``<=`` compare numbers,
or ISO 8601 date strings (as strings: keep one format and timezone), match nothing against
``None`` and raise :class:`haystack.errors.FilterError` for any other string or a list;
``in``/``not in`` take a list.

A document without an embedding is stored too (polyvec items carry a vector in every field,
so it gets a placeholder one and a ``_no_embedding`` mark): it is counted, filtered and
returned, never retrieved by embedding.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DimensionMismatch, DuplicateId, InvalidArgument, MissingExtra
from ..errors import FilterError as PolyvecFilterError
from ._target import Target

try:
    from haystack import component, default_from_dict, default_to_dict
    from haystack.dataclasses import ByteStream, Document, SparseEmbedding
    from haystack.document_stores.errors import DuplicateDocumentError
    from haystack.document_stores.types import DuplicatePolicy, FilterPolicy, apply_filter_policy
    from haystack.errors import FilterError
    from haystack.utils import expit
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise MissingExtra("polyvec.integrations.haystack needs haystack-ai: "
                       "pip install 'polyvec[haystack]'") from e

__all__ = ["PolyvecDocumentStore", "PolyvecEmbeddingRetriever", "to_polyvec_filter"]

NO_EMBEDDING = "_no_embedding"  # the payload mark of a document stored without an embedding
_SIMILARITY = {"dot_product": "dot", "cosine": "cosine"}
_COMPARE = {"==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte",
            "in": "$in", "not in": "$nin"}
_NOTHING: dict[str, Any] = {"$not": {}}  # the filter no item matches


def to_polyvec_filter(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Haystack filters (``{"field", "operator", "value"}`` comparisons under ``AND``,
    ``OR`` and ``NOT`` of ``conditions``) as a polyvec filter over the payload; a malformed
    filter raises :class:`haystack.errors.FilterError`."""
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise FilterError(f"filters: expected a dict, got {type(filters).__name__}")
    return _node(filters)


def _node(f: Any) -> dict[str, Any]:
    if not isinstance(f, dict):
        raise FilterError(f"filter condition: expected a dict, got {type(f).__name__} {f!r}")
    if "field" in f:
        return _comparison(f)
    for key in ("operator", "conditions"):
        if key not in f:
            raise FilterError(f"{key!r} key missing in {f}")
    op, conditions = f["operator"], f["conditions"]
    if op not in ("AND", "OR", "NOT"):
        raise FilterError(f"unknown logical operator {op!r}: expected AND, OR or NOT")
    if not isinstance(conditions, list):
        raise FilterError(f"'conditions': expected a list, got {type(conditions).__name__}")
    parts = [_node(c) for c in conditions]
    if op == "OR":
        return {"$or": parts} if parts else _NOTHING
    joined = {"$and": parts} if len(parts) > 1 else parts[0] if parts else {}
    return {"$not": joined} if op == "NOT" else joined


def _comparison(f: dict[str, Any]) -> dict[str, Any]:
    for key in ("operator", "value"):
        if key not in f:
            raise FilterError(f"{key!r} key missing in {f}")
    path, op, value = _path(f["field"]), f["operator"], f["value"]
    if op not in _COMPARE:
        raise FilterError(f"unknown comparison operator {op!r}: expected one of "
                          f"{sorted(_COMPARE)}")
    if op in ("in", "not in"):
        if not isinstance(value, list):
            raise FilterError(f"{f['field']} {op}: expected a list, got "
                              f"{type(value).__name__} {value!r}")
        if not value:
            return _NOTHING if op == "in" else {}
        return {path: {_COMPARE[op]: value}}
    if op in ("==", "!="):
        if value is None:  # Haystack reads a missing value as None
            missing = {"$or": [{path: {"$exists": False}}, {path: None}]}
            return missing if op == "==" else {"$not": missing}
        return {path: {_COMPARE[op]: value}}
    if value is None:
        return _NOTHING  # an order against None holds for no value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FilterError(f"{f['field']} {op}: expected a number or an ISO 8601 date, got "
                          f"{type(value).__name__} {value!r}")
    if isinstance(value, str) and not _iso_date(value):
        raise FilterError(f"{f['field']} {op}: strings compare only as ISO 8601 dates "
                          f"(YYYY-MM-DD...), got {value!r}")
    return {path: {_COMPARE[op]: value}}


def _path(field: Any) -> str:
    if not isinstance(field, str) or not field:
        raise FilterError(f"'field': expected a document field name, got {field!r}")
    if field in ("id", "content") or field.startswith("meta."):
        return field
    if field in ("embedding", "sparse_embedding", "blob", "score", "meta"):
        raise FilterError(f"field {field!r}: filters read 'id', 'content' or 'meta.<key>'")
    return f"meta.{field}"  # a bare name is a meta key, as Haystack reads it


def _iso_date(s: str) -> bool:
    return (len(s) >= 10 and s[:4].isdigit() and s[4] == "-" and s[5:7].isdigit()
            and s[7] == "-" and s[8:10].isdigit() and (len(s) == 10 or s[10] in "Tt "))


def _search_filter(filters: dict[str, Any] | None) -> dict[str, Any]:
    given = to_polyvec_filter(filters)
    embedded = {NO_EMBEDDING: {"$exists": False}}
    return embedded if given is None else {"$and": [given, embedded]}


class PolyvecDocumentStore:
    """Haystack documents in the polyvec collection ``collection_name`` of the database folder
    ``path`` (made on the first write, with a ``Dense`` field ``field`` of ``embedding_dim``,
    or of the first embedding's dimension when ``None``); or in ``collection``, an open
    collection. ``similarity`` is ``"dot_product"`` (Haystack's default) or ``"cosine"``
    (embeddings are then stored, and returned, unit-normalised)."""

    def __init__(self, *, path: str | os.PathLike[str] | None = None,
                 collection_name: str = "haystack", embedding_dim: int | None = None,
                 similarity: str = "dot_product", collection: Any = None,
                 field: str = "vector") -> None:
        if similarity not in _SIMILARITY:
            raise InvalidArgument(f"similarity: expected one of {sorted(_SIMILARITY)}, got "
                                  f"{similarity!r}")
        if embedding_dim is not None and (isinstance(embedding_dim, bool)
                                          or not isinstance(embedding_dim, int)
                                          or embedding_dim < 1):
            raise InvalidArgument(f"embedding_dim: expected an int >= 1, got {embedding_dim!r}")
        self.path = None if path is None else os.fspath(path)
        self.collection_name, self.embedding_dim = collection_name, embedding_dim
        # (the mark is indexed: every retrieval filters on it, from a column, not the payloads)
        self._target = Target(path, collection, collection_name, field,
                              _SIMILARITY[similarity], "PolyvecDocumentStore",
                              indexed=(NO_EMBEDDING,))
        self.similarity = {v: k for k, v in _SIMILARITY.items()}.get(self._target.metric,
                                                                     similarity)
        if self._target.coll is not None:
            self.embedding_dim = dict(self._target.coll.schema.vectors)[field].dim

    @property
    def collection(self) -> Any:
        """The polyvec collection (``None`` until the first write made it)."""
        return self._target.coll

    def close(self) -> None:
        """Close the database this store opened (not a collection it was given)."""
        self._target.close()

    def to_dict(self) -> dict[str, Any]:
        """Serialise the store (one over a folder; a given open collection cannot be)."""
        if self.path is None:
            raise InvalidArgument("PolyvecDocumentStore over an open collection cannot be "
                                  "serialised: make it with path=")
        return default_to_dict(self, path=self.path, collection_name=self.collection_name,
                               embedding_dim=self.embedding_dim, similarity=self.similarity,
                               field=self._target.field)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolyvecDocumentStore:
        """The store :meth:`to_dict` described."""
        store: PolyvecDocumentStore = default_from_dict(cls, data)
        return store

    # -- reading --------------------------------------------------------------------------------
    def count_documents(self) -> int:
        """How many documents the store holds."""
        return 0 if self.collection is None else len(self.collection)

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        """How many documents match ``filters``."""
        return len(self._find(filters))

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """The documents that match ``filters`` (all with ``None``), in write order."""
        coll = self.collection
        ids = self._find(filters)
        return [] if not ids else [self._document(it) for it in coll.get(ids) if it is not None]

    def embedding_retrieval(self, query_embedding: Sequence[float], *,
                            filters: dict[str, Any] | None = None, top_k: int = 10,
                            scale_score: bool = False,
                            return_embedding: bool = False) -> list[Document]:
        """The ``top_k`` documents nearest to ``query_embedding`` among those with an
        embedding that match ``filters``, best first, each with its ``score`` (polyvec's:
        the dot product or cosine; scaled into [0, 1] with ``scale_score``, as Haystack's
        in-memory store scales)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise InvalidArgument(f"top_k: expected an int >= 0, got {top_k!r}")
        if top_k == 0:
            return []
        try:
            hits = self._target.search(query_embedding, top_k, _search_filter(filters))
        except PolyvecFilterError as e:
            raise FilterError(str(e)) from e
        return [self._document(item, embedding=return_embedding,
                               score=self._scaled(score) if scale_score else score)
                for item, score in hits]

    def _scaled(self, score: float) -> float:
        if self.similarity == "cosine":
            return (score + 1) / 2
        return float(expit(score / 100))  # Haystack's scaling of a dot product

    # -- writing --------------------------------------------------------------------------------
    def write_documents(self, documents: list[Document],
                        policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Write ``documents``; returns how many were written. A document whose id the store
        holds is replaced with ``OVERWRITE``, left with ``SKIP``; with ``FAIL`` or ``NONE``
        (the default) :class:`~haystack.document_stores.errors.DuplicateDocumentError` is
        raised and nothing is written."""
        if not isinstance(documents, list) or not all(isinstance(d, Document)
                                                      for d in documents):
            raise ValueError("write_documents: expected a list of haystack Documents, got "
                             f"{_describe(documents)}")
        if not documents:
            return 0
        if policy == DuplicatePolicy.OVERWRITE:
            docs = list({d.id: d for d in documents}.values())  # the last of one id wins
            self._write(docs, replace=True)
            return len(documents)
        if policy == DuplicatePolicy.SKIP:
            first = list({d.id: d for d in reversed(documents)}.values())[::-1]
            for _ in range(8):  # a concurrent writer may add one of them in between
                held = set(self.collection.find({"id": {"$in": [d.id for d in first]}})
                           if self.collection is not None else [])
                docs = [d for d in first if d.id not in held]
                try:
                    self._write(docs, replace=False)
                    return len(docs)
                except DuplicateId:
                    continue
            raise DuplicateDocumentError("write_documents(SKIP): the documents kept changing "
                                         "under concurrent writers")
        seen: set[str] = set()
        for d in documents:
            if d.id in seen:
                raise DuplicateDocumentError(f"document id {d.id!r} is written twice")
            seen.add(d.id)
        try:
            self._write(documents, replace=False)
        except DuplicateId as e:
            raise DuplicateDocumentError(str(e)) from e
        return len(documents)

    def _write(self, docs: list[Document], *, replace: bool) -> None:
        if not docs:
            return
        dim = self.embedding_dim or next(
            (len(d.embedding) for d in docs if d.embedding is not None), None)
        if dim is None:
            raise InvalidArgument("write_documents: the collection is made on the first write "
                                  "and these documents have no embedding to size it: pass "
                                  "embedding_dim=")
        wrong = next((d for d in docs if d.embedding is not None and len(d.embedding) != dim),
                     None)
        if wrong is not None:
            raise DimensionMismatch(f"document {wrong.id!r}: expected an embedding of "
                                    f"{dim} floats, got {len(wrong.embedding or [])}")
        vectors = np.zeros((len(docs), dim), np.float32)
        vectors[:, 0] = 1.0  # the placeholder: a valid vector under every metric, never searched
        for row, d in enumerate(docs):
            if d.embedding is not None:
                vectors[row] = d.embedding
        coll = self._target.made(dim)
        self.embedding_dim = dim
        write = coll.upsert if replace else coll.add
        write([d.id for d in docs], {self._target.field: vectors},
              [_payload(d) for d in docs])

    def delete_documents(self, document_ids: list[str]) -> None:
        """Delete the documents ``document_ids`` (ids the store lacks are ignored)."""
        if self.collection is not None and document_ids:
            self.collection.delete(list(document_ids))

    def delete_all_documents(self, recreate_index: bool = False) -> None:
        """Delete every document; with ``recreate_index`` (a store over a folder) drop the
        collection, its indexes with it, to be made anew by the next write."""
        if self.collection is None:
            return
        if recreate_index and self._target.db is not None:
            self.collection.close()
            self._target.db.drop_collection(self.collection_name)
            self._target.coll = None
        else:
            self.collection.delete(self.collection.find())

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Delete the documents that match ``filters``; returns how many."""
        ids = self._find(filters)
        return self.collection.delete(ids) if ids else 0

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merge ``meta`` into the meta of each document that matches ``filters``; returns
        how many were updated."""
        if not isinstance(meta, dict):
            raise InvalidArgument(f"meta: expected a dict, got {type(meta).__name__}")
        ids = self._find(filters)
        items = [it for it in self.collection.get(ids) if it is not None] if ids else []
        if not items:
            return 0
        payloads = [{**it.payload, "meta": {**it.payload.get("meta", {}), **meta}}
                    for it in items]
        field = self._target.field
        self.collection.upsert([it.id for it in items],
                               {field: np.stack([it.vectors[field] for it in items])}, payloads)
        return len(items)

    # -- async (each runs its sync twin on a worker thread) -------------------------------------
    async def count_documents_async(self) -> int:
        return await asyncio.to_thread(self.count_documents)

    async def count_documents_by_filter_async(self, filters: dict[str, Any]) -> int:
        return await asyncio.to_thread(self.count_documents_by_filter, filters)

    async def filter_documents_async(self, filters: dict[str, Any] | None = None
                                     ) -> list[Document]:
        return await asyncio.to_thread(self.filter_documents, filters)

    async def write_documents_async(self, documents: list[Document],
                                    policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        return await asyncio.to_thread(self.write_documents, documents, policy)

    async def delete_documents_async(self, document_ids: list[str]) -> None:
        await asyncio.to_thread(self.delete_documents, document_ids)

    async def delete_all_documents_async(self, recreate_index: bool = False) -> None:
        await asyncio.to_thread(self.delete_all_documents, recreate_index)

    async def delete_by_filter_async(self, filters: dict[str, Any]) -> int:
        return await asyncio.to_thread(self.delete_by_filter, filters)

    async def update_by_filter_async(self, filters: dict[str, Any],
                                     meta: dict[str, Any]) -> int:
        return await asyncio.to_thread(self.update_by_filter, filters, meta)

    async def embedding_retrieval_async(self, query_embedding: Sequence[float],
                                        **kwargs: Any) -> list[Document]:
        return await asyncio.to_thread(lambda: self.embedding_retrieval(query_embedding, **kwargs))

    # -- helpers --------------------------------------------------------------------------------
    def _find(self, filters: dict[str, Any] | None) -> list[Any]:
        flt = to_polyvec_filter(filters)
        if self.collection is None:
            return []
        try:
            return list(self.collection.find(flt))
        except PolyvecFilterError as e:
            raise FilterError(str(e)) from e

    def _document(self, item: Any, *, embedding: bool = True,
                  score: float | None = None) -> Document:
        p = item.payload
        blob = p.get("blob")
        sparse = p.get("sparse_embedding")
        return Document(
            id=p["id"], content=p.get("content"), meta=p.get("meta", {}),
            blob=None if blob is None else ByteStream(
                data=base64.b64decode(blob["data"]), mime_type=blob.get("mime_type"),
                meta=blob.get("meta", {})),
            sparse_embedding=None if sparse is None else SparseEmbedding.from_dict(sparse),
            score=score,
            embedding=(item.vectors[self._target.field].tolist()
                       if embedding and NO_EMBEDDING not in p else None))


def _payload(d: Document) -> dict[str, Any]:
    p: dict[str, Any] = {"id": d.id, "content": d.content, "meta": d.meta}
    if d.blob is not None:
        p["blob"] = {"data": base64.b64encode(d.blob.data).decode("ascii"),
                     "mime_type": d.blob.mime_type, "meta": d.blob.meta}
    if d.sparse_embedding is not None:
        p["sparse_embedding"] = d.sparse_embedding.to_dict()
    if d.embedding is None:
        p[NO_EMBEDDING] = True
    return p


def _describe(x: Any) -> str:
    if isinstance(x, list):
        bad = next((e for e in x if not isinstance(e, Document)), None)
        return f"a list holding {type(bad).__name__} {bad!r:.60}"
    return f"{type(x).__name__} {x!r:.60}"


@component
class PolyvecEmbeddingRetriever:
    """Retrieves the documents of a :class:`PolyvecDocumentStore` nearest to a query
    embedding, filtered by ``filters`` (merged with, or replaced by, those given at run time
    as ``filter_policy`` says)."""

    def __init__(self, document_store: PolyvecDocumentStore,
                 filters: dict[str, Any] | None = None, top_k: int = 10,
                 scale_score: bool = False, return_embedding: bool = False,
                 filter_policy: FilterPolicy = FilterPolicy.REPLACE) -> None:
        if not isinstance(document_store, PolyvecDocumentStore):
            raise InvalidArgument("document_store: expected a PolyvecDocumentStore, got "
                                  f"{type(document_store).__name__}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidArgument(f"top_k: expected an int >= 1, got {top_k!r}")
        self.document_store, self.filters, self.top_k = document_store, filters, top_k
        self.scale_score, self.return_embedding = scale_score, return_embedding
        self.filter_policy = FilterPolicy(filter_policy)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, document_store=self.document_store.to_dict(),
                               filters=self.filters, top_k=self.top_k,
                               scale_score=self.scale_score,
                               return_embedding=self.return_embedding,
                               filter_policy=self.filter_policy.value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolyvecEmbeddingRetriever:
        params = data.get("init_parameters", {})
        params["document_store"] = PolyvecDocumentStore.from_dict(params["document_store"])
        if "filter_policy" in params:
            params["filter_policy"] = FilterPolicy.from_str(params["filter_policy"])
        retriever: PolyvecEmbeddingRetriever = default_from_dict(cls, data)
        return retriever

    def _args(self, filters: dict[str, Any] | None, top_k: int | None,
              scale_score: bool | None, return_embedding: bool | None) -> dict[str, Any]:
        return {"filters": apply_filter_policy(self.filter_policy, self.filters, filters),
                "top_k": self.top_k if top_k is None else top_k,
                "scale_score": self.scale_score if scale_score is None else scale_score,
                "return_embedding": (self.return_embedding if return_embedding is None
                                     else return_embedding)}

    @component.output_types(documents=list[Document])
    def run(self, query_embedding: list[float], filters: dict[str, Any] | None = None,
            top_k: int | None = None, scale_score: bool | None = None,
            return_embedding: bool | None = None) -> dict[str, list[Document]]:
        """``{"documents": [...]}``: the nearest documents, best first."""
        return {"documents": self.document_store.embedding_retrieval(
            query_embedding, **self._args(filters, top_k, scale_score, return_embedding))}

    @component.output_types(documents=list[Document])
    async def run_async(self, query_embedding: list[float],
                        filters: dict[str, Any] | None = None, top_k: int | None = None,
                        scale_score: bool | None = None,
                        return_embedding: bool | None = None) -> dict[str, list[Document]]:
        """:meth:`run`, off the event loop."""
        return {"documents": await self.document_store.embedding_retrieval_async(
            query_embedding, **self._args(filters, top_k, scale_score, return_embedding))}
