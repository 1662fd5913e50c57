"""A LangChain ``VectorStore`` over a polyvec collection (extra ``[langchain]``).

A document is an item: its id (a str; a new UUID when it has none), one dense vector field
and the payload ``{"page_content": ..., "metadata": {...}}``. The folder is the store:
documents survive reopening, and several processes may share it. Filters are polyvec's
(``{"author": "ann", "year": {"$gte": 2020}}``, ``$and``/``$or``/``$not``), written over the
metadata: each path is read under ``metadata``. The scores of ``similarity_search_with_score``
are polyvec's (cosine or dot similarity, or minus the squared L2 distance), higher is closer.

>>> store = PolyvecVectorStore(embeddings, path="./db")  # doctest: +SKIP
>>> store.add_texts(["polyvec is a vector database"], [{"lang": "en"}])  # doctest: +SKIP
>>> store.similarity_search("vector search", k=1, filter={"lang": "en"})  # doctest: +SKIP

``embedding`` may also be a polyvec embedder (``polyvec.embed.minilm()``): the field then
records its model. Without ``embedding``, the store embeds with the model the collection's
field records.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgument, MissingExtra
from ._target import Target

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise MissingExtra("polyvec.integrations.langchain needs langchain-core: "
                       "pip install 'polyvec[langchain]'") from e

__all__ = ["PolyvecEmbeddings", "PolyvecVectorStore", "metadata_filter"]

PAGE, META = "page_content", "metadata"  # the payload's keys


def metadata_filter(filter: dict[str, Any] | None) -> dict[str, Any] | None:
    """A filter over a document's metadata as a polyvec filter over its payload: every path
    moves under ``metadata``; operators and values stay as they are.

    >>> metadata_filter({"a": 1, "$or": [{"b": {"$in": [1, 2]}}, {"c.d": "x"}]})
    {'metadata.a': 1, '$or': [{'metadata.b': {'$in': [1, 2]}}, {'metadata.c.d': 'x'}]}
    """
    if filter is None:
        return None
    if not isinstance(filter, dict):
        raise InvalidArgument(f"filter: expected a dict, got {type(filter).__name__}")
    out: dict[str, Any] = {}
    for key, value in filter.items():
        if key in ("$and", "$or"):
            out[key] = [metadata_filter(f) for f in value] if isinstance(value, list) else value
        elif key == "$not":
            out[key] = metadata_filter(value) if isinstance(value, dict) else value
        elif isinstance(key, str) and not key.startswith("$"):
            out[f"{META}.{key}"] = value
        else:
            out[key] = value  # an unknown operator: polyvec's FilterError names it
    return out


class PolyvecEmbeddings(Embeddings):
    """A polyvec embedder (``polyvec.embed.minilm()``, ...) as LangChain ``Embeddings``."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return np.asarray(self.embedder.embed_documents(list(texts))).tolist()

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self.embedder.embed_queries([text])[0]).tolist()


