"""End-to-end tests of the ``polyvec`` command line, run as a real subprocess.

The Python API is the oracle: what the CLI prints with ``--json`` must equal what the API answers
on the same folder. Each subprocess costs a fraction of a second, so steps are combined.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec as pv
from polyvec.cli import main

SRC = str(Path(pv.__file__).resolve().parents[1])
N, DIM = 60, 8


def run(*args: str, db: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m polyvec.cli`` with the database given by ``$POLYVEC_DB``."""
    env = {**os.environ, "PYTHONPATH": SRC, "POLYVEC_DB": str(db)}
    proc = subprocess.run([sys.executable, "-m", "polyvec.cli", *args], env=env, text=True,
                          capture_output=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    return proc


def run_json(*args: str, db: Path) -> Any:
    return json.loads(run(*args, "--json", db=db).stdout)


def as_json(res: pv.SearchResult) -> dict[str, Any]:
    """The API's answer in the CLI's JSON form: empty slots (None, -inf) become null."""
    scores = np.where(np.isfinite(res.scores), res.scores, np.nan).tolist()
    nulls = json.loads(json.dumps(scores).replace("NaN", "null"))
    return {"ids": res.ids.tolist(), "scores": nulls, "info": res.info}


def assert_user_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-files")
    rng = np.random.default_rng(0)
    np.save(d / "ids.npy", np.arange(N))
    np.save(d / "vecs.npy", rng.standard_normal((N, DIM)).astype(np.float32))
    np.save(d / "clash_ids.npy", np.r_[np.arange(N, 2 * N - 1), 0])  # only the last one exists
    np.save(d / "bad_dim.npy", rng.standard_normal((N, DIM + 1)).astype(np.float32))
    np.save(d / "q.npy", rng.standard_normal(DIM))
    np.save(d / "qs.npy", rng.standard_normal((3, DIM)).astype(np.float32))
    with open(d / "payloads.jsonl", "w") as f:
        for i in range(N):
            f.write(json.dumps({"lang": ["en", "fr", "de"][i % 3], "year": 2000 + i}) + "\n")
    with open(d / "records.jsonl", "w") as f:
        for i in range(20):
            tokens = rng.standard_normal((1 + i % 4, 4)).tolist()
            f.write(json.dumps({"id": f"doc{i}", "payload": {"i": i},
                                "vectors": {"d": rng.standard_normal(4).tolist(),
                                            "tok": tokens}}) + "\n")
    return d


def test_end_to_end_matches_the_python_api(files: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    run("create", "docs", "--dense", f"emb:{DIM}", "--indexed", "lang", "--segment-rows", "25",
        db=db)
    added = run_json("add", "docs", "--ids", str(files / "ids.npy"),
                     "--vectors", f"emb={files / 'vecs.npy'}",
                     "--payloads", str(files / "payloads.jsonl"), "--batch-size", "16", db=db)
    assert added == {"written": N, "upsert": False, "count": N}

    flt = {"lang": "fr", "year": {"$gte": 2010}}
    single = run_json("search", "docs", "--query", str(files / "q.npy"), "-k", "5", db=db)
    batch = run_json("search", "docs", "--query", str(files / "qs.npy"), "-k", "40",
                     "--filter", json.dumps(flt), db=db)
    got = run_json("get", "docs", "3", "999", "--with-vectors", "--int-ids", db=db)
    with pv.connect(db) as api:
        coll = api.get_collection("docs")
        assert single == as_json(coll.search(np.load(files / "q.npy"), k=5))
        want = coll.search(np.load(files / "qs.npy"), k=40, filter=flt)
        assert batch == as_json(want)
        assert batch["ids"][0][-1] is None  # 17 items match; the rest are empty slots
        (item,) = coll.get([3])
        assert item is not None
        assert got == [{"id": 3, "payload": {"lang": "en", "year": 2003},
                        "vectors": {"emb": item.vectors["emb"].tolist()}}, None]

    assert run_json("delete", "docs", "3", "4", "999", "--int-ids", db=db) == {"deleted": 2}
    compacted = run_json("compact", "docs", db=db)
    assert compacted["count"] == N - 2 and compacted["growing_rows"] == 0
    listing = run_json("info", db=db)
    assert listing["collections"] == [{"name": "docs", "count": N - 2}]
    text = run("search", "docs", "--query-json", json.dumps([1.0] + [0.0] * (DIM - 1)),
               "-k", "3", "--filter", '{"lang": "de"}', db=db).stdout
    with pv.connect(db) as api:
        coll = api.get_collection("docs")
        assert coll.info() == run_json("info", "docs", db=db)
        hits = coll.search(np.eye(DIM)[0], k=3, filter={"lang": "de"})
    rows = text.splitlines()
    assert rows[0].split() == ["rank", "id", "score", "payload"] and len(rows) == 4
    for row, key in zip(rows[1:], hits.ids, strict=True):
        assert row.split()[1] == str(key) and '"lang":"de"' in row


def test_user_errors_exit_2_and_change_nothing(files: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    run("create", "docs", "--dense", f"emb:{DIM}", db=db)
    run("add", "docs", "--ids", str(files / "ids.npy"), "--vectors",
        f"emb={files / 'vecs.npy'}", db=db)
    sample = ("get", "docs", "0", str(N - 1), "--with-vectors", "--int-ids")
    before = run_json(*sample, db=db)

    assert_user_error(run("add", "docs", "--ids", str(files / "ids.npy"), "--upsert",
                          "--vectors", f"emb={files / 'bad_dim.npy'}", db=db, ok=False),
                      f"({N}, {DIM})", f"({N}, {DIM + 1})")
    assert_user_error(run("add", "docs", "--ids", str(files / "clash_ids.npy"), "--batch-size",
                          "16", "--vectors", f"emb={files / 'vecs.npy'}", db=db, ok=False),
                      "id 0 already exists")  # found before the first batch is written
    assert_user_error(run("search", "docs", "--query", str(files / "q.npy"), "--filter",
                          "{lang: en}", db=db, ok=False), "--filter")
    assert_user_error(run("search", "docs", "--query", str(files / "q.npy"), "--filter",
                          '{"year": {"$around": 3}}', db=db, ok=False), "$around")
    assert_user_error(run("get", "nope", "1", db=db, ok=False), "nope")
    assert_user_error(run("add", "docs", "--ids", str(files / "missing.npy"), "--vectors",
                          f"emb={files / 'vecs.npy'}", db=db, ok=False), "missing.npy")
    assert_user_error(run("drop", "docs", db=db, ok=False), "--yes")
    usage = run("search", "docs", db=db, ok=False)  # argparse: no query given
    assert usage.returncode == 2 and "Traceback" not in usage.stderr

    assert run_json(*sample, db=db) == before
    assert run_json("info", "docs", db=db)["count"] == N


def test_multi_vector_collection_from_jsonl(files: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    run("create", "mv", "--dense", "d:4:dot:f16", "--multi", "tok:4", db=db)
    run("add", "mv", "--jsonl", str(files / "records.jsonl"), "--batch-size", "6", db=db)
    query = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]]  # one token set
    got = run_json("search", "mv", "--field", "tok", "--query-json", json.dumps(query),
                   "-k", "4", "--with-payloads", db=db)
    with pv.connect(db) as api:
        want = as_json(api.get_collection("mv").search(np.array(query), k=4, field="tok"))
    assert got.pop("payloads") == [{"i": int(str(i)[3:])} for i in want["ids"]]
    assert got == want
    run("drop", "mv", "--yes", db=db)
    with pv.connect(db) as api:
        assert api.list_collections() == []


def test_main_returns_the_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POLYVEC_DB", raising=False)
    assert main(["--db", str(tmp_path / "none"), "info"]) == 2
    assert capsys.readouterr().err.startswith("error: no database folder")
    assert main(["create", "x"]) == 2  # no vector field: refused before any folder is made
    assert not (tmp_path / "polyvec-data").exists()
    assert main(["get", "x"]) == 2  # argparse: no ID
    assert main(["--db", str(tmp_path), "create", "x", "--dense", "v:0"]) == 2
    assert "expected a positive int" in capsys.readouterr().err


def test_index_command_and_target_recall_search(tmp_path: Path) -> None:
    """`polyvec index` builds a calibrated index; `search --target-recall` uses it."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2500, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", x[:20] + 0.05)
    (tmp_path / "ids.txt").write_text("\n".join(map(str, range(2500))))
    db = tmp_path / "db"
    run("create", "c", "--dense", "v:16", "--segment-rows", "1200", db=db)
    run("add", "c", "--ids", str(tmp_path / "ids.txt"), "--vectors", f"v={tmp_path / 'x.npy'}",
        "--int-ids", db=db)
    info = run_json("index", "c", "v", "HNSW16,SQ8,Refine", "--sample-queries",
                    str(tmp_path / "q.npy"), db=db)
    # batches of 1,000 with segment_rows 1,200: one sealed segment of 2,000, 500 growing
    assert info["spec"] == "HNSW16,SQ8,Refine" and info["segments_indexed"] == 1
    body = run_json("search", "c", "--query", str(tmp_path / "q.npy"), "-k", "5",
                    "--target-recall", "0.95", db=db)
    assert body["info"]["strategy"] == "index" and body["info"]["recall_estimate"] >= 0.9
    assert [row[0] for row in body["ids"]] == list(range(20))
    assert_user_error(run("index", "c", "v", "HNSW0", db=db, ok=False), "HNSW0")


def test_sparse_and_bm25_fields_from_the_command_line(tmp_path: Path) -> None:
    """create --sparse/--bm25, add from JSONL records (texts, sparse objects), search by
    --text, by a sparse --query-json and by a hybrid one; answers equal the API's."""
    db = tmp_path / "db"
    run("create", "docs", "--bm25", "text:split_identifiers=true,k1=1.2", "--sparse",
        "w:100", "--dense", "v:2", db=db)
    records = [{"id": i, "vectors": {"text": t, "w": w, "v": v}, "payload": {"n": i}}
               for i, (t, w, v) in enumerate([
                   ("read a CSV with pandas.read_csv", {"3": 1.0}, [1.0, 0.0]),
                   ("plot a chart", {"indices": [3, 7], "values": [0.5, 2.0]}, [0.0, 1.0]),
                   ("the csv module", {"7": 1.0}, [1.0, 1.0])])]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    assert run_json("add", "docs", "--jsonl", str(path), "--int-ids", db=db)["written"] == 3
    coll = pv.connect(db).get_collection("docs")
    assert coll.schema.fields["text"] == pv.BM25(pv.lexical.Analyzer(split_identifiers=True),
                                                 k1=1.2)
    got = run_json("search", "docs", "--field", "text", "--text", "read_csv", db=db)
    assert got == as_json(coll.search("read_csv", 10, field="text"))
    got = run_json("search", "docs", "--field", "w", "--query-json",
                   '{"indices": [7], "values": [1.0]}', db=db)
    assert got["ids"][:2] == [1, 2]
    hybrid = '{"text": "csv", "w": {"indices": [3], "values": [1.0]}, "v": [1.0, 0.0]}'
    got = run_json("search", "docs", "--query-json", hybrid, "--fusion", "weighted",
                   "--weights", '{"text": 2}', "-k", "3", db=db)
    want = coll.search({"text": "csv", "w": ([3], [1.0]), "v": np.array([1.0, 0.0])}, 3,
                       fusion="weighted", weights={"text": 2})
    assert got["ids"] == want.ids.tolist()
    np.testing.assert_allclose(got["scores"], want.scores, rtol=1e-6)
    text = run("get", "docs", "1", "--int-ids", "--with-vectors", db=db).stdout
    assert "w sparse (2): {3: 0.5, 7: 2}" in text
    coll.close()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 9, "vectors": {"text": "", "w": {"3": 1.0},
                                                    "v": [1.0, 0.0]}}))
    assert_user_error(run("add", "docs", "--jsonl", str(bad), "--int-ids", db=db, ok=False),
                      "non-empty text")
    assert_user_error(run("create", "x", "--bm25", "t:stem=english", db=db, ok=False),
                      "unknown options")
    assert run_json("info", "docs", db=db)["count"] == 3


def test_a_u8_sparse_field_from_the_command_line(tmp_path: Path) -> None:
    db = tmp_path / "db"
    run("create", "q", "--sparse", "w:100:u8:4", db=db)
    assert pv.connect(db).get_collection("q").schema.fields["w"] == \
        pv.Sparse(100, "u8", max_weight=4.0)
    assert_user_error(run("create", "r", "--sparse", "w:100:u8", db=db, ok=False),
                      "max_weight")
