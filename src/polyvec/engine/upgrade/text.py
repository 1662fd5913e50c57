"""Text in, text out: embedders attached to vector fields, and the model each field remembers.

A field records the :class:`~polyvec.spec.ModelSpec` of the model that made its vectors (in
the catalog, so it survives reopening). Embedders are live objects and are attached per process
with ``Collection.use_embedder``; attaching or querying with a model whose spec differs from
the recorded one raises :class:`~polyvec.errors.ModelMismatch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import InvalidArgument, ModelMismatch, UnknownField
from ...fields import check_compatible
from ...spec import ModelSpec
from ...types import SearchResult

if TYPE_CHECKING:
    from ..store import SegmentStore

__all__ = ["Embedders", "check_compatible"]


def _texts(texts: object, what: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidArgument(f"{what}: expected a list of str, got {type(texts).__name__}")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise InvalidArgument(f"{what}: expected a list of str, got an item of type "
                              f"{type(bad).__name__}")
    return list(texts)


class Embedders:
    """Embedders attached to a collection's fields (per process) and the model each field
    records. Holds a reference to the facade for add/upsert/search of embedded texts."""

    def __init__(self, store: SegmentStore, coll: Any) -> None:
        self.store = store
        self.coll = coll
        self.embedders: dict[str, Any] = {}
    def model_of(self, field: str | None = None) -> ModelSpec | None:
        """The model recorded for ``field`` (``None`` if its vectors came without one)."""
        name, _ = self.store.field(field)
        with self.store.mutex:
            self.store.refresh()
            return self.store.models.get(name)

    def use_embedder(self, field: str, embedder: Any) -> None:
        """Attach ``embedder`` to ``field`` for :meth:`add_texts` / :meth:`search_text`.

        The first embedder attached to a field records its model; later ones must match it.
        """
        name, spec = self.store.field(field)
        model = getattr(embedder, "spec", None)
        if not isinstance(model, ModelSpec):
            raise InvalidArgument(f"embedder: expected an object with a ModelSpec `.spec`, got "
                                  f"{type(embedder).__name__}")
        check_compatible(name, spec, model)
        with self.store.mutex, self.store.lock:
            self.store.refresh()
            recorded = self.store.models.get(name)
            if recorded is None:
                models = {**self.store.models, name: model}
                with self.store.catalog.transaction():
                    self.store.catalog.set_meta(
                        {"models": {f: m.to_dict() for f, m in models.items()}})
                self.store.models = models
            elif recorded != model:
                raise ModelMismatch(
                    f"field {name!r} holds vectors of {recorded.name!r} (revision "
                    f"{recorded.revision!r}); the embedder is {model.name!r} (revision "
                    f"{model.revision!r}). Use the same model, or register the new one and fit "
                    "a mapping")
        self.embedders[name] = embedder

    def _embedder(self, field: str) -> Any:
        """The embedder attached to ``field``, while its model is still the field's: a
        backfill in another handle or process may have switched the field to a new model
        since it was attached (that one's vectors would land in the wrong space)."""
        if field not in self.embedders:
            raise UnknownField(f"field {field!r} has no embedder attached; call "
                               f"use_embedder({field!r}, embedder) first")
        embedder = self.embedders[field]
        recorded = self.model_of(field)
        if recorded is not None and embedder.spec != recorded:
            raise ModelMismatch(
                f"field {field!r} now holds vectors of {recorded.name!r} (revision "
                f"{recorded.revision!r}), switched to it by a backfill since its embedder "
                f"{embedder.spec.name!r} (revision {embedder.spec.revision!r}) was attached; "
                f"attach that model's embedder with use_embedder({field!r}, embedder)")
        return embedder

    def add_texts(self, texts: Sequence[str], ids: Sequence[int | str],
                  payloads: Sequence[dict[str, Any] | None] | None = None, *,
                  vectors: Mapping[str, Any] | None = None, upsert: bool = False,
                  batch_size: int = 32, progress: bool = False) -> None:
        """Embed ``texts`` with every field's embedder and add them (fields without an
        embedder take their vectors from ``vectors``)."""
        texts = _texts(texts, "texts")
        if vectors is not None and not isinstance(vectors, Mapping):
            raise InvalidArgument(f"vectors: expected a dict of field -> vectors for the "
                                  f"fields without an embedder, got {type(vectors).__name__}")
        data = dict(vectors or {})
        for name, spec in self.store.fields.items():
            if name in data:
                continue
            if spec.kind == "bm25":  # a text field takes the texts themselves
                data[name] = texts
            else:
                data[name] = self._embedder(name).embed_documents(
                    texts, batch_size=batch_size, progress=progress)
        (self.coll.upsert if upsert else self.coll.add)(ids, data, payloads)

    def search_text(self, query: str | Sequence[str], k: int = 10, *, field: str | None = None,
                    filter: Mapping[str, Any] | None = None, embedder: Any = None,
                    model: str | None = None, fields: Sequence[str] | None = None,
                    **hybrid: Any) -> SearchResult:
        """Embed ``query`` (one str or a list) with the field's embedder and search.

        ``embedder`` overrides the attached one for this call; its model must be the one the
        field's vectors were made with. ``model`` names a registered model version instead
        (``register_model``): its embedder embeds the query, which is mapped into the field's
        space when that version is not the field's own (``search(..., model=...)``).
        A BM25 field takes the text itself. ``fields`` (several) makes a hybrid search of
        them (``hybrid``: ``fusion``, ``weights``, ``min_score``), each field's query made
        from the text as its own search would make it.
        """
        if fields is not None:
            if field is not None or embedder is not None or model is not None:
                raise InvalidArgument("search_text: fields= (a hybrid search) takes neither "
                                      "field=, embedder= nor model=")
            if isinstance(fields, str) or not isinstance(fields, Sequence) or not fields:
                raise InvalidArgument(f"search_text: fields: expected a list of field names, "
                                      f"got {fields!r}")
            single = isinstance(query, str)
            texts = [query] if single else _texts(query, "query")
            queries: dict[str, Any] = {}
            for f in fields:
                name, spec = self.store.field(f)
                if spec.kind == "bm25":
                    queries[name] = query if single else texts
                else:
                    vecs = self._embedder(name).embed_queries(texts)
                    queries[name] = vecs[0] if single else vecs
            return self.coll.search(queries, k, filter=filter, **hybrid)
        if hybrid:
            raise InvalidArgument(f"search_text: {sorted(hybrid)} apply to a hybrid search "
                                  "(fields=[...])")
        name, spec = self.store.field(field)
        if spec.kind == "bm25":
            if embedder is not None or model is not None:
                raise InvalidArgument(f"search_text: field {name!r} is BM25: it takes the "
                                      "text itself, no embedder or model")
            return self.coll.search(query, k, field=name, filter=filter)
        self.coll._upgrade._check_model_arg(model)
        if model is not None:
            emb = embedder or self.coll._upgrade._embedder_of(name, model)
            single = isinstance(query, str)
            vecs = emb.embed_queries([query] if single else _texts(query, "query"))
            return self.coll.search(vecs[0] if single else vecs, k,
                               field=name, filter=filter, model=model)
        if embedder is not None:
            recorded = self.model_of(name)
            if recorded is not None and embedder.spec != recorded:
                raise ModelMismatch(
                    f"field {name!r} holds vectors of {recorded.name!r} (revision "
                    f"{recorded.revision!r}); the query embedder is {embedder.spec.name!r} "
                    f"(revision {embedder.spec.revision!r})")
        else:
            embedder = self._embedder(name)
        single = isinstance(query, str)
        texts = [query] if single else _texts(query, "query")
        vecs = embedder.embed_queries(texts)
        q = (vecs[0] if single else vecs)
        return self.coll.search(q, k, field=name, filter=filter)
