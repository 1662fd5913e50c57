"""Backfill crash safety with real processes and a real model.

A collection of 200 items holds "old model" vectors (a fixed rotation of the new model's, so a
mapping exists and is fitted). A child process (``tests/helpers/backfill_worker.py``) backfills
the field with paraphrase-MiniLM-L3-v2 (ONNX) in batches of 4 and is killed with SIGKILL at
random points at least 10 times (after a random number of committed batches, inside a batch's
transaction at the engine's hook point ``backfill.before_write``, or on a timer of up to 0.3 s
that fires within four batches, in shuffled order), then once more within 10 ms of the start
of the final switch (hook point ``backfill.before_switch``); each restart resumes. Meanwhile
another process (``tests/helpers/backfill_reader.py``) searches with ``model="v2"`` in a loop.
At the end:

- the backfill completed and the field switched to v2 (one model, no backfill state left);
- every item's vector equals a fresh embedding of its text with the new model;
- no item was embedded more than once per kill, and the re-embedded total is at most one batch
  per kill;
- the reader's searches never failed and always returned k hits.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import polyvec as pv
from polyvec.errors import MissingExtra
from polyvec.spec import ModelSpec

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WORKER = HERE / "helpers" / "backfill_worker.py"
READER = HERE / "helpers" / "backfill_reader.py"
N, BATCH, MIN_KILLS = 200, 4, 10
TIMER_MAX_BATCHES = 4  # a timer kill lands by then at the latest

_VOCAB = ("library tool game server client python rust data image audio video network "
         "parser compiler editor font theme driver kernel module plugin documentation "
         "development files runtime utilities command line interface graphical terminal "
         "database cache encryption compression archive backup monitor scanner printer")
WORDS = _VOCAB.split()


def texts() -> list[str]:
    rng = random.Random(5)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 24))) + f" no. {i}"
            for i in range(N)]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), e.get("PYTHONPATH")) if p)
    e["OMP_NUM_THREADS"] = "1"
    return e


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.slow
def test_backfill_survives_sigkill_and_searches_never_fail(tmp_path: Path) -> None:
    try:
        from polyvec.embed import paraphrase_minilm

        emb = paraphrase_minilm()
        words = texts()
        fresh = emb.embed_documents(words)
    except (MissingExtra, ImportError) as e:
        pytest.skip(f"needs the L3 ONNX model (the [models] extra): {e}")
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((384, 384)))[0]
    old = normalize(fresh @ rot.T).astype(np.float32)
    db_path = tmp_path / "db"
    coll = pv.connect(db_path).create_collection("c", {"emb": pv.Dense(384)}, segment_rows=64)
    coll.register_model("emb", ModelSpec("rotated-old", revision="1", dim=384), name="v1")
    coll.add(list(range(N)), old, [{"text": t} for t in words])
    coll.register_model("emb", emb, name="v2")
    coll.fit_mapping("emb", "v2", "v1", sample=100, kind="procrustes")
    coll.close()
    queries = tmp_path / "q.npy"
    np.save(queries, fresh[:6])
    stop, out, log = tmp_path / "STOP", tmp_path / "reader.json", tmp_path / "embedded.log"
    reader = subprocess.Popen([sys.executable, str(READER), str(db_path), str(queries),
                               str(stop), str(out)], env=env(), stdout=subprocess.PIPE,
                              text=True)
    assert reader.stdout is not None and reader.stdout.readline().strip() == "R"

    rng = random.Random(1234)
    plan = ["batches", "inside", "timer"] * 4
    rng.shuffle(plan)
    plan = plan[:MIN_KILLS] + ["switch"]  # then a kill inside the switch, then the finish
    kills, modes, done = 0, Counter(), False
    for round_ in range(40):
        mode = plan[round_] if round_ < len(plan) else "finish"
        target = rng.randint(0, 2)
        # the hook point that kills the worker itself (it prints the point's letter first)
        fault = (f"backfill.before_write@{target + 1}", "P") if mode == "inside" else None
        proc = subprocess.Popen([sys.executable, str(WORKER), str(db_path), str(log),
                                 str(BATCH), *([fault[0]] if fault else [])],
                                env=env(), stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        seen = 0
        timer = None
        tag = ""
        for line in proc.stdout:
            tag = line.strip()
            if tag == "DONE":
                done = True
                break
            if mode == "timer" and tag == "R":
                # anywhere from opening to mid-batch, but within a few batches, so a fast
                # machine cannot finish the whole backfill before the kills have landed
                timer = threading.Timer(rng.uniform(0, 0.3), proc.kill)
                timer.start()
            fire = ((mode == "batches" and tag == "B" and seen >= target)
                    or (mode == "switch" and tag == "W")
                    or (mode == "timer" and tag == "B" and seen >= 2 * TIMER_MAX_BATCHES))
            seen += tag in ("B", "P")
            if fire:
                time.sleep(rng.uniform(0, 0.01 if mode == "switch" else 0.03))
                if proc.poll() is None:
                    proc.kill()
                break
        proc.wait(timeout=60)
        if timer is not None:
            timer.cancel()
        proc.stdout.close()
        if not done and proc.returncode == -signal.SIGKILL:
            kills += 1
            # a kill by a hook point counts only if the worker's last word was that point's
            if fault is None or tag == fault[1]:  # (a parent's kill follows its point's word)
                modes[mode] += 1
        elif not done:
            assert proc.returncode in (0, -signal.SIGKILL), f"worker failed: {proc.returncode}"
        if done:
            break
    stop.write_text("stop")
    reader.wait(timeout=60)
    reader.stdout.close()
    assert done, f"the backfill did not finish after {kills} kills"
    assert kills >= MIN_KILLS, f"only {kills} kills landed ({dict(modes)})"
    assert set(modes) >= {"batches", "inside", "timer", "switch"}, dict(modes)

    coll = pv.connect(db_path).get_collection("c")
    versions = coll.model_versions("emb")
    assert versions["current"] == "v2" and versions["backfill"] is None
    assert coll.model_of("emb") == emb.spec
    items = coll.get(list(range(N)))
    got = np.stack([it.vectors["emb"] for it in items if it is not None])
    assert got.shape == (N, 384)
    # batch composition changes float rounding only (padding is masked)
    assert np.abs(got - fresh).max() < 1e-4

    counts = Counter(log.read_text().splitlines())
    assert set(counts) == set(words)
    assert max(counts.values()) <= 1 + kills
    assert sum(counts.values()) - N <= kills * BATCH

    report = json.loads(out.read_text())
    assert report["errors"] == [], report["errors"]
    assert report["searches"] > 20
    assert report["routes"].get("merged", 0) > 0
