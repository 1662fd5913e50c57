"""Write the golden on-disk fixture of the current format: ``tests/fixtures/golden/v<N>/``.

Run it once per on-disk format version, with the polyvec that writes that version, and commit the
folder: ``python scripts/make_golden.py``. It never overwrites an existing version's folder (a
golden folder is frozen the day it is written). ``tests/test_golden.py`` opens every version's
folder with the current code and checks it answers exactly as ``expected.json`` recorded.

The collection holds every field kind and dtype, string and int ids, nested and unicode payloads,
deletes and upserts, two sealed segments with an HNSW index, and rows still in the growing segment
(from format 5 on, in two growing generations: some were added while a background seal ran).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

import polyvec as pv
from polyvec.engine import hooks
from polyvec.storage.catalog import FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "golden"
N, SEGMENT_ROWS = 2_600, 1_200
SECTIONS = ["python", "doc", "net", "ünïcødé ✓"]


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def items(rng: np.random.Generator, lo: int, hi: int) -> tuple[list, dict, list]:
    ids: list[int | str] = [f"doc-{i}" if i % 3 else i for i in range(lo, hi)]
    n = hi - lo
    vectors = {
        "dense": unit(rng, n, 16),
        "half": (rng.standard_normal((n, 8)) * 3).astype(np.float16),
        "tokens": [unit(rng, int(rng.integers(1, 5)), 8) for _ in range(n)],
    }
    payloads = [{"section": SECTIONS[i % 4], "meta": {"year": 2000 + i % 25, "tags": [i % 5]},
                 "text": f"item {i} — ☃"} for i in range(lo, hi)]
    return ids, vectors, payloads


def queries(rng: np.random.Generator) -> dict[str, list]:
    return {"dense": unit(rng, 4, 16).tolist(),
            "half": (rng.standard_normal((4, 8)) * 3).astype(np.float32).tolist(),
            "tokens": [unit(rng, 3, 8).tolist() for _ in range(3)]}


def answers(col: pv.Collection, q: dict[str, list]) -> dict[str, object]:
    """Everything ``expected.json`` records; ``tests/test_golden.py`` recomputes it the same way."""

    def result(r: pv.SearchResult) -> dict[str, list]:
        return {"ids": np.asarray(r.ids).tolist(), "scores": np.asarray(r.scores).tolist()}

    out: dict[str, object] = {"len": len(col), "ids": sorted(map(str, col))}
    for field in ("dense", "half"):
        out[f"exact.{field}"] = result(col.search(np.array(q[field], np.float32), k=7,
                                                  field=field))
    out["exact.tokens"] = [result(col.search(np.array(t, np.float32), k=7, field="tokens"))
                           for t in q["tokens"]]
    flt = {"$and": [{"section": "python"}, {"meta.year": {"$gte": 2010}}]}
    out["filtered.dense"] = result(col.search(np.array(q["dense"], np.float32), k=7,
                                              field="dense", filter=flt))
    out["filtered.sql"] = result(col.search(np.array(q["dense"], np.float32), k=7,
                                            field="dense", filter={"meta.tags": 3}))
    out["indexed.dense"] = result(col.search(np.array(q["dense"], np.float32), k=7,
                                             field="dense", ef=64, oversample=4))
    got = col.get([0, "doc-1", "doc-2", 3, "missing", "doc-2000"])
    out["get"] = [None if it is None else {
        "id": it.id, "payload": it.payload,
        "vectors": {k: np.asarray(v, np.float64).tolist() for k, v in it.vectors.items()}}
        for it in got]
    return out


def main() -> None:
    folder = ROOT / f"v{FORMAT_VERSION}"
    if folder.exists():
        sys.exit(f"{folder} exists: golden folders are frozen; delete it by hand to rewrite")
    rng = np.random.default_rng(2026)
    db = pv.connect(folder / "db")
    col = db.create_collection(
        "golden", vectors={"dense": pv.Dense(16, metric="cosine"),
                           "half": pv.Dense(8, metric="l2", dtype="f16"),
                           "tokens": pv.Multi(8)},
        indexed=["section"], segment_rows=SEGMENT_ROWS)
    for lo in range(0, N, 400):
        col.add(*items(rng, lo, min(lo + 400, N)))
    col.delete([f"doc-{i}" for i in range(1, 300, 7)] + [0, 3, 6])
    col.upsert(*items(rng, 100, 130))  # new versions of 30 items, some already sealed
    col.create_index("dense", "HNSW16,SQ8,Refine")  # force-merges the sealed rows first
    # one more sealed (and indexed) segment, and growing rows; format 5: the seal runs in the
    # background, and 100 items added while it runs stay in the older growing generation
    late = np.random.default_rng(5)
    hooks.arm("seal.planned", lambda _: col.add(*items(late, N + 2_000, N + 2_100)))
    for lo in range(N, N + 1_600, 400):
        col.add(*items(rng, lo, lo + 400))
    col.wait_for_maintenance()
    hooks.disarm()
    col.add(*items(late, N + 2_100, N + 2_200))  # and some in the current one
    assert len(col._store.catalog.chunk_generations()) == 2
    q = queries(rng)
    expected = {"format_version": FORMAT_VERSION, "queries": q, "answers": answers(col, q)}
    info = col.info()
    assert len(info["segments"]) == 2 and info["growing_rows"] > 0, info
    db.close()
    for p in folder.rglob("*"):  # nothing transient in a frozen folder
        if p.name.endswith(("-wal", "-shm")):
            p.unlink()
    (folder / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False))
    shutil.rmtree(folder / "db" / "golden" / "__pycache__", ignore_errors=True)
    print(f"wrote {folder} ({sum(p.stat().st_size for p in folder.rglob('*') if p.is_file())} B)")


if __name__ == "__main__":
    main()
