"""Model upgrades: mapping kinds recover known maps, persistence, ModelMismatch, merged search
during a backfill, the switch, the compatibility report, and the real L3 ONNX embedder."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec as pv
from polyvec.errors import (
    CorruptFile,
    DimensionMismatch,
    InvalidArgument,
    MissingExtra,
    ModelMismatch,
)
from polyvec.models.adapter import fit_supervised, infonce_loss
from polyvec.models.mappings import LinearMap, fit_best, fit_kind, normalize
from polyvec.spec import ModelSpec

D = 16


def _orth(d: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0]


# -- mapping kinds against known ground-truth maps -------------------------------------------


def test_procrustes_recovers_a_rotation() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, D))
    r = _orth(D, 1)
    y = x @ r.T + 1e-3 * rng.standard_normal((400, D))
    m = fit_kind("procrustes", x, y)
    assert np.abs(m.W - r).max() < 0.01
    assert np.allclose(m.W @ m.W.T, np.eye(D), atol=1e-6)  # orthogonal


def test_procrustes_zero_pads_unequal_dims() -> None:
    rng = np.random.default_rng(1)
    for d_new, d_old in ((12, 16), (16, 12)):
        d = max(d_new, d_old)
        r = _orth(d, 2)
        x = rng.standard_normal((500, d_new))
        xp = np.hstack([x, np.zeros((500, d - d_new))])
        y = (xp @ r.T)[:, :d_old]
        m = fit_kind("procrustes", x, y)
        assert m.W.shape == (d_old, d_new)
        if d_new < d_old:  # y keeps every coordinate: the map is recovered exactly
            assert np.abs(m.W - r[:d_old, :d_new]).max() < 1e-6
        resid = np.abs(x @ m.W.T - y).max()
        assert resid < (1e-6 if d_new < d_old else 1.0)


def test_ridge_recovers_a_general_affine_map() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((D, 24)) * 0.3
    b = rng.standard_normal(D) * 0.1
    x = rng.standard_normal((2000, 24))
    y = x @ a.T + b + 0.01 * rng.standard_normal((2000, D))
    m = fit_kind("ridge", x, y)
    assert np.abs(m.W - a).max() < 0.01
    assert np.abs(m.b - b).max() < 0.01
    assert m.params["alpha"] <= 1e-2  # little noise: the held-out choice is a small penalty


def test_lowrank_adapter_recovers_rotation_plus_low_rank() -> None:
    rng = np.random.default_rng(4)
    t = _orth(D, 5)
    lo, ro = rng.standard_normal((D, 3)) * 0.3, rng.standard_normal((3, D)) * 0.3
    truth = t @ (np.eye(D) + lo @ ro)
    x = rng.standard_normal((1500, D))
    y = x @ truth.T
    m = fit_kind("lowrank", x, y)
    assert np.abs(m.W - truth).max() < 0.02
    assert m.params["rank"] >= 3
    # Procrustes alone cannot represent it
    assert np.abs(fit_kind("procrustes", x, y).W - truth).max() > 0.05


def test_fit_best_picks_the_kind_that_fits() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((800, D))
    rot = fit_best(x, x @ _orth(D, 7).T)[0]
    assert rot.kind in ("procrustes", "lowrank", "ridge")
    assert np.abs(rot.W - _orth(D, 7)).max() < 0.02
    general = rng.standard_normal((D, D))
    m, scores = fit_best(x, x @ general.T + 0.01 * rng.standard_normal((800, D)))
    assert m.kind == "ridge" and scores["ridge"]["cosine"] > scores["procrustes"]["cosine"]
    with pytest.raises(InvalidArgument):
        fit_kind("nope", x, x)


def test_infonce_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(8)
    q, d = rng.standard_normal((6, 5)), rng.standard_normal((6, 4))
    w, b = rng.standard_normal((4, 5)), rng.standard_normal(4)
    loss, gw, gb = infonce_loss(w, b, q, d, 0.5)
    eps = 1e-6
    num = np.zeros_like(w)
    for i in range(4):
        for j in range(5):
            w2 = w.copy()
            w2[i, j] += eps
            num[i, j] = (infonce_loss(w2, b, q, d, 0.5)[0] - loss) / eps
    assert np.abs(num - gw).max() < 1e-4
    b2 = b.copy()
    b2[0] += eps
    assert abs((infonce_loss(w, b2, q, d, 0.5)[0] - loss) / eps - gb[0]) < 1e-4


def test_supervised_adapter_learns_the_query_map() -> None:
    """Queries live in a space that a known map ``A`` sends next to their documents; the
    adapter starts from a map fitted on item pairs that ignores the query shift and must
    recover retrieval (held-out queries, all documents as candidates)."""
    rng = np.random.default_rng(9)
    n = 1500
    docs_new = normalize(rng.standard_normal((n, D)))
    r = _orth(D, 10)
    docs_old = docs_new @ r.T                           # items: old = R new
    shift = np.eye(D) + 1.0 * rng.standard_normal((D, D)) / np.sqrt(D)
    q_new = normalize(docs_new @ np.linalg.inv(shift).T + 0.05 * rng.standard_normal((n, D)))
    init = fit_kind("procrustes", docs_new, docs_old)
    train, test = np.arange(1200), np.arange(1200, n)

    def mrr(m: LinearMap) -> float:
        s = m.transform(q_new[test]) @ docs_old.T
        rank = (s > s[np.arange(len(test)), test][:, None]).sum(1)
        return float(np.mean(np.where(rank < 10, 1 / (rank + 1), 0)))

    m = fit_supervised(init, q_new[train], docs_old[train], seed=0, lr=1e-2)
    again = fit_supervised(init, q_new[train], docs_old[train], seed=0, lr=1e-2)
    assert m.kind == "supervised" and np.array_equal(m.W, again.W)  # deterministic
    assert m.params["epochs"] > 0
    assert mrr(init) < 0.4 and mrr(m) > 0.9


# -- a collection with a toy model pair ------------------------------------------------------


class Toy:
    """A deterministic 'new model': texts -> fixed vectors (a known rotation of the old)."""

    def __init__(self, lut: dict[str, np.ndarray], name: str = "toy-new") -> None:
        self.spec = ModelSpec(name, revision="1", dim=D)
        self.lut = lut
        self.calls = 0

    def embed_documents(self, texts: list[str], *, batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        self.calls += len(texts)
        return np.stack([self.lut[t] for t in texts]).astype(np.float32)

    embed_queries = embed_documents


@pytest.fixture()
def toy(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    n = 240
    old = normalize(rng.standard_normal((n, D)))
    r = _orth(D, 12)
    new = normalize(old @ r + 0.05 * rng.standard_normal((n, D)))
    texts = [f"item {i}" for i in range(n)]
    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", {"emb": pv.Dense(D)}, segment_rows=100)
    coll.register_model("emb", ModelSpec("toy-old", revision="1", dim=D), name="v1")
    coll.add(list(range(n)), old, [{"text": t} for t in texts])
    emb = Toy(dict(zip(texts, new, strict=True)))
    coll.register_model("emb", emb, name="v2")
    return {"db": db, "coll": coll, "old": old, "new": new, "texts": texts, "emb": emb,
            "path": tmp_path / "db"}


def test_model_mismatch_without_a_mapping(toy: dict[str, Any]) -> None:
    coll = toy["coll"]
    with pytest.raises(ModelMismatch, match=r"fit_mapping\('emb', from_model='v2'"):
        coll.search(toy["new"][0], 5, model="v2")
    with pytest.raises(ModelMismatch, match="fit_mapping"):
        coll.search_text("item 3", 5, field="emb", model="v2")
    with pytest.raises(ModelMismatch, match="no model version 'v3'"):
        coll.search(toy["new"][0], 5, model="v3")
    with pytest.raises(ModelMismatch, match="fit_mapping"):
        coll.backfill("emb", "v2", progress=False)
    # the field's own version searches natively
    assert coll.search(toy["old"][0], 1, model="v1").ids.tolist() == [0]
    # k is capped at the live items there too (10**9 slots would take the machine)
    hits = coll.search(toy["old"][:2], 10**9, model="v1")
    assert hits.ids.shape == (2, len(coll))


def test_register_model_rules(toy: dict[str, Any]) -> None:
    coll = toy["coll"]
    with pytest.raises(ModelMismatch, match="already"):
        coll.register_model("emb", ModelSpec("other", revision="1", dim=D), name="v2")
    coll.register_model("emb", toy["emb"], name="v2")  # idempotent
    info = coll.model_versions("emb")
    assert info["current"] == "v1" and set(info["versions"]) == {"v1", "v2"}


def test_fit_mapping_persists_and_reopens(toy: dict[str, Any]) -> None:
    coll, new = toy["coll"], toy["new"]
    rec = coll.fit_mapping("emb", "v2", "v1", sample=200, kind="ridge")
    assert rec["kind"] == "ridge" and rec["version"] == 1 and rec["pairs"] == 200
    assert toy["emb"].calls == 200  # only the new model embedded; the old side is stored
    q = new[:20]
    first = coll.search(q, 5, model="v2")
    assert first.info["route"] == "mapped" and first.info["mapping"]["version"] == 1
    # mapped queries find their own item
    assert np.mean(first.ids[:, 0] == np.arange(20)) > 0.9
    coll.close()
    db = pv.connect(toy["path"])
    again = db.get_collection("c")
    second = again.search(q, 5, model="v2")
    assert np.array_equal(first.ids, second.ids)
    assert np.allclose(first.scores, second.scores)
    again.register_model("emb", toy["emb"], name="v2")  # each process attaches its embedder
    rec2 = again.fit_mapping("emb", "v2", "v1", sample=200, kind="procrustes")
    assert rec2["version"] == 2
    con = sqlite3.connect(toy["path"] / "c" / "catalog.sqlite")
    owners = {o for (o,) in con.execute("SELECT DISTINCT owner FROM model_arrays")}
    assert owners == {"map:emb:v2->v1:2"}  # old versions' arrays are dropped
    # flip a byte of a stored array: opening the mapping names the corruption
    data = bytearray(con.execute("SELECT data FROM model_arrays WHERE name='W'").fetchone()[0])
    data[5] ^= 0xFF
    con.execute("UPDATE model_arrays SET data=? WHERE name='W'", (bytes(data),))
    con.commit()
    con.close()
    third = pv.connect(toy["path"]).get_collection("c")
    with pytest.raises(CorruptFile, match="checksum"):
        third.search(q, 5, model="v2")


def test_fit_mapping_from_explicit_texts_and_pairs(toy: dict[str, Any]) -> None:
    coll = toy["coll"]
    ids = list(range(50))
    rec = coll.fit_mapping("emb", "v2", "v1", ids=ids,
                           texts={i: toy["texts"][i] for i in ids}, text_key="missing")
    assert rec["pairs"] == 50
    with pytest.raises(InvalidArgument, match="payload key 'nope'"):
        coll.fit_mapping("emb", "v2", "v1", sample=20, text_key="nope")
    rec = coll.fit_mapping("emb", "v2", "v1", pairs=(toy["new"][:100], toy["old"][:100]))
    assert rec["pairs"] == 100 and rec["version"] == 2


def test_supervised_mapping_in_a_collection(toy: dict[str, Any]) -> None:
    coll = toy["coll"]
    rel = [(toy["texts"][i], i) for i in range(120)]
    rec = coll.fit_mapping("emb", "v2", "v1", sample=200, relevance=rel)
    assert rec["kind"] == "supervised" and rec["params"]["pairs"] == 120
    r = coll.search_text(toy["texts"][150], 3, field="emb", model="v2")
    assert r.ids[0] == 150


def test_backfill_merged_search_and_switch(toy: dict[str, Any]) -> None:
    coll, old, new = toy["coll"], toy["old"], toy["new"]
    coll.fit_mapping("emb", "v2", "v1", sample=200)
    coll.flush()  # some items sealed, some growing
    coll.add([1000], old[:1], [{"text": "item 0"}])
    q = new[:30]
    st = coll.backfill("emb", "v2", batch_size=40, limit=100, progress=False)
    assert st["embedded"] == 100 and not st["switched"]
    status = coll.backfill_status("emb")
    assert status is not None and status["migrated"] == 100 and status["total"] == 241
    half = coll.search(q, 5, model="v2")
    assert half.info["route"] == "merged" and half.info["backfill"]["migrated"] == 100
    assert all(x is not None for x in half.ids.ravel())
    # a filter applies to both parts
    filt = coll.search(q, 5, model="v2", filter={"text": "item 7"})
    assert filt.ids[:, 0].tolist() == [7] * 30
    # writes during the backfill are picked up; a deleted item leaves no trace
    coll.upsert([5], old[5:6], [{"text": "item 5"}])
    coll.delete([6])
    st = coll.backfill("emb", "v2", batch_size=40, switch=False, progress=False)
    full = coll.search(q, 5, model="v2")
    keys = [i for i in range(240) if i != 6] + [1000]
    vecs = np.stack([new[k] if k != 1000 else new[0] for k in keys])
    exact = normalize(q) @ vecs.T  # all migrated: the merged search is the exact new-space one
    got = np.array([[keys.index(k) for k in row] for row in full.ids])
    assert np.allclose(np.sort(exact, 1)[:, ::-1][:, :5], full.scores, atol=1e-5)
    assert np.allclose(np.take_along_axis(exact, got, 1), full.scores, atol=1e-5)
    st = coll.backfill("emb", "v2", batch_size=40, progress=False)
    assert st["switched"]
    assert coll.model_of("emb") == toy["emb"].spec
    assert coll.model_versions("emb")["current"] == "v2"
    native = coll.search(q, 5, model="v2")
    assert native.info["route"] == "native" and np.array_equal(native.ids, full.ids)
    items = coll.get(keys)
    for k, it in zip(keys, items, strict=True):
        assert it is not None
        assert np.allclose(it.vectors["emb"], new[0] if k == 1000 else new[k], atol=1e-6)
    reopened = pv.connect(toy["path"]).get_collection("c")
    assert reopened.model_versions("emb")["backfill"] is None
    assert np.array_equal(reopened.search(q, 5, model="v2").ids, native.ids)
    with pytest.raises(ModelMismatch):  # the old model's queries now need a v1->v2 map
        reopened.search(old[0], 5, model="v1")


def test_an_embedder_attached_before_a_switch_elsewhere_is_refused(
        toy: dict[str, Any]) -> None:
    """Another handle's backfill switches the field to the new model: the old model's
    embedder attached here must not embed this handle's texts into the new space."""
    other = pv.connect(toy["path"]).get_collection("c")
    other.use_embedder("emb", Toy(dict(zip(toy["texts"], toy["old"], strict=True)), "toy-old"))
    assert other.search_text("item 3", 1).ids.tolist() == [3]
    toy["coll"].fit_mapping("emb", "v2", "v1", sample=200)
    assert toy["coll"].backfill("emb", "v2", batch_size=100, progress=False)["switched"]
    with pytest.raises(ModelMismatch, match="switched to it by a backfill"):
        other.search_text("item 3", 1)
    with pytest.raises(ModelMismatch, match="switched to it by a backfill"):
        other.add_texts(["item 3"], [5000])
    assert len(other) == 240
    other.use_embedder("emb", toy["emb"])  # the new model's: allowed now, and right
    assert other.search_text("item 3", 1).ids.tolist() == [3]


