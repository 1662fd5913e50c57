"""Incremental refresh: a reader catches up with another process's commits by what changed.

The test process writes; a long-lived reader process (``tests/helpers/refresh_reader.py``)
reports what it sees after each step. It must equal what the writer sees, and the reader's
mirror must catch up incrementally (new items, the delete log, new growing chunks, and the
segment tables when a seal or compaction moved them) - never by a full reload - unless the
delete log was pruned past its cursor.
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

import polyvec
from polyvec.storage import catalog as catalog_module

HERE = Path(__file__).resolve().parent
READER = HERE / "helpers" / "refresh_reader.py"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _batch(rng: np.random.Generator, ids: list[Any], version: int
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    vectors = {"d": rng.standard_normal((len(ids), 8)).astype(np.float32),
               "t": [rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32)
                     for _ in ids]}
    return vectors, [{"tag": ["a", "b"][hash(str(k)) % 2], "v": version, "k": str(k)}
                     for k in ids]


def _view(coll: Any) -> dict[str, Any]:
    q = np.linspace(-1, 1, 8).astype(np.float32)
    ids = sorted(coll, key=str)
    items = coll.get(ids)
    return {"ids": [[type(k).__name__, k] for k in ids],
            "payloads": [it.payload for it in items],
            "vectors": [it.vectors["d"].tolist() for it in items],
            "top": [[type(k).__name__, k] for k in coll.search(q, k=5, field="d").ids.tolist()],
            "len": len(coll)}


def _make(folder: Path) -> Any:
    db = polyvec.connect(folder)
    coll = db.create_collection("c", vectors={"d": polyvec.Dense(8, metric="l2"),
                                              "t": polyvec.Multi(4, metric="dot")},
                                indexed=["tag"], segment_rows=30)
    return db, coll


def test_reader_process_catches_up_incrementally(tmp_path: Path) -> None:
    db, coll = _make(tmp_path / "db")
    rng = np.random.default_rng(5)
    coll.add(list(range(20)), *_batch(rng, list(range(20)), 0))
    proc = subprocess.Popen([sys.executable, str(READER), str(tmp_path / "db")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=_env())
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "READY"

        def check(step: str) -> dict[str, Any]:
            proc.stdin.write("check\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            seen = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
            want = _view(coll)
            for key in want:
                assert seen[key] == want[key], f"after {step}: {key} differs"
            assert seen["catch_ups"]["full"] == 1, f"after {step}: {seen['catch_ups']}"
            return seen

        check("open")
        steps: list[tuple[str, Any]] = [
            ("add one", lambda: coll.add(["x"], *_batch(rng, ["x"], 0))),
            ("add many (seals)", lambda: coll.add(list(range(20, 45)),
                                                  *_batch(rng, list(range(20, 45)), 0))),
            ("upsert", lambda: coll.upsert([3, 30, "x"], *_batch(rng, [3, 30, "x"], 1))),
            ("delete", lambda: coll.delete([4, 31, "nope"])),
            ("add", lambda: coll.add(["y", "z"], *_batch(rng, ["y", "z"], 0))),
            ("flush", coll.flush),
            ("delete sealed", lambda: coll.delete([5, 6, 7, 21])),
            ("compact", coll.compact),
            ("add after compact", lambda: coll.add([100, 101], *_batch(rng, [100, 101], 0))),
            ("upsert growing", lambda: coll.upsert([100], *_batch(rng, [100], 2))),
            ("delete all growing", lambda: coll.delete([100, 101])),
            ("flush empty", coll.flush),
        ]
        before = check("start")["catch_ups"]["incremental"]
        for step, fn in steps:
            fn()
            seen = check(step)
            assert seen["catch_ups"]["incremental"] > before, step
            before = seen["catch_ups"]["incremental"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
        db.close()


def test_pruned_delete_log_forces_a_full_reload(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    db, writer = _make(tmp_path / "db")
    rng = np.random.default_rng(6)
    writer.add(list(range(40)), *_batch(rng, list(range(40)), 0))
    reader = polyvec.connect(tmp_path / "db").get_collection("c")  # its own connection
    assert len(reader) == 40
    writer.delete([1, 2])
    assert len(reader) == 38 and reader._store.catch_ups == {"full": 1, "incremental": 1}
    monkeypatch.setattr(catalog_module, "DELETE_LOG_TAIL", 1)
    writer.delete([3, 4, 5])
    writer.add(list(range(50, 60)), *_batch(rng, list(range(50, 60)), 0))
    writer.flush()  # prunes the delete log to its last row: the reader's cursor is behind
    assert sorted(reader, key=str) == sorted(writer, key=str)
    assert reader._store.catch_ups["full"] == 2, reader._store.catch_ups
    writer.delete([50])
    assert 50 not in reader and len(reader) == len(writer)
    assert reader._store.catch_ups["full"] == 2, reader._store.catch_ups
    db.close()
