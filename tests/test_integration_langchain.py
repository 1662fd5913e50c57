"""PolyvecVectorStore against LangChain's own standard vector-store suite (``langchain-tests``,
sync and async), and what that suite leaves out: filters, scores against exact search,
maximal marginal relevance, reopening the folder, a store over a server's collection, and
the collection's own model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import extra

extra("langchain", "langchain_core", "langchain_tests")

from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

import polyvec as pv  # noqa: E402
from polyvec.errors import FilterError, InvalidArgument, InvalidPayload  # noqa: E402
from polyvec.integrations.langchain import PolyvecVectorStore, metadata_filter  # noqa: E402


class TestStandardSuite(VectorStoreIntegrationTests):
    """LangChain's suite as published: every test, sync and async."""

    @pytest.fixture()
    def vectorstore(self, tmp_path: Path) -> Iterator[PolyvecVectorStore]:
        store = PolyvecVectorStore(self.get_embeddings(), path=tmp_path / "db")
        try:
            yield store
        finally:
            store.close()


EMB = DeterministicFakeEmbedding(size=16)
WORDS = [f"{a} {b}" for a in ("red", "green", "blue", "black") for b in ("cat", "dog", "fox")]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[PolyvecVectorStore]:
    s = PolyvecVectorStore(EMB, path=tmp_path / "db", collection_name="docs")
    s.add_texts(WORDS, [{"color": w.split()[0], "n": i, "tags": {"pet": i % 3 != 2}}
                        for i, w in enumerate(WORDS)], ids=[f"d{i}" for i in range(len(WORDS))])
    yield s
    s.close()


