"""Crash safety of merges: SIGKILL a writer inside merges, reopen, compare with the model.

A child (``tests/helpers/merge_writer.py``) writes a deterministic stream
(``tests/helpers/merge_stream.py``) whose adds seal a segment each, so merges run after seals,
in ``compact()`` and in ``merge(force=True)``. The parent kills it right after a merge's fault
point (files written / inside the registering transaction / committed, before the old
folders are removed) or a moment after its nth acknowledged batch, then reopens: the
collection must hold exactly the acknowledged batches (or those plus the whole in-flight
batch; a merge never changes what is stored), answer exact searches like brute force, and
keep no folder the catalog does not know. The next round resumes from the first batch not applied.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import polyvec

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WRITER = HERE / "helpers" / "merge_writer.py"
sys.path.insert(0, str(HERE / "helpers"))

import merge_stream as ms  # noqa: E402
from oracle import assert_topk_matches, dense_scores  # noqa: E402

ROUNDS = 16
POINTS = ("merge.written", "merge.before_commit", "merge.committed")


def _run(folder: Path, start: int, point: str | None, nth: int, delay: float
         ) -> tuple[list[str], int, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    with subprocess.Popen([sys.executable, str(WRITER), str(folder), str(start),
                           str(start + 60)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        # the kill counts events, not seconds from the start: a loaded machine slows the
        # child, and a timer would then kill it before the stream reached the merge tiers
        seen = 0
        for line in proc.stdout:
            line = line.strip()
            lines.append(line)
            if line == f"P {point}" if point is not None else line.startswith("A "):
                seen += 1
                if seen == nth:
                    end = time.perf_counter() + delay
                    while time.perf_counter() < end:
                        pass
                    proc.send_signal(signal.SIGKILL)
                    break
        # what the child printed while it was being killed: a batch may have been
        # acknowledged (or started) during the delay
        lines += [line.strip() for line in proc.stdout]
        rc = proc.wait(timeout=120)
        assert proc.stderr is not None
        return lines, rc, proc.stderr.read()


def _check(coll: polyvec.Collection, model: ms.Model, rng: np.random.Generator) -> None:
    keys = sorted(model)
    x = np.stack([model[k][0] for k in keys])
    for q in rng.standard_normal((3, 8)).astype(np.float32):
        res = coll.search(q, k=5, field="d")
        ref = dict(zip(keys, dense_scores(q[None], x, "dot")[0].tolist(), strict=True))
        assert_topk_matches(res.ids, res.scores, ref, 5)


@pytest.mark.slow
def test_sigkill_inside_merges_loses_nothing_and_leaves_no_orphans(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    ms.create(str(folder))
    rng = random.Random(7)
    applied = 0
    kills: Counter[str] = Counter()
    for rnd in range(ROUNDS):
        if rnd % 4 != 3:  # three rounds in four kill at a merge's fault point
            point, nth, delay = rng.choice(POINTS), rng.randint(1, 3), 10 ** rng.uniform(-5, -3)
        else:  # "at a random time": after nth acknowledged batches, a moment later
            point, nth, delay = None, rng.randint(2, 12), 10 ** rng.uniform(-4, -1.5)
        lines, rc, err = _run(folder, applied, point, nth, delay)
        assert rc in (0, -signal.SIGKILL), err
        acked = [int(s.split()[1]) for s in lines if s.startswith("A ")]
        assert acked == list(range(applied, applied + len(acked)))
        last = applied + len(acked)
        in_flight = any(s == f"S {last}" for s in lines)
        if rc != 0:
            kills[point or "timer"] += 1
        db = polyvec.connect(folder)
        try:
            coll = db.get_collection(ms.COLLECTION)  # must not raise CorruptFile
            model, _ = ms.replay(last)
            problem = ms.diff(coll, model)
            if problem is not None:
                assert in_flight, f"round {rnd}: {problem}"
                model, _ = ms.replay(last + 1)
                assert ms.diff(coll, model) is None, f"round {rnd}: in-flight batch partial"
                last += 1
            coll.verify()  # waits for the open's check, then its removal of orphans
            registered = {s["name"] for s in coll.info()["segments"]}
            on_disk = {p.name for p in (folder / ms.COLLECTION / "segments").iterdir()}
            assert on_disk == registered, f"orphans left: {sorted(on_disk - registered)}"
            _check(coll, model, np.random.default_rng(rnd))
        finally:
            db.close()
        applied = last
    assert sum(kills[p] for p in POINTS) >= 6 and kills["timer"] == ROUNDS // 4, kills
    assert applied > 60, applied  # the stream went through several tiers of merges
