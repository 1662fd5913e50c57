"""The commit stamp: readers skip ``PRAGMA data_version`` while no commit finished, and still
see every commit of another process at once (stamped) or within ``FULL_CHECK_S`` (a writer
killed between its COMMIT and the stamp)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import polyvec
from polyvec.storage import stamp as stamp_module
from polyvec.storage.stamp import STAMP_FILE, CommitStamp

WRITE = """
import sys, numpy as np, polyvec
c = polyvec.connect(sys.argv[1]).get_collection("c")
c.add(ids=[sys.argv[2]], vectors=np.ones((1, 4), np.float32))
"""


def _coll(folder: Path) -> polyvec.Collection:
    db = polyvec.connect(folder)
    return db.create_collection("c", vectors={"v": polyvec.Dense(4, metric="l2")})


def _write(folder: Path, key: str) -> None:
    subprocess.run([sys.executable, "-c", WRITE, str(folder), key], check=True)


def test_reader_skips_sqlite_until_another_process_commits(tmp_path: Path,
                                                           monkeypatch) -> None:
    coll = _coll(tmp_path)
    coll.add(ids=["a"], vectors=np.zeros((1, 4), np.float32))
    tidying = getattr(coll._store, "tidying", None)
    if tidying is not None:  # the open's orphan sweep asks SQLite once, whenever it runs
        tidying.join(60)
    cat = coll._store.catalog
    asked = []
    real = cat.data_version
    monkeypatch.setattr(stamp_module, "FULL_CHECK_S", 60.0)
    monkeypatch.setattr(cat, "data_version", lambda: asked.append(1) or real())
    q = np.zeros(4, np.float32)
    coll.search(q, k=5)
    n = len(asked)
    for _ in range(20):
        coll.search(q, k=5)
    assert len(asked) == n  # the stamp answered: no PRAGMA per search
    _write(tmp_path, "b")  # another process commits: the very next search sees it
    assert set(coll.search(q, k=5).ids.tolist()) - {None} == {"a", "b"}
    assert len(asked) > n


def test_a_commit_without_a_stamp_is_seen_within_the_full_check_interval(
        tmp_path: Path, monkeypatch) -> None:
    coll = _coll(tmp_path)
    coll.add(ids=["a"], vectors=np.zeros((1, 4), np.float32))
    q = np.zeros(4, np.float32)
    coll.search(q, k=5)
    before = (tmp_path / "c" / STAMP_FILE).read_bytes()
    _write(tmp_path, "b")
    # as if that writer had died between its COMMIT and the stamp
    (tmp_path / "c" / STAMP_FILE).write_bytes(before)
    coll._store.catalog.stamp.checked(before)
    coll.search(q, k=5)  # may be stale here ...
    time.sleep(stamp_module.FULL_CHECK_S * 1.5)
    # ... but not after the interval
    assert set(coll.search(q, k=5).ids.tolist()) - {None} == {"a", "b"}


def test_a_folder_that_cannot_hold_the_stamp_checks_every_time(tmp_path: Path) -> None:
    s = CommitStamp.open(tmp_path / "missing-folder")
    assert s.read() is None and not s.unchanged()
    s.renew()  # a no-op
    s.checked(s.read())
    assert not s.unchanged()