class Gated(Toy):
    """The toy model, embedding one batch per ``gate.release()``."""

    def __init__(self, toy: Toy) -> None:
        super().__init__(toy.lut, toy.spec.name)
        self.gate = threading.Semaphore(0)

    def embed_documents(self, texts: list[str], *, batch_size: int = 32,
                        progress: bool = False) -> np.ndarray:
        assert self.gate.acquire(timeout=30), "the test never released this batch"
        return super().embed_documents(texts)


def test_background_backfill_serves_stops_and_resumes(toy: dict[str, Any]) -> None:
    coll, new = toy["coll"], toy["new"]
    with pytest.raises(ModelMismatch, match="fit_mapping"):  # checked before the thread starts
        coll.backfill("emb", "v2", background=True, progress=False)
    coll.fit_mapping("emb", "v2", "v1", sample=200)
    gated = Gated(toy["emb"])
    job = coll.backfill("emb", "v2", batch_size=20, embedder=gated, background=True,
                        progress=False)
    assert job.running
    for _ in range(3):
        gated.gate.release()
    deadline = time.monotonic() + 30
    routes = set()
    while (job.status() or {}).get("migrated", 0) < 60:
        assert time.monotonic() < deadline
        res = coll.search(new[:4], 5, model="v2")  # this handle serves meanwhile
        assert all(x is not None for x in res.ids.ravel())
        routes.add(res.info["route"])
    assert routes <= {"mapped", "merged"} and job.running
    job.stop()
    gated.gate.release()  # the batch in flight completes; then the job ends
    st = job.wait(timeout=30)
    assert not st["switched"] and st["embedded"] == 80 and not job.running
    assert coll.backfill_status("emb")["migrated"] == 80
    assert coll.search(new[:4], 5, model="v2").info["route"] == "merged"
    # resumed: the rest, then the switch, seen by this handle
    gated.gate.release(20)
    st = coll.backfill("emb", "v2", batch_size=20, embedder=gated, background=True,
                       progress=False).wait(timeout=60)
    assert st["switched"] and st["embedded"] == 160
    assert gated.calls == 240  # nothing embedded twice
    native = coll.search(new[:4], 5, model="v2")
    assert native.info["route"] == "native" and native.ids[:, 0].tolist() == [0, 1, 2, 3]
    assert np.allclose(coll.get([7])[0].vectors["emb"], new[7], atol=1e-6)


