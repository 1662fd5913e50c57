"""Seals in the background (polyvec.engine.maintenance): an add that fills the growing segment
returns before the seal, and everything stays exact and durable while it runs.

The seal is held at a hook point while it writes (no lock held but the folder's write lock),
and the test adds, deletes, upserts, gets and searches meanwhile, from this handle and from
another one; every answer is checked against exact search over the model.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import polyvec as pv
from polyvec.engine import hooks
from polyvec.errors import PolyvecWarning

DIM, SEG = 16, 400
SRC = Path(__file__).resolve().parents[1] / "src"


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _check(coll: pv.Collection, model: dict[int, np.ndarray], rng: np.random.Generator) -> None:
    """Exact top-10 of a few queries, and get, against the model."""
    ids = np.array(sorted(model))
    x = np.stack([model[i] for i in ids])
    q = _unit(rng, 5)
    res = coll.search(q, k=10)
    want = ids[np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]]
    assert [sorted(map(int, r)) for r in res.ids.tolist()] == \
        [sorted(map(int, r)) for r in want.tolist()]
    assert len(coll) == len(model)
    some = [int(i) for i in rng.choice(ids, 5, replace=False)]
    for item in coll.get(some):
        np.testing.assert_allclose(item.vectors["v"], model[item.id], atol=1e-6)


class Held:
    """A hook action that blocks the thread reaching the point until released."""

    def __init__(self) -> None:
        self.reached, self.release = threading.Event(), threading.Event()

    def __call__(self, _: str) -> None:
        if self.reached.is_set():  # the first to reach it only
            return
        self.reached.set()
        assert self.release.wait(30)


def test_adds_return_before_the_seal_and_everything_stays_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    db = pv.connect(tmp_path)
    coll = db.create_collection("c", {"v": pv.Dense(DIM)}, segment_rows=SEG)
    other = pv.connect(tmp_path).get_collection("c")  # another handle: reads only
    model: dict[int, np.ndarray] = {}

    def add(lo: int, n: int) -> None:
        x = _unit(rng, n)
        coll.add(list(range(lo, lo + n)), {"v": x})
        model.update(zip(range(lo, lo + n), x, strict=True))

    held = Held()
    with hooks.armed("segments.written", held):  # the seal's files are written: held there
        add(0, SEG)  # fills the growing segment: returns while the seal runs
        assert held.reached.wait(30)
        assert coll.info()["maintenance"]["sealing"]
        assert coll.info()["segments"] == []  # not committed yet
        rows = coll._store.growing["v"]._rows
        buffer = rows._buf
        add(SEG, 50)  # rows after the plan's last seq: room was reserved, nothing is copied
        assert rows._buf is buffer
        coll.delete([3, 5, SEG + 1])  # sealing rows and a new one
        for i in (3, 5, SEG + 1):
            del model[i]
        x = _unit(rng, 2)
        coll.upsert([7, SEG + 2], {"v": x})  # a sealing row replaced, and a new one
        model[7], model[SEG + 2] = x[0], x[1]
        _check(coll, model, rng)
        _check(other, model, rng)
        held.release.set()
        assert coll.wait_for_maintenance(30)
    info = coll.info()
    assert [s["rows"] for s in info["segments"]] == [SEG]  # what the plan took
    assert info["growing_rows"] == 52 and info["maintenance"]["seals"] == 1
    gens = coll._store.catalog.chunk_generations()
    assert gens and max(gens) < coll._store.cursor.generation  # left in the older file
    _check(coll, model, rng)
    _check(other, model, rng)
    db.close()
    other.close()
    coll = pv.connect(tmp_path).get_collection("c")
    _check(coll, model, rng)
    add(SEG + 50, SEG)  # the next seal takes the older generation's chunks too
    coll.wait_for_maintenance(30)
    assert coll._store.catalog.chunk_generations() == set()
    assert len(list((tmp_path / "c" / "growing").iterdir())) <= 1
    _check(coll, model, rng)


def test_a_flush_meanwhile_makes_the_background_plan_stale(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    coll = pv.connect(tmp_path).create_collection("c", {"v": pv.Dense(DIM)}, segment_rows=SEG)
    x = _unit(rng, SEG)
    held = Held()
    with hooks.armed("segments.written", held):
        coll.add(list(range(SEG)), {"v": x})
        assert held.reached.wait(30)
        # a synchronous seal of this handle (the write lock is shared within it): it seals
        # the same rows first
        store = coll._store
        with store.mutex:
            store.seal()
        held.release.set()
        coll.wait_for_maintenance(30)
    info = coll.info()
    assert [s["rows"] for s in info["segments"]] == [SEG]
    assert info["maintenance"]["stale"] == 1 and info["maintenance"]["seals"] == 0
    names = {p.name for p in (tmp_path / "c" / "segments").iterdir()}
    assert names == {s["name"] for s in info["segments"]}  # the stale plan's files are gone
    assert len(coll) == SEG


def test_a_failed_background_seal_warns_is_raised_once_and_loses_nothing(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    coll = pv.connect(tmp_path).create_collection("c", {"v": pv.Dense(DIM)}, segment_rows=SEG)
    x = _unit(rng, SEG)

    def fail(_: str) -> None:
        raise OSError(28, "No space left on device (injected)")

    with hooks.armed("segments.written", fail), pytest.warns(PolyvecWarning, match="failed"):
        coll.add(list(range(SEG)), {"v": x})
        with pytest.raises(OSError, match="injected"):
            coll.wait_for_maintenance(30)
    assert coll.wait_for_maintenance(30)  # raised once
    assert coll.info()["segments"] == [] and len(coll) == SEG
    assert list((tmp_path / "c" / "segments").iterdir()) == []  # its files removed
    coll.flush()  # seals now
    assert [s["rows"] for s in coll.info()["segments"]] == [SEG]
    model = dict(zip(range(SEG), x, strict=True))
    _check(coll, model, rng)


def test_close_and_process_exit_finish_the_seal_an_add_asked_for(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    db = pv.connect(tmp_path / "a")
    coll = db.create_collection("c", {"v": pv.Dense(DIM)}, segment_rows=SEG)
    coll.add(list(range(SEG)), {"v": _unit(rng, SEG)})
    coll.get([1, 2])  # a lock-free read: a reader connection, closed before the writer's
    db.close()
    assert not (tmp_path / "a" / "c" / "catalog.sqlite-wal").exists()  # checkpointed
    with pv.connect(tmp_path / "a") as again:
        assert [s["rows"] for s in again.get_collection("c").info()["segments"]] == [SEG]
    script = (
        "import sys, numpy as np, polyvec as pv\n"
        "c = pv.connect(sys.argv[1]).create_collection('c', {'v': pv.Dense(16)}, "
        "segment_rows=400)\n"
        "c.add(list(range(400)), {'v': np.ones((400, 16), np.float32)})\n")  # exits at once
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], check=True,
                   env={"PYTHONPATH": str(SRC)}, timeout=120)
    info = pv.connect(tmp_path / "b").get_collection("c").info()
    assert [s["rows"] for s in info["segments"]] == [SEG] and info["growing_rows"] == 0
