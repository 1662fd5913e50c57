"""Text in, text out with real models; fields remember their model; mismatches are errors."""

from __future__ import annotations

import numpy as np
import pytest

import polyvec as pv
from polyvec.errors import InvalidArgument, ModelMismatch, UnknownField

pytest.importorskip("onnxruntime", reason="needs the [models] extra")
pytest.importorskip("sentence_transformers", reason="needs the [models] extra")

from polyvec.embed import minilm, minilm_tokens  # noqa: E402

DOCS = [
    "A free real-time strategy game of ancient warfare",
    "Command-line utility to convert images between formats",
    "Python library for parsing and writing YAML files",
    "Fast, multi-threaded downloader for HTTP and FTP",
]


@pytest.fixture(scope="module")
def dense():
    return minilm("onnx")


@pytest.fixture(scope="module")
def tokens():
    return minilm_tokens(64, backend="onnx")


def test_add_texts_and_search_text(tmp_path, dense, tokens) -> None:
    db = pv.connect(tmp_path)
    coll = db.create_collection("docs", {"d": pv.Dense(384), "t": pv.Multi(64)},
                                embedders={"d": dense, "t": tokens})
    coll.add_texts(DOCS, ids=[1, 2, 3, 4], payloads=[{"n": i} for i in range(4)])
    for field in ("d", "t"):
        assert coll.search_text("yaml parser for python", k=1, field=field).ids.tolist() == [3]
        batch = coll.search_text(["strategy game", "download files over http"], k=1,
                                 field=field)
        assert batch.ids[:, 0].tolist() == [1, 4]
    assert coll.search_text("image conversion", k=1, field="d", filter={"n": {"$ne": 1}}
                            ).ids.tolist() != [2]
    # the stored vectors are exactly the embedder's output
    np.testing.assert_allclose(coll.get([2])[0].vectors["d"],
                               dense.embed_documents([DOCS[1]])[0], rtol=1e-6, atol=1e-6)
    assert coll.model_of("d") == dense.spec and coll.model_of("t") == tokens.spec
    with pytest.raises(InvalidArgument, match="list of str"):
        coll.add_texts("not a list", ids=[9])


def test_field_remembers_model_across_reopen_and_rejects_another(tmp_path, dense) -> None:
    db = pv.connect(tmp_path)
    coll = db.create_collection("docs", {"d": pv.Dense(384)}, embedders={"d": dense})
    coll.add_texts(DOCS, ids=["a", "b", "c", "d"])
    db.close()
    coll = pv.connect(tmp_path).get_collection("docs")
    assert coll.model_of("d") == dense.spec
    with pytest.raises(UnknownField, match="use_embedder"):
        coll.search_text("game", k=1)
    other = minilm("torch")  # same network, other weights precision: a different model spec
    assert other.spec != dense.spec
    with pytest.raises(ModelMismatch, match="onnx-int8"):
        coll.use_embedder("d", other)
    with pytest.raises(ModelMismatch, match="fp32"):
        coll.search_text("game", k=1, field="d", embedder=other)
    coll.use_embedder("d", dense)
    assert coll.search_text("game", k=1).ids.tolist() == ["a"]


def test_model_must_fit_the_field(tmp_path, dense, tokens) -> None:
    db = pv.connect(tmp_path)
    with pytest.raises(ModelMismatch, match="dim 128"):
        db.create_collection("x", {"d": pv.Dense(128)}, embedders={"d": dense})
    with pytest.raises(ModelMismatch, match="'tokens'"):
        db.create_collection("y", {"d": pv.Dense(64)}, embedders={"d": tokens})
    assert db.list_collections() == []