def test_background_backfill_error_reaches_wait(toy: dict[str, Any]) -> None:
    coll = toy["coll"]
    coll.fit_mapping("emb", "v2", "v1", sample=200)
    bad = Toy({t: np.ones(D + 1, np.float32) for t in toy["texts"]})
    bad.spec = toy["emb"].spec
    job = coll.backfill("emb", "v2", embedder=bad, background=True, progress=False)
    with pytest.raises(DimensionMismatch, match="backfill embedder"):
        job.wait(timeout=30)
    assert coll.model_versions("emb")["current"] == "v1"
    assert coll.backfill_status("emb")["migrated"] == 0


def test_compatibility_report_and_cli(toy: dict[str, Any], tmp_path: Path) -> None:
    coll = toy["coll"]
    qrels = [{i} for i in range(60)]
    rep = coll.compatibility_report(
        "emb", "v2", "v1", qrels=qrels,
        query_vectors={"v2": toy["new"][:60], "v1": toy["old"][:60]},
        sample_sizes=(20, 100), relevance=[(toy["texts"][i], i) for i in range(100, 200)])
    d = rep.to_dict()
    methods = [r["method"] for r in d["rows"]]
    assert methods[:2] == ["old->old", "new->new (full re-index)"]
    assert methods.count("new->old mapped") == 6 and methods[-1] == "new->old supervised"
    assert d["rows"][0]["mrr@10"] == 1.0 and all("compatible" in r for r in d["rows"][2:])
    json.dumps(d)
    assert "| new->old mapped | ridge | 100 |" in rep.to_markdown()
    if find_spec("matplotlib") is not None:  # the [eval] extra; tests/test_report.py checks
        assert rep.plot(tmp_path / "p.png").stat().st_size > 1000  # the error without it
    else:
        with pytest.raises(MissingExtra, match="polyvec\\[eval\\]"):
            rep.plot(tmp_path / "p.png")

    from polyvec.cli import main

    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps({"text": toy["texts"][i], "relevant": [i]}) + "\n"
                             for i in range(10)))
    coll.close()
    # the CLI needs a built-in embedder for v2: toy models have none, so it says so
    assert main(["--db", str(toy["path"]), "compat", "c", "emb", "--queries", str(qfile),
                 "--out", str(tmp_path / "out")]) == 2