class PolyvecVectorStore(VectorStore):
    """Documents in the polyvec collection ``collection_name`` of the database folder
    ``path`` (made on the first write, with a ``Dense`` field ``field`` of the first
    embeddings' dimension and ``metric``); or in ``collection``, an open collection (a
    :class:`~polyvec.Collection`, or one of a :class:`~polyvec.client.Client`).

    ``embedding``: the LangChain ``Embeddings`` that embeds texts and queries, or a polyvec
    embedder (its model is then recorded on the field); ``None``: the embedder of the model
    the collection's field records.
    """

    def __init__(self, embedding: Embeddings | Any = None, *,
                 path: str | os.PathLike[str] | None = None,
                 collection_name: str = "langchain", collection: Any = None,
                 field: str = "vector", metric: str = "cosine") -> None:
        self._target = Target(path, collection, collection_name, field, metric,
                              "PolyvecVectorStore")
        self._field = field
        self._model: Any = None  # a polyvec embedder's spec: recorded on the field
        if embedding is None:
            coll = self._target.coll
            model = None if coll is None else coll.model_of(field)
            if model is None:
                raise InvalidArgument(
                    f"embedding: none given, and field {field!r} of collection "
                    f"{collection_name!r} records no model to embed with; pass a LangChain "
                    "Embeddings or a polyvec embedder")
            from ..embed.registry import embedder_for

            embedding = embedder_for(model)
        if not isinstance(embedding, Embeddings):
            if not hasattr(embedding, "embed_queries"):
                raise InvalidArgument(f"embedding: expected LangChain Embeddings or a polyvec "
                                      f"embedder, got {type(embedding).__name__}")
            self._model = embedding
            embedding = PolyvecEmbeddings(embedding)
        self._embedding: Embeddings = embedding

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def collection(self) -> Any:
        """The polyvec collection (``None`` until the first write made it)."""
        return self._target.coll

    @property
    def _coll(self) -> Any:
        return self._target.coll

    def close(self) -> None:
        """Close the database this store opened (not a collection it was given)."""
        self._target.close()

    # -- writing --------------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None,
                  *, ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Embed and store ``texts``; a document whose id the collection holds is replaced.
        Returns the ids (new UUIDs where none was given, or where an id is ``None``: the
        documents of ``add_documents`` without one)."""
        texts = list(texts)
        given: list[str | None] = [None] * len(texts) if ids is None else list(ids)
        metas: list[dict[str, Any] | None] = \
            [None] * len(texts) if metadatas is None else list(metadatas)
        for name, got in (("metadatas", metas), ("ids", given)):
            if len(got) != len(texts):
                raise InvalidArgument(f"{name}: expected {len(texts)} (one per text), got "
                                      f"{len(got)}")
        if not texts:
            return []
        keys = [str(uuid.uuid4()) if i is None else i for i in given]
        payloads = [{PAGE: t, META: dict(m or {})} for t, m in zip(texts, metas, strict=True)]
        vectors = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        self._made(vectors.shape[1]).upsert(keys, {self._field: vectors}, payloads)
        return keys

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete the documents ``ids`` (ids it does not hold are ignored); every document
        when ``ids`` is ``None``."""
        if self._coll is None:
            return True
        self._coll.delete(list(self._coll) if ids is None else list(ids))
        return True

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None,
                   metadatas: list[dict[str, Any]] | None = None, *,
                   ids: list[str] | None = None, **kwargs: Any) -> PolyvecVectorStore:
        """A store (``kwargs``: those of the constructor) holding ``texts``."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    # -- reading --------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents of ``ids`` it holds, in that order (missing ones left out)."""
        if self._coll is None or not ids:
            return []
        return [self._document(it) for it in self._coll.get(list(ids)) if it is not None]

    def similarity_search(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                          **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter)]

    def similarity_search_with_score(self, query: str, k: int = 4,
                                     filter: dict[str, Any] | None = None, **kwargs: Any
                                     ) -> list[tuple[Document, float]]:
        if self._coll is None:
            return []
        return self.similarity_search_with_score_by_vector(
            self._embedding.embed_query(query), k, filter)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                    filter: dict[str, Any] | None = None, **kwargs: Any
                                    ) -> list[Document]:
        return [doc for doc, _ in
                self.similarity_search_with_score_by_vector(embedding, k, filter)]

    def similarity_search_with_score_by_vector(
            self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None,
            **kwargs: Any) -> list[tuple[Document, float]]:
        return [(self._document(it), s)
                for it, s in self._target.search(embedding, k, metadata_filter(filter))]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                      lambda_mult: float = 0.5,
                                      filter: dict[str, Any] | None = None, **kwargs: Any
                                      ) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter)

    def max_marginal_relevance_search_by_vector(
            self, embedding: list[float], k: int = 4, fetch_k: int = 20,
            lambda_mult: float = 0.5, filter: dict[str, Any] | None = None, **kwargs: Any
            ) -> list[Document]:
        """``k`` of the ``fetch_k`` nearest documents, picked for relevance to the query
        and difference from each other (``lambda_mult``: 1 relevance only, 0 diversity
        only); their vectors are the stored ones."""
        q = np.asarray(embedding, dtype=np.float32)
        items = [it for it, _ in self._target.search(q, max(k, fetch_k),
                                                     metadata_filter(filter))]
        if not items:
            return []
        picked = maximal_marginal_relevance(
            q, [it.vectors[self._field] for it in items], lambda_mult=lambda_mult, k=k)
        return [self._document(items[i]) for i in picked]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Scores as relevance in [0, 1]: cosine (s + 1) / 2, L2 1 - distance / sqrt(2)
        (unit vectors' distances lie in [0, 2]), dot the sigmoid of the score."""
        metric = self._target.metric
        if metric == "cosine":
            return lambda s: (1.0 + s) / 2.0
        if metric == "l2":
            return lambda s: 1.0 - math.sqrt(max(-s, 0.0)) / math.sqrt(2.0)
        return lambda s: 1.0 / (1.0 + math.exp(-s))

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _document(item: Any) -> Document:
        payload = item.payload
        return Document(id=str(item.id), page_content=payload.get(PAGE, ""),
                        metadata=dict(payload.get(META) or {}))

    def _made(self, dim: int) -> Any:
        """The collection, made for vectors of ``dim`` on the first write (recording the
        model of a polyvec embedder on its field)."""
        new = self._target.coll is None
        coll = self._target.made(dim)
        if new and self._model is not None:
            coll.use_embedder(self._field, self._model)
        return coll
