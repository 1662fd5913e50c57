"""PolyvecDocumentStore under Haystack's own document-store test suites (``haystack.testing``:
the base tests with every filter test, the extended ones, counting by filter, and their async
twins), and its retriever over the Python FAQ: the same top-k as ``Collection.search``,
filters included, in a pipeline that survives serialisation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import extra

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # (before haystack is imported)
extra("haystack", "haystack")

from haystack import Document, Pipeline  # noqa: E402
from haystack.document_stores.errors import DuplicateDocumentError  # noqa: E402
from haystack.document_stores.types import DuplicatePolicy, FilterPolicy  # noqa: E402
from haystack.errors import FilterError  # noqa: E402
from haystack.testing.document_store import (  # noqa: E402
    CountDocumentsByFilterTest,
    DocumentStoreBaseExtendedTests,
)
from haystack.testing.document_store_async import (  # noqa: E402
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
)

import polyvec as pv  # noqa: E402
from polyvec.errors import DimensionMismatch, InvalidArgument  # noqa: E402
from polyvec.integrations.haystack import (  # noqa: E402
    PolyvecDocumentStore,
    PolyvecEmbeddingRetriever,
    to_polyvec_filter,
)


def _same(received: list[Document], expected: list[Document]) -> None:
    """Equal documents in the same order; embeddings equal as float32 (what polyvec keeps)."""
    assert [d.id for d in received] == [d.id for d in expected]
    for got, want in zip(received, expected, strict=True):
        assert (got.content, got.meta, got.blob, got.score, got.sparse_embedding) == \
            (want.content, want.meta, want.blob, want.score, want.sparse_embedding)
        assert (got.embedding is None) == (want.embedding is None)
        if want.embedding is not None:
            np.testing.assert_array_equal(np.float32(got.embedding), np.float32(want.embedding))


class TestStandardSuite(DocumentStoreBaseExtendedTests, CountDocumentsByFilterTest,
                        CountDocumentsAsyncTest, CountDocumentsByFilterAsyncTest,
                        DeleteAllAsyncTest, DeleteByFilterAsyncTest, DeleteDocumentsAsyncTest,
                        FilterDocumentsAsyncTest, UpdateByFilterAsyncTest,
                        WriteDocumentsAsyncTest):
    """Haystack's suites as published. The suite asks each store to override two things:
    comparing documents (ours come back with float32 embeddings) and what the default
    duplicate policy does (ours fails, as Haystack's in-memory store does)."""

    @pytest.fixture
    def document_store(self, tmp_path: Path) -> Iterator[PolyvecDocumentStore]:
        store = PolyvecDocumentStore(path=tmp_path / "db", embedding_dim=768)
        yield store
        store.close()

    @staticmethod
    def assert_documents_are_equal(received: list[Document], expected: list[Document]) -> None:
        _same(received, expected)

    def test_write_documents(self, document_store: PolyvecDocumentStore) -> None:
        doc = Document(content="test doc")
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([doc])
        _same(document_store.filter_documents(), [doc])

    async def test_write_documents_async(self, document_store: PolyvecDocumentStore) -> None:
        doc = Document(content="test doc")
        assert await document_store.write_documents_async([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            await document_store.write_documents_async([doc])
        _same(await document_store.filter_documents_async(), [doc])


# -- the FAQ through the retriever ---------------------------------------------------------------

@pytest.fixture(scope="module")
def faq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from polyvec.embed import minilm
    from polyvec.eval.datasets import load_python_faq

    ds = load_python_faq()
    embedder = minilm()
    vectors = embedder.embed_documents([d["text"] for d in ds.corpus])
    store = PolyvecDocumentStore(path=tmp_path_factory.mktemp("faq") / "db",
                                 similarity="cosine")
    store.write_documents([Document(id=d["id"], content=d["text"], meta=p, embedding=v.tolist())
                           for d, p, v in zip(ds.corpus, ds.payloads, vectors, strict=True)])
    yield {"ds": ds, "store": store, "embedder": embedder}
    store.close()


CASES = {  # a filter as Haystack writes it, and what it keeps
    "none": (None, lambda m: True),
    "eq": ({"field": "meta.page", "operator": "==", "value": "programming"},
           lambda m: m["page"] == "programming"),
    "in-ne": ({"operator": "AND", "conditions": [
        {"field": "meta.page", "operator": "in", "value": ["library", "gui"]},
        {"field": "meta.section", "operator": "!=", "value": "General Information"}]},
        lambda m: m["page"] in ("library", "gui") and m["section"] != "General Information"),
    "or": ({"operator": "OR", "conditions": [
        {"field": "page", "operator": "==", "value": "programming"},  # a bare meta key
        {"field": "meta.page", "operator": "==", "value": "design"}]},
        lambda m: m["page"] in ("programming", "design")),
    "not": ({"operator": "NOT", "conditions": [
        {"field": "meta.page", "operator": "==", "value": "programming"}]},
        lambda m: m["page"] != "programming"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_retriever_answers_as_collection_search(faq: dict[str, Any], case: str) -> None:
    """Same ids and scores as ``Collection.search`` with the mapped filter, and those are
    the exact top-5 (numpy, over the stored vectors) among the documents the filter keeps."""
    filters, keeps = CASES[case]
    store, ds = faq["store"], faq["ds"]
    items = store.collection.get([d["id"] for d in ds.corpus])
    allowed = [it for it in items if keeps(it.payload["meta"])]
    x = np.stack([it.vectors["vector"] for it in allowed])
    retriever = PolyvecEmbeddingRetriever(document_store=store, filters=filters, top_k=5)
    queries = [q["text"] for q in ds.queries[:40:4]]
    for qv in faq["embedder"].embed_queries(queries):
        got = retriever.run(query_embedding=qv.tolist())["documents"]
        want = store.collection.search(qv, 5, filter=to_polyvec_filter(filters))
        assert [d.id for d in got] == want.ids.tolist()
        np.testing.assert_allclose([d.score for d in got], want.scores, atol=1e-6)
        exact = np.argsort(-(x @ (qv / np.linalg.norm(qv))), kind="stable")[:5]
        assert [d.id for d in got] == [allowed[i].id for i in exact]
        assert all(d.content and d.embedding is None for d in got)


def test_a_pipeline_round_trips_and_finds_the_answers(faq: dict[str, Any]) -> None:
    store, ds = faq["store"], faq["ds"]
    pipe = Pipeline()
    pipe.add_component("retriever", PolyvecEmbeddingRetriever(document_store=store, top_k=5))
    # YAML: the store is its folder (Haystack loads only the modules it is told to trust)
    again = Pipeline.loads(pipe.dumps(), allowed_modules=["polyvec.integrations.haystack"])
    retriever = again.get_component("retriever")
    assert isinstance(retriever, PolyvecEmbeddingRetriever)
    assert retriever.document_store.to_dict() == store.to_dict()
    queries = ds.queries
    vectors = faq["embedder"].embed_queries([q["text"] for q in queries])
    found = 0
    for q, qv in zip(queries, vectors, strict=True):
        docs = again.run({"retriever": {"query_embedding": qv.tolist()}})["retriever"]["documents"]
        found += q["id"] in [d.id for d in docs]
    assert found / len(queries) >= 0.9, found  # the answer's text alone is embedded
    retriever.document_store.close()


# -- the store's own behaviour --------------------------------------------------------------------

def _doc(i: str, emb: list[float] | None, **meta: Any) -> Document:
    return Document(id=i, content=f"text {i}", meta=meta, embedding=emb)


def test_documents_without_embeddings_are_kept_but_never_retrieved(tmp_path: Path) -> None:
    store = PolyvecDocumentStore(path=tmp_path / "db")
    with pytest.raises(InvalidArgument, match="embedding_dim"):
        store.write_documents([_doc("a", None)])  # nothing to size the collection by
    assert store.write_documents([_doc("a", [1.0, 0.0, 0.0]), _doc("b", None, n=1),
                                  _doc("c", [0.0, 1.0, 0.0], n=2)]) == 3
    assert store.count_documents() == 3 and store.embedding_dim == 3
    assert store.collection.schema.indexed == ("_no_embedding",)  # retrievals read a column
    assert [d.embedding for d in store.filter_documents()] == [[1.0, 0.0, 0.0], None,
                                                               [0.0, 1.0, 0.0]]
    # "b" holds a placeholder vector equal to "a"'s: it is never a hit
    hits = store.embedding_retrieval([1.0, 0.0, 0.0], top_k=3, return_embedding=True)
    assert [(d.id, d.score, d.embedding) for d in hits] == [
        ("a", 1.0, [1.0, 0.0, 0.0]), ("c", 0.0, [0.0, 1.0, 0.0])]
    assert [d.id for d in store.embedding_retrieval(
        [1.0, 0.0, 0.0], filters={"field": "meta.n", "operator": ">=", "value": 1})] == ["c"]
    assert store.embedding_retrieval([1.0, 0.0, 0.0], top_k=0) == []
    scaled = store.embedding_retrieval([1.0, 0.0, 0.0], top_k=1, scale_score=True)
    assert scaled[0].score == pytest.approx(1 / (1 + np.exp(-0.01)))  # Haystack's dot scaling
    with pytest.raises(DimensionMismatch, match="'d'"):
        store.write_documents([_doc("d", [1.0, 2.0])])
    assert store.count_documents() == 3


def test_duplicate_policies_and_odd_documents(tmp_path: Path) -> None:
    from haystack.dataclasses import ByteStream, SparseEmbedding

    store = PolyvecDocumentStore(path=tmp_path / "db", embedding_dim=2)
    odd = Document(id="ü-1", content=None, meta={"deep": {"k": [1, "x"]}},
                   blob=ByteStream(b"\x00\xffbytes", mime_type="application/x", meta={"m": 1}),
                   sparse_embedding=SparseEmbedding(indices=[3, 9], values=[0.5, 0.25]))
    assert store.write_documents([odd, _doc("b", [1.0, 2.0])]) == 2
    _same(store.filter_documents({"field": "id", "operator": "==", "value": "ü-1"}), [odd])
    _same(store.filter_documents({"field": "meta.deep.k", "operator": "==", "value": "x"}),
          [odd])
    with pytest.raises(DuplicateDocumentError):  # one id twice in a batch: nothing written
        store.write_documents([_doc("c", None), _doc("c", None)], DuplicatePolicy.FAIL)
    with pytest.raises(DuplicateDocumentError):  # one held id: nothing written
        store.write_documents([_doc("d", None), _doc("b", None)])
    assert store.count_documents() == 2
    # SKIP keeps the first of a batch and what the store holds; OVERWRITE the last
    assert store.write_documents([_doc("b", None, v=1), _doc("e", None, v=1),
                                  _doc("e", None, v=2)], DuplicatePolicy.SKIP) == 1
    assert store.write_documents([_doc("b", [3.0, 4.0], v=3), _doc("b", [5.0, 6.0], v=4)],
                                 DuplicatePolicy.OVERWRITE) == 2
    assert [(d.id, d.meta, d.embedding) for d in store.filter_documents()] == [
        ("ü-1", odd.meta, None), ("e", {"v": 1}, None), ("b", {"v": 4}, [5.0, 6.0])]
    with pytest.raises(ValueError, match="int"):
        store.write_documents([odd, 3])  # type: ignore[list-item]


@pytest.mark.parametrize(("filters", "why"), [
    ({"field": "meta.n", "operator": ">", "value": "1"}, "ISO 8601"),
    ({"field": "meta.n", "operator": "<", "value": [1]}, "number"),
    ({"field": "meta.n", "operator": "in", "value": 3}, "list"),
    ({"field": "meta.n", "operator": "~", "value": 3}, "unknown comparison"),
    ({"operator": "XOR", "conditions": []}, "unknown logical"),
    ({"field": "embedding", "operator": "==", "value": 1}, "meta.<key>"),
    ({"field": "meta.n", "operator": "==", "value": {"a": 1}}, r"\$eq"),  # polyvec's refusal
])
def test_bad_filters_raise_haystacks_filter_error(tmp_path: Path, filters: dict[str, Any],
                                                   why: str) -> None:
    store = PolyvecDocumentStore(path=tmp_path / "db", embedding_dim=2)
    store.write_documents([_doc("a", [1.0, 0.0], n=1)])
    for call in (store.filter_documents, store.count_documents_by_filter,
                 lambda f: store.embedding_retrieval([1.0, 0.0], filters=f),
                 store.delete_by_filter):
        with pytest.raises(FilterError, match=why):
            call(filters)
    assert store.count_documents() == 1


def test_filters_read_dates_nones_and_empty_lists_as_haystack_does(tmp_path: Path) -> None:
    from haystack.utils.filters import document_matches_filter

    store = PolyvecDocumentStore(path=tmp_path / "db", embedding_dim=2)
    docs = [_doc("a", None, d="1969-07-21T20:17:40", n=None), _doc("b", None, d="1989-11-09"),
            _doc("c", None, n=3), _doc("d", None, n=[1, 2])]
    store.write_documents(docs)
    for f in [{"field": "meta.d", "operator": ">=", "value": "1970-01-01"},
              {"field": "meta.d", "operator": "<", "value": "1989-11-09T00:00:01"},
              {"field": "meta.n", "operator": "==", "value": None},
              {"field": "meta.n", "operator": "!=", "value": None},
              {"field": "meta.n", "operator": "<=", "value": None},
              {"field": "meta.n", "operator": "not in", "value": [3]},
              {"field": "meta.n", "operator": "in", "value": []},
              {"field": "meta.n", "operator": "not in", "value": []},
              {"operator": "AND", "conditions": []}, {"operator": "OR", "conditions": []},
              {"operator": "NOT", "conditions": [{"field": "content", "operator": "==",
                                                  "value": "text c"}]}]:
        want = [d.id for d in docs if document_matches_filter(f, d)] \
            if f.get("conditions") != [] else ([] if f["operator"] == "OR" else "abcd")
        assert [d.id for d in store.filter_documents(f)] == list(want), f


def test_the_folder_is_the_store(tmp_path: Path) -> None:
    store = PolyvecDocumentStore(path=tmp_path / "db", collection_name="docs",
                                 embedding_dim=2)
    store.write_documents([_doc("a", [1.0, 0.0], tag="x"), _doc("b", [0.0, 1.0], tag="y")])
    assert store.update_by_filter({"field": "meta.tag", "operator": "==", "value": "x"},
                                  {"seen": True}) == 1
    store.close()
    again = PolyvecDocumentStore.from_dict(store.to_dict())
    assert again.embedding_dim == 2 and again.similarity == "dot_product"
    assert [(d.id, d.meta, d.embedding) for d in again.filter_documents()] == [
        ("b", {"tag": "y"}, [0.0, 1.0]), ("a", {"tag": "x", "seen": True}, [1.0, 0.0])]
    assert [d.id for d in again.embedding_retrieval([1.0, 0.1], top_k=1)] == ["a"]
    again.delete_all_documents(recreate_index=True)
    assert again.count_documents() == 0
    again.write_documents([_doc("c", [1.0, 1.0])])
    assert [d.id for d in again.embedding_retrieval([1.0, 0.0])] == ["c"]
    again.close()
    # a store over an open collection: the collection's field and metric are used
    db = pv.connect(tmp_path / "db2")
    coll = db.create_collection("c", {"vector": pv.Dense(2, metric="cosine")})
    given = PolyvecDocumentStore(collection=coll)
    assert given.similarity == "cosine" and given.embedding_dim == 2
    given.write_documents([_doc("z", [3.0, 4.0])])
    assert given.filter_documents()[0].embedding == pytest.approx([0.6, 0.8])  # unit-normalised
    with pytest.raises(InvalidArgument, match="path="):
        given.to_dict()
    db.close()
    with pytest.raises(InvalidArgument, match="similarity"):
        PolyvecDocumentStore(path=tmp_path / "db3", similarity="l1")


def test_retriever_filter_policies(tmp_path: Path) -> None:
    store = PolyvecDocumentStore(path=tmp_path / "db", embedding_dim=2)
    store.write_documents([_doc("a", [1.0, 0.0], t="x", u=1), _doc("b", [0.9, 0.1], t="y", u=1),
                           _doc("c", [0.8, 0.2], t="x", u=2)])
    fixed = {"field": "meta.t", "operator": "==", "value": "x"}
    asked = {"field": "meta.u", "operator": "==", "value": 1}
    merge = PolyvecEmbeddingRetriever(document_store=store, filters=fixed,
                                      filter_policy=FilterPolicy.MERGE)
    replace = PolyvecEmbeddingRetriever(document_store=store, filters=fixed)
    query = [1.0, 0.0]
    assert [d.id for d in merge.run(query)["documents"]] == ["a", "c"]
    assert [d.id for d in merge.run(query, filters=asked)["documents"]] == ["a"]
    assert [d.id for d in replace.run(query, filters=asked)["documents"]] == ["a", "b"]
    assert [d.id for d in replace.run(query, top_k=1)["documents"]] == ["a"]
    with pytest.raises(InvalidArgument, match="top_k"):
        PolyvecEmbeddingRetriever(document_store=store, top_k=0)
    store.close()


async def test_the_retriever_runs_async(tmp_path: Path) -> None:
    store = PolyvecDocumentStore(path=tmp_path / "db", embedding_dim=2)
    await store.write_documents_async([_doc("a", [1.0, 0.0]), _doc("b", [0.0, 1.0])])
    retriever = PolyvecEmbeddingRetriever(document_store=store, top_k=1)
    got = await retriever.run_async(query_embedding=[0.1, 1.0])
    assert [d.id for d in got["documents"]] == ["b"]
    store.close()