def _exact(query: str, keep: list[int]) -> list[str]:
    x = np.asarray(EMB.embed_documents([WORDS[i] for i in keep]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = np.asarray(EMB.embed_query(query))
    return [f"d{keep[j]}" for j in np.argsort(-(x @ (q / np.linalg.norm(q))), kind="stable")]


def test_search_and_filters_match_exact_search(store: PolyvecVectorStore) -> None:
    every = list(range(len(WORDS)))
    got = store.similarity_search_with_score("blue fox", k=5)
    assert [d.id for d, _ in got] == _exact("blue fox", every)[:5]
    assert got[0][0].page_content == "blue fox" and got[0][1] == pytest.approx(1.0, abs=1e-5)
    assert got[0][0].metadata == {"color": "blue", "n": 8, "tags": {"pet": False}}
    cases = {  # a metadata filter, the items it keeps
        "red": ({"color": "red"}, [0, 1, 2]),
        "n>=9": ({"n": {"$gte": 9}}, [9, 10, 11]),
        "nested": ({"tags.pet": False}, [2, 5, 8, 11]),
        "or": ({"$or": [{"color": "green"}, {"n": {"$in": [0, 11]}}]}, [0, 3, 4, 5, 11]),
        "not": ({"$not": {"color": {"$in": ["red", "green", "blue"]}}}, [9, 10, 11]),
    }
    for name, (flt, keep) in cases.items():
        docs = store.similarity_search("blue fox", k=3, filter=flt)
        assert [d.id for d in docs] == _exact("blue fox", keep)[:3], name
    assert store.similarity_search("x", k=4, filter={"color": "white"}) == []
    with pytest.raises(FilterError):
        store.similarity_search("x", filter={"n": {"$near": 1}})
    assert metadata_filter({"$and": [{"a": 1}], "b.c": {"$ne": 2}}) == {
        "$and": [{"metadata.a": 1}], "metadata.b.c": {"$ne": 2}}


def test_relevance_scores_and_retriever(store: PolyvecVectorStore) -> None:
    scored = store.similarity_search_with_relevance_scores("green dog", k=12)
    assert scored[0][0].page_content == "green dog" and scored[0][1] == pytest.approx(1.0)
    assert all(0.0 <= s <= 1.0 for _, s in scored)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)
    retriever = store.as_retriever(search_kwargs={"k": 2, "filter": {"color": "black"}})
    assert [d.page_content for d in retriever.invoke("black cat")][0] == "black cat"
    assert all(d.metadata["color"] == "black" for d in retriever.invoke("red cat"))


def test_mmr_trades_relevance_for_diversity(tmp_path: Path) -> None:
    s = PolyvecVectorStore(EMB, path=tmp_path / "db")
    s.add_texts(["a", "b"], ids=["a", "b"])
    va, vb = np.asarray(EMB.embed_query("a")), np.asarray(EMB.embed_query("b"))
    # near copies of "a", and "b": relevance alone picks the copies, MMR also "b"
    rng = np.random.default_rng(0)
    copies = [va + 0.01 * rng.standard_normal(va.shape) for _ in range(4)]
    s.collection.add([f"a{i}" for i in range(4)], {"vector": np.stack(copies)},
                     [{"page_content": f"a{i}", "metadata": {}} for i in range(4)])
    q = list(0.9 * va / np.linalg.norm(va) + 0.3 * vb / np.linalg.norm(vb))
    plain = [d.id for d in s.similarity_search_by_vector(q, k=3)]
    mmr = [d.id for d in s.max_marginal_relevance_search_by_vector(q, k=3, fetch_k=6,
                                                                   lambda_mult=0.3)]
    assert "b" not in plain and "b" in mmr and mmr[0] == plain[0]
    assert [d.id for d in s.max_marginal_relevance_search_by_vector(
        q, k=3, fetch_k=6, lambda_mult=1.0)] == plain  # relevance only
    s.close()


def test_the_folder_is_the_store(tmp_path: Path) -> None:
    s = PolyvecVectorStore.from_texts(["alpha", "beta"], EMB, [{"k": 1}, {"k": 2}],
                                      ids=["1", "2"], path=tmp_path / "db")
    s.close()
    again = PolyvecVectorStore(EMB, path=tmp_path / "db")
    assert [d.page_content for d in again.get_by_ids(["2", "1", "3"])] == ["beta", "alpha"]
    assert again.similarity_search("beta", k=1)[0].metadata == {"k": 2}
    assert again.delete() and again.similarity_search("beta", k=1) == []
    again.close()
    with pytest.raises(InvalidArgument, match="exactly one"):
        PolyvecVectorStore(EMB)
    with pytest.raises(InvalidArgument, match="no vector field"):
        PolyvecVectorStore(EMB, path=tmp_path / "db", field="dense")


def test_bad_input_is_typed_and_keeps_nothing(tmp_path: Path) -> None:
    s = PolyvecVectorStore(EMB, path=tmp_path / "db")
    s.add_texts(["kept"], ids=["k"])
    with pytest.raises(InvalidPayload):  # a set in the metadata: not JSON
        s.add_texts(["x", "y"], [{"ok": 1}, {"bad": {1, 2}}], ids=["x", "y"])
    with pytest.raises(InvalidArgument, match="metadatas"):
        s.add_texts(["x"], [{}, {}])
    with pytest.raises(InvalidArgument, match="ids"):
        s.add_texts(["x"], ids=["1", "2"])
    assert [d.id for d in s.similarity_search("x", k=5)] == ["k"]
    s.close()


def test_the_collections_own_model_embeds(tmp_path: Path) -> None:
    """A polyvec embedder records its model on the field; a store opened later without an
    embedding embeds with that model."""
    from polyvec.embed import minilm

    s = PolyvecVectorStore(minilm(), path=tmp_path / "db")
    s.add_texts(["a free real-time strategy game", "library for parsing XML documents"],
                ids=["game", "xml"])
    s.close()
    reopened = PolyvecVectorStore(path=tmp_path / "db")
    assert reopened.similarity_search("an RTS game", k=1)[0].id == "game"
    reopened.close()
    empty = tmp_path / "empty"
    pv.connect(empty).create_collection("langchain", {"vector": pv.Dense(4)})
    with pytest.raises(InvalidArgument, match="records no model"):
        PolyvecVectorStore(path=empty)


def test_a_store_over_a_servers_collection(tmp_path: Path) -> None:
    """``collection=`` takes a client's collection: the same store over HTTP."""
    from conftest import Server

    from polyvec.client import Client

    folder = tmp_path / "db"
    pv.connect(folder).create_collection("docs", {"vector": pv.Dense(16)})
    server = Server(folder)
    try:
        with Client(server.url) as client:
            s = PolyvecVectorStore(EMB, collection=client.get_collection("docs"))
            ids = s.add_texts(WORDS, [{"n": i} for i in range(len(WORDS))])
            got = s.similarity_search("red fox", k=2, filter={"n": {"$lt": 6}})
            assert got[0].page_content == "red fox" and got[0].id == ids[2]
            assert len(s.get_by_ids(ids)) == len(WORDS)
            s.delete(ids[:4])
            assert len(client.get_collection("docs")) == len(WORDS) - 4
    finally:
        server.stop()
