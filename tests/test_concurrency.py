"""Several processes on one collection: writers take turns, readers follow, nothing corrupts.

The child processes are ``tests/helpers/proc_worker.py`` commands.

(a) Two writer processes write at the same time (add / upsert / delete / flush / compact);
    both succeed and every write of both is there, exactly.
(b) While another process holds the collection's write lock (polyvec's ``flock``, or SQLite's
    own write lock), a writer with ``lock_timeout=0.5`` gets ``Locked`` from each kind of
    write within a bounded time, reads keep working, nothing changes; once the holder dies,
    writes go through.
(c) A long-lived reader process sees each write of another process as soon as it committed,
    without reopening (add, upsert, delete, flush, compact).
(d) Several reader processes search / get / list while a writer writes; every read sees
    whole batches (no partial add/upsert/delete) and valid results.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec
from polyvec.errors import Locked

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WORKER = HERE / "helpers" / "proc_worker.py"
sys.path.insert(0, str(HERE / "helpers"))

import proc_worker as pw  # noqa: E402
from durability_stream import diff_against_model  # noqa: E402

TIMEOUT = 60.0  # seconds any one wait on a child may take before the test fails


class Child:
    """A ``proc_worker.py`` process whose stdout lines are read by a thread (waits time out)."""

    def __init__(self, *args: str, stdin: bool = False) -> None:
        self.name = " ".join(args[:2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            text=True, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr = ""
        self._threads = [threading.Thread(target=self._pump, daemon=True),
                         threading.Thread(target=self._pump_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def readline(self, timeout: float = TIMEOUT) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child {self.name} said nothing in {timeout} s"
                                 ) from None
        if line is None:
            self.proc.wait(timeout=TIMEOUT)
            for t in self._threads:
                t.join(TIMEOUT)
            raise AssertionError(f"child {self.name} exited "
                                 f"({self.proc.returncode}):\n{self.stderr}")
        return line

    def expect(self, want: str) -> None:
        line = self.readline()
        assert line == want, (line, want)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, list[str]]:
        """Wait for exit; return the exit status and the remaining stdout lines."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        rc = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(TIMEOUT)
        rest = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        return rc, rest

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def close(self) -> None:
        """Make sure the process is gone (used in ``finally``)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self._threads:
            t.join(TIMEOUT)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def make_collection(folder: Path, segment_rows: int = 25) -> Any:
    db = polyvec.connect(folder)
    return db, db.create_collection(pw.COLLECTION, segment_rows=segment_rows, **pw.schema())


# -- (a) ------------------------------------------------------------------------------------------

def test_two_writer_processes_at_once_both_succeed(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    db, _ = make_collection(folder)
    db.close()
    go = tmp_path / "go"
    n = 70
    writers = [Child("write", str(folder), prefix, str(n), str(go)) for prefix in ("A", "B")]
    try:
        for w in writers:
            w.expect("READY")  # both have opened the collection: start them together
        go.touch()
        spans = []
        for w in writers:
            rc, out = w.finish()
            assert rc == 0, w.stderr
            assert out[-1] == "DONE", out
            _, t0, t1 = out[0].split()
            spans.append((float(t0), float(t1)))
    finally:
        for w in writers:
            w.close()
    # the writers did run at the same time (so the lock really had to serialize them)
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    model: dict[Any, Any] = {}
    pw.writer_model("A", n, model)
    pw.writer_model("B", n, model)
    db = polyvec.connect(folder)
    try:
        coll = db.get_collection(pw.COLLECTION)
        assert diff_against_model(coll, model) is None
        registered = {s["name"] for s in coll.info()["segments"]}
        assert registered, "the writers' flushes and compactions left no segment"
        assert {p.name for p in (folder / pw.COLLECTION / "segments").iterdir()} == registered
    finally:
        db.close()


# -- (b) ------------------------------------------------------------------------------------------

def _items(seed: int, ids: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return pw.vectors_for([seed], len(ids)), [{"n": i, "tag": "x"} for i in range(len(ids))]


def _apply(model: dict[Any, Any], ids: list[Any], vectors: dict[str, Any],
           payloads: list[dict[str, Any]]) -> None:
    for j, k in enumerate(ids):
        model[k] = (payloads[j], vectors["d"][j], vectors["t"][j])


@pytest.mark.parametrize("holder", ["hold-lock", "hold-sqlite"])
def test_writer_gets_locked_while_another_process_holds_the_lock(tmp_path: Path,
                                                                 holder: str) -> None:
    folder = tmp_path / "db"
    db, coll = make_collection(folder)
    model: dict[Any, Any] = {}
    ids = list(range(40))
    vectors, payloads = _items(1, ids)
    coll.add(ids, vectors=vectors, payloads=payloads)  # sealed (40 >= 25)
    coll.wait_for_maintenance()
    _apply(model, ids, vectors, payloads)
    ids2 = ["g1", "g2", "g3"]
    vectors2, payloads2 = _items(2, ids2)
    coll.add(ids2, vectors=vectors2, payloads=payloads2)  # growing
    _apply(model, ids2, vectors2, payloads2)
    db.close()

    child = Child(holder, str(folder))
    try:
        child.expect("LOCKED")
        t0 = time.monotonic()
        db = polyvec.connect(folder, lock_timeout=0.5)
        coll = db.get_collection(pw.COLLECTION)  # opening (as a reader) does not need the lock
        assert time.monotonic() - t0 < 5
        new_ids = ["n1", "n2"]
        nv, npay = _items(3, new_ids)
        writes = {
            "add": lambda: coll.add(new_ids, vectors=nv, payloads=npay),
            "upsert": lambda: coll.upsert([0, 1], vectors=_items(4, [0, 1])[0],
                                          payloads=_items(4, [0, 1])[1]),
            "delete": lambda: coll.delete([0, "g1"]),
            "flush": coll.flush,
            "compact": coll.compact,
        }
        for name, fn in writes.items():
            t0 = time.monotonic()
            with pytest.raises(Locked):
                fn()
            elapsed = time.monotonic() - t0
            assert 0.3 <= elapsed < 3.0, (name, elapsed)
            # the failed write changed nothing, and reads keep working meanwhile
            assert diff_against_model(coll, model) is None, name
            assert coll.search(model[5][1], k=1, field="d").ids[0] == 5
        child.kill()  # the lock dies with its holder (an uncommitted transaction rolls back)
        t0 = time.monotonic()
        coll.add(new_ids, vectors=nv, payloads=npay)
        _apply(model, new_ids, nv, npay)
        coll.delete([0, "g1"])
        del model[0], model["g1"]
        coll.compact()
        assert time.monotonic() - t0 < 5
        assert diff_against_model(coll, model) is None
        db.close()
        db = polyvec.connect(folder)
        assert diff_against_model(db.get_collection(pw.COLLECTION), model) is None
        db.close()
    finally:
        child.close()


# -- (c) ------------------------------------------------------------------------------------------

def test_reader_process_sees_each_commit_of_another_process(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    db, coll = make_collection(folder, segment_rows=1000)
    model: dict[Any, Any] = {}
    reader = Child("follow", str(folder), stdin=True)

    def check(step: str) -> None:
        reader.send("check")
        seen = json.loads(reader.readline())
        assert seen["len"] == len(model), step
        got = {it[0]: it for it in seen["items"]}
        assert set(got) == set(model), (step, sorted(map(str, got)), sorted(map(str, model)))
        for k, (payload, dense, tokens) in model.items():
            _, p, d, t = got[k]
            assert p == payload, (step, k)
            assert np.array_equal(np.array(d, np.float32), dense), (step, k)
            assert np.array_equal(np.array(t, np.float32).reshape(-1, 4), tokens), (step, k)
        if model:
            assert seen["top"] == seen["items"][0][0], step

    def write(op: str, ids: list[Any], seed: int) -> None:
        vectors, payloads = _items(seed, ids)
        payloads = [dict(p, seed=seed) for p in payloads]
        getattr(coll, op)(ids, vectors=vectors, payloads=payloads)
        _apply(model, ids, vectors, payloads)

    try:
        reader.expect("READY")
        check("empty")
        write("add", [1, 2, "three", 4, 5], 10)
        check("add")
        write("upsert", [2, "three", 6], 11)
        check("upsert")
        coll.delete([1, "nope"])
        del model[1]
        check("delete")
        coll.flush()  # items move from the catalog to segment files
        check("flush")
        write("upsert", [4, 7], 12)
        coll.delete([5])
        del model[5]
        check("upsert+delete after flush")
        coll.flush()
        coll.compact()  # segments rewritten without the tombstones
        check("compact")
        coll.delete(list(model))
        model.clear()
        check("delete all")
        write("add", ["again"], 13)
        check("add after delete all")
        rc, _ = reader.finish()
        assert rc == 0, reader.stderr
    finally:
        reader.close()
        db.close()


# -- (d) ------------------------------------------------------------------------------------------

def _readers_while_writing(tmp_path: Path, *, checks: str, mix: dict[str, float]
                           ) -> dict[str, int]:
    """Start 3 search-loop readers, write groups with op weights ``mix`` for >= 2 s (and >= 150
    ops), stop the readers; each must exit 0 having read; the content must equal the model."""
    folder = tmp_path / "db"
    db, coll = make_collection(folder, segment_rows=30)
    model: dict[Any, Any] = {}
    versions: dict[int, int] = {}

    def put(op: str, g: int, version: int) -> None:
        ids, vectors, payloads = pw.group_items(g, version)
        getattr(coll, op)(ids, vectors=vectors, payloads=payloads)
        _apply(model, ids, vectors, payloads)
        versions[g] = version

    for g in range(8):
        put("add", g, 0)
    coll.flush()
    stop = tmp_path / "stop"
    readers = [Child("search-loop", str(folder), str(stop), str(seed), checks)
               for seed in range(3)]
    rng = np.random.default_rng(99)
    ops, weights = list(mix), np.array(list(mix.values())) / sum(mix.values())
    counts: dict[str, int] = {}
    try:
        for r in readers:
            r.expect("READY")
        next_group = 8
        t_end = time.monotonic() + 2.0
        n_ops = 0
        while n_ops < 150 or time.monotonic() < t_end:
            n_ops += 1
            op = str(rng.choice(ops, p=weights))
            deletable = [g for g in versions if g >= pw.PERMANENT_GROUPS]
            if op == "delete" and not deletable:
                op = "add"
            if op == "add":
                put("add", next_group, 0)
                next_group += 1
            elif op == "upsert":
                g = int(rng.choice(list(versions)))
                put("upsert", g, versions[g] + 1)
            elif op == "delete":
                g = int(rng.choice(deletable))
                coll.delete(pw.group_items(g, 0)[0])
                for k in pw.group_items(g, 0)[0]:
                    del model[k]
                del versions[g]
            else:
                getattr(coll, op)()
            counts[op] = counts.get(op, 0) + 1
        stop.touch()
        for r in readers:
            rc, out = r.finish()
            assert rc == 0, f"reader failed:\n{r.stderr}"
            n_reads = int(out[-1].split()[1])
            assert n_reads >= 5, out  # each reader did read while the writer wrote
        assert diff_against_model(coll, model) is None
    finally:
        for r in readers:
            r.close()
        db.close()
    return counts


def test_reader_processes_search_while_a_writer_writes(tmp_path: Path) -> None:
    """Readers search (also filtered on a non-indexed path), get and list during writes."""
    counts = _readers_while_writing(
        tmp_path, checks="full",
        mix={"add": 0.3, "upsert": 0.3, "delete": 0.3, "flush": 0.1})
    assert counts.get("upsert") and counts.get("delete") and counts.get("flush"), counts


def test_reader_processes_search_while_a_writer_compacts(tmp_path: Path) -> None:
    """Readers search and list while segments are sealed and compacted under them."""
    counts = _readers_while_writing(
        tmp_path, checks="basic",
        mix={"add": 0.4, "delete": 0.3, "flush": 0.1, "compact": 0.2})
    assert counts.get("compact", 0) >= 10, counts
