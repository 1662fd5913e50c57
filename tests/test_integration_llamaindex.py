"""PolyvecVectorStore under a LlamaIndex ``VectorStoreIndex`` over the Python FAQ: its
retriever answers with the same top-k as ``Collection.search`` (filters included); and the
store's own operations: add, delete by source document, get and delete by ids or filters,
filters against a reference, reopening the folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import extra

extra("llamaindex", "llama_index.core")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

import polyvec as pv  # noqa: E402
from polyvec.errors import InvalidArgument  # noqa: E402
from polyvec.integrations.llamaindex import (  # noqa: E402
    PolyvecEmbedding,
    PolyvecVectorStore,
    to_polyvec_filter,
)


def _node(node_id: str, text: str, doc: str, meta: dict[str, Any],
          embedding: list[float] | None = None) -> TextNode:
    return TextNode(id_=node_id, text=text, metadata=meta, embedding=embedding,
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)})


@pytest.fixture(scope="module")
def faq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from polyvec.embed import minilm
    from polyvec.eval.datasets import load_python_faq

    ds = load_python_faq()
    store = PolyvecVectorStore(path=tmp_path_factory.mktemp("faq") / "db")
    embed = PolyvecEmbedding(minilm())
    nodes = [_node(d["id"], d["text"], d["id"], p)
             for d, p in zip(ds.corpus, ds.payloads, strict=True)]
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(
        vector_store=store), embed_model=embed)
    yield {"ds": ds, "store": store, "embed": embed, "index": index}
    store.close()


CASES = {  # a filter as LlamaIndex writes it, and what it keeps
    "none": (None, lambda m: True),
    "eq": (MetadataFilters(filters=[MetadataFilter(key="page", value="programming")]),
           lambda m: m["page"] == "programming"),
    "in-ne": (MetadataFilters(filters=[
        MetadataFilter(key="page", value=["library", "gui"], operator=FilterOperator.IN),
        MetadataFilter(key="section", value="General Information",
                       operator=FilterOperator.NE)]),
        lambda m: m["page"] in ("library", "gui") and m["section"] != "General Information"),
    "or": (MetadataFilters(filters=[MetadataFilter(key="page", value="programming"),
                                    MetadataFilter(key="page", value="design")],
                           condition=FilterCondition.OR),
           lambda m: m["page"] in ("programming", "design")),
    "not": (MetadataFilters(filters=[MetadataFilter(key="page", value="programming")],
                            condition=FilterCondition.NOT),
            lambda m: m["page"] != "programming"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_index_answers_as_collection_search(faq: dict[str, Any], case: str) -> None:
    """Same ids and scores as ``Collection.search`` with the mapped filter, and those are
    the exact top-5 (numpy, over the stored vectors) among the items the filter keeps."""
    filters, keeps = CASES[case]
    store, embed, ds = faq["store"], faq["embed"], faq["ds"]
    items = store.client.get([d["id"] for d in ds.corpus])
    allowed = [it for it in items if keeps(it.payload)]
    x = np.stack([it.vectors["vector"] for it in allowed])
    retriever = faq["index"].as_retriever(similarity_top_k=5, filters=filters)
    for q in ds.queries[:40:4]:
        got = retriever.retrieve(q["text"])
        qv = np.asarray(embed.get_query_embedding(q["text"]), np.float32)
        want = store.client.search(qv, 5, filter=to_polyvec_filter(filters))
        assert [n.node.node_id for n in got] == want.ids.tolist()
        np.testing.assert_allclose([n.score for n in got], want.scores, atol=1e-6)
        exact = np.argsort(-(x @ (qv / np.linalg.norm(qv))), kind="stable")[:5]
        assert [n.node.node_id for n in got] == [allowed[i].id for i in exact]
        assert all(n.node.get_content() for n in got)  # the text comes back from the store


def test_the_faq_questions_find_their_answers(faq: dict[str, Any]) -> None:
    retriever = faq["index"].as_retriever(similarity_top_k=5)
    queries = faq["ds"].queries
    found = sum(q["id"] in [n.node.node_id for n in retriever.retrieve(q["text"])]
                for q in queries)
    # all 179 measured: LlamaIndex embeds each node's metadata with its text, and the
    # metadata holds the FAQ's question
    assert found / len(queries) >= 0.95, found


EMB = {name: list(np.random.default_rng(i).standard_normal(8)) for i, name in
       enumerate(["a1", "a2", "b1", "c1", "c2", "c3", "d1"])}
META = {"a1": {"n": 1, "tag": "x"}, "a2": {"n": 2, "tag": "y"}, "b1": {"n": 3},
        "c1": {"n": 4, "tag": "x"}, "c2": {"n": 5, "tag": None}, "c3": {"n": 6, "tag": "z"},
        "d1": {"n": 7, "tag": ""}}


@pytest.fixture()
def small(tmp_path: Path) -> Iterator[PolyvecVectorStore]:
    store = PolyvecVectorStore(path=tmp_path / "db", collection_name="nodes")
    store.add([_node(k, f"text {k}", f"doc-{k[0]}", META[k], EMB[k]) for k in EMB])
    yield store
    store.close()


def _query(store: PolyvecVectorStore, k: int = len(META), **kw: Any) -> list[str]:
    return store.query(VectorStoreQuery(query_embedding=EMB["a1"], similarity_top_k=k,
                                        **kw)).ids or []


@pytest.mark.parametrize(("op", "value", "keep"), [
    (FilterOperator.EQ, "x", lambda m: m.get("tag") == "x"),
    (FilterOperator.NE, "x", lambda m: m.get("tag") != "x"),
    (FilterOperator.GT, 2, None), (FilterOperator.GTE, 2, None),
    (FilterOperator.LT, 4, None), (FilterOperator.LTE, 4, None),
    (FilterOperator.IN, ["x", "z"], lambda m: m.get("tag") in ("x", "z")),
    (FilterOperator.NIN, ["x", "z"], lambda m: m.get("tag") not in ("x", "z")),
    (FilterOperator.IS_EMPTY, None, lambda m: m.get("tag") in (None, "")),
])
def test_each_operator_selects_what_the_reference_does(small: PolyvecVectorStore,
                                                      op: FilterOperator, value: Any,
                                                      keep: Any) -> None:
    key = "tag" if keep is not None else "n"
    if keep is None:
        import operator

        cmp = {FilterOperator.GT: operator.gt, FilterOperator.GTE: operator.ge,
               FilterOperator.LT: operator.lt, FilterOperator.LTE: operator.le}[op]
        keep = lambda m: cmp(m["n"], value)  # noqa: E731
    flt = MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=op)])
    assert {n.node_id for n in small.get_nodes(filters=flt)} == \
        {k for k, m in META.items() if keep(m)}
    assert set(_query(small, filters=flt)) == {k for k, m in META.items() if keep(m)}


def test_unsupported_operators_and_modes_are_refused(small: PolyvecVectorStore) -> None:
    for op in (FilterOperator.CONTAINS, FilterOperator.TEXT_MATCH, FilterOperator.ANY):
        flt = MetadataFilters(filters=[MetadataFilter(key="tag", value="x", operator=op)])
        with pytest.raises(InvalidArgument, match=op.value):
            _query(small, filters=flt)
    with pytest.raises(InvalidArgument, match="sparse"):
        small.query(VectorStoreQuery(query_embedding=EMB["a1"],
                                     mode=VectorStoreQueryMode.SPARSE))
    with pytest.raises(InvalidArgument, match="embedding"):
        small.add([_node("z", "no vector", "doc-z", {})])
    assert len(small.client) == len(META)


def test_add_delete_get_and_reopen(small: PolyvecVectorStore, tmp_path: Path) -> None:
    assert _query(small, k=1) == ["a1"]
    assert _query(small, doc_ids=["doc-c"]) == [k for k in _query(small) if k[0] == "c"]
    assert set(_query(small, node_ids=["b1", "c2"])) == {"b1", "c2"}
    assert _query(small, node_ids=[]) == _query(small)  # LlamaIndex's "no restriction"
    assert small.get_nodes(node_ids=[]) == []
    small.delete("doc-a")  # every node of that source document
    assert set(small.client.find()) == {"b1", "c1", "c2", "c3", "d1"}
    assert [n.get_content() for n in small.get_nodes(node_ids=["c3", "c1", "zz"])] == \
        ["text c1", "text c3"]  # insertion order
    small.add([_node("c1", "text c1, changed", "doc-c", {"n": 40}, EMB["c1"])])  # upsert
    small.delete_nodes(filters=MetadataFilters(filters=[
        MetadataFilter(key="n", value=5, operator=FilterOperator.LTE)]))
    assert set(small.client.find()) == {"c1", "c3", "d1"}
    small.close()
    again = PolyvecVectorStore(path=tmp_path / "db", collection_name="nodes")
    nodes = again.get_nodes()
    assert [(n.node_id, n.get_content(), n.metadata, n.ref_doc_id) for n in nodes] == [
        ("c3", "text c3", {"n": 6, "tag": "z"}, "doc-c"),
        ("d1", "text d1", {"n": 7, "tag": ""}, "doc-d"),
        ("c1", "text c1, changed", {"n": 40}, "doc-c")]
    again.clear()
    assert again.get_nodes() == [] and again.query(VectorStoreQuery(
        query_embedding=EMB["a1"], similarity_top_k=3)).ids == []
    again.close()
    with pytest.raises(InvalidArgument, match="exactly one"):
        PolyvecVectorStore()
    pv.connect(tmp_path / "other").create_collection("llamaindex", {"dense": pv.Dense(8)})
    with pytest.raises(InvalidArgument, match="no vector field"):
        PolyvecVectorStore(path=tmp_path / "other")