@pytest.mark.skipif(find_spec("onnxruntime") is None or find_spec("tokenizers") is None,
                    reason="needs onnxruntime and tokenizers ([models] extra)")
def test_paraphrase_l3_embedder_is_the_graphs_mean_pool() -> None:
    from polyvec.embed import paraphrase_minilm
    from polyvec.embed.paraphrase import _load

    try:
        emb = paraphrase_minilm()
        texts = ["a free real-time strategy game", "an RTS game of ancient warfare",
                 "library for parsing XML documents"]
        x = emb.embed_documents(texts)
    except pv.errors.MissingExtra as e:
        pytest.skip(str(e))
    assert x.shape == (3, 384) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2]
    session, tok = _load()
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc])
    mask = np.array([e.attention_mask for e in enc])
    pooled = session.run(["461"], {"input_ids": ids, "attention_mask": mask})[0]
    assert np.allclose(x, normalize(pooled), atol=1e-5)  # the export's own mean pooling
    assert np.allclose(emb.embed_queries(texts[:1])[0], x[0], atol=1e-5)


@pytest.mark.skipif(find_spec("onnxruntime") is None or find_spec("tokenizers") is None,
                    reason="needs onnxruntime and tokenizers ([models] extra)")
def test_cli_compat_with_a_real_new_model(tmp_path: Path) -> None:
    """v2 = paraphrase-MiniLM-L3 (a built-in embedder the CLI rebuilds from the spec); v1 = a
    rotation of it that no process can embed with (a retired model)."""
    from polyvec.cli import main
    from polyvec.embed import paraphrase_minilm

    try:
        emb = paraphrase_minilm()
        words = [f"package {w} for {t}" for w in ("tools", "library", "docs", "game", "server")
                 for t in ("python", "rust", "audio", "video", "fonts", "network")]
        fresh = emb.embed_documents(words)
    except pv.errors.MissingExtra as e:
        pytest.skip(str(e))
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((384, 384)))[0]
    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", {"emb": pv.Dense(384)})
    coll.register_model("emb", ModelSpec("retired", revision="1", dim=384), name="v1")
    coll.add(list(range(len(words))), normalize(fresh @ rot.T), [{"text": t} for t in words])
    coll.register_model("emb", emb.spec, name="v2")
    coll.close()
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps({"text": w, "relevant": [i]}) + "\n"
                             for i, w in enumerate(words[:10])))
    out = tmp_path / "out"
    assert main(["--db", str(tmp_path / "db"), "compat", "c", "emb", "--queries", str(qfile),
                 "--sample-sizes", "10,30", "--out", str(out)]) == 0
    report = json.loads((out / "compat-c-emb-v2-v1.json").read_text())
    rows = {(r["method"], r.get("kind"), r.get("pairs")): r for r in report["rows"]}
    assert rows[("new->new (full re-index)", None, None)]["mrr@10"] == 1.0
    # a rotation is recovered from 30 pairs: mapped queries find their documents
    assert rows[("new->old mapped", "procrustes", 30)]["mrr@10"] == 1.0
    assert any("old->old baseline skipped" in n for n in report["notes"])
    if find_spec("matplotlib") is not None:  # else the CLI notes that the plot needs [eval]
        assert (out / "compat-c-emb-v2-v1.png").stat().st_size > 1000
    else:
        assert not (out / "compat-c-emb-v2-v1.png").exists()
