"""Fault-injection hook points: the registry matches the engine, arming is checked, and an armed
point really stops a real process (or a real transaction) where it says."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import polyvec as pv
from polyvec.engine import hooks
from polyvec.errors import InvalidArgument

SRC = Path(__file__).resolve().parents[1] / "src"


def _point_calls() -> dict[str, list[str]]:
    """{name: [file:line, ...]} of every ``hooks.point(...)`` call under src/polyvec."""
    calls: dict[str, list[str]] = {}
    for f in sorted((SRC / "polyvec").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "point" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "hooks"):
                arg = node.args[0] if node.args else None
                where = f"{f.relative_to(SRC)}:{node.lineno}"
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), (
                    f"{where}: hooks.point needs a literal name")
                calls.setdefault(arg.value, []).append(where)
    return calls


def test_every_registered_point_is_called_by_the_engine_and_no_other() -> None:
    calls = _point_calls()
    assert set(calls) - set(hooks.POINTS) == set(), {n: calls[n] for n in
                                                      set(calls) - set(hooks.POINTS)}
    assert set(hooks.POINTS) - set(calls) == set(), "registered but never called"


def test_arming_an_unknown_point_fails() -> None:
    with pytest.raises(hooks.UnknownHookPoint, match="unknown hook point 'segments.writen'"):
        hooks.arm("segments.writen")
    assert issubclass(hooks.UnknownHookPoint, ValueError)
    with pytest.raises(hooks.UnknownHookPoint):
        hooks.disarm("nope")
    with pytest.raises(InvalidArgument, match="hit count"):
        hooks.arm("segments.written", at=0)


def test_armed_runs_the_action_from_the_nth_hit_and_disarms() -> None:
    seen: list[str] = []
    with hooks.armed("segments.written", seen.append, at=3):
        for _ in range(4):
            hooks.point("segments.written")
        hooks.point("segments.before_commit")  # not armed
    hooks.point("segments.written")  # disarmed again
    assert seen == ["segments.written"] * 2


def test_a_failure_at_a_point_inside_the_transaction_rolls_the_seal_back(tmp_path: Path,
                                                                          ) -> None:
    x = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", {"v": pv.Dense(8, metric="l2")})
    coll.add(list(range(40)), x)

    def fail(name: str) -> None:
        raise RuntimeError(f"injected at {name}")

    with hooks.armed("segments.before_commit", fail), pytest.raises(RuntimeError, match="inje"):
        coll.flush()
    db.close()
    db = pv.connect(tmp_path / "db")
    coll = db.get_collection("c")
    coll.verify()  # the open removes orphans once the catalog passed its check
    assert coll.info()["segments"] == []  # the registration rolled back; the orphan is gone
    assert list((tmp_path / "db" / "c" / "segments").iterdir()) == []
    assert coll.search(x[7], k=1).ids[0] == 7
    coll.flush()
    assert len(coll.info()["segments"]) == 1 and len(coll) == 40
    db.close()


WRITER = """
import sys, numpy as np, polyvec as pv
db = pv.connect(sys.argv[1])
coll = db.get_collection("c")
x = np.random.default_rng(1).standard_normal((30, 8)).astype(np.float32)
coll.add(list(range(100, 130)), x)
print("added", flush=True)
coll.flush()
coll.delete(list(range(100, 110)))
coll.compact()
print("done", flush=True)
"""


def _child(folder: Path, fault: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, POLYVEC_FAULT=fault)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", WRITER, str(folder)], env=env,
                          capture_output=True, text=True, timeout=120)


# the child adds 30 items to 50 sealed ones, flushes (a seal: 2 segments), deletes 10 and
# compacts (a merge into one segment of 70); (fault, segments, items) after a kill at each point
FAULTS = [
    ("segments.written", 1, 80),  # the flush's files are an orphan; the adds are durable
    ("segments.before_commit", 1, 80),  # inside the flush's transaction: rolled back
    ("merge.written", 2, 70),  # the flush and the deletes committed; the merged folder is an orphan
    ("merge.before_commit", 2, 70),  # inside the compaction's transaction: rolled back
    ("merge.committed", 1, 70),  # the compaction committed; its old folders are orphans
    ("compact.before_index_remove", 1, 70),
]


@pytest.mark.parametrize("fault, segments, items", FAULTS)
def test_polyvec_fault_kills_a_real_writer_at_the_named_point(tmp_path: Path, fault: str,
                                                              segments: int, items: int) -> None:
    folder = tmp_path / "db"
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    with pv.connect(folder) as db:
        db.create_collection("c", {"v": pv.Dense(8, metric="l2")}).add(list(range(50)), x)
        db.get_collection("c").flush()
    out = _child(folder, fault)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert out.stdout.split() == ["added"]  # killed after the add, before the end
    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        coll.verify()  # waits for the open's check and its removal of orphans
        names = {s["name"] for s in coll.info()["segments"]}
        assert len(names) == segments and len(coll) == items
        assert {p.name for p in (folder / "c" / "segments").iterdir()} == names
        assert coll.search(x[3], k=1).ids[0] == 3


def test_polyvec_fault_with_an_unknown_name_fails_the_child(tmp_path: Path) -> None:
    with pv.connect(tmp_path / "db") as db:
        db.create_collection("c", {"v": pv.Dense(8)})
    out = _child(tmp_path / "db", "seal.files_writen")
    assert out.returncode == 1 and "UnknownHookPoint" in out.stderr, out.stderr


def test_docstring_examples() -> None:
    import doctest

    result = doctest.testmod(hooks, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
