"""Child processes of tests/test_concurrency.py.

Usage: ``proc_worker.py COMMAND FOLDER [ARGS...]``; the collection is always named ``c``.

- ``write FOLDER PREFIX N GOFILE``: open, print ``READY``, wait until GOFILE exists, then
  write N batches of the writer stream ``PREFIX`` (see :func:`writer_batch`); prints
  ``T start end`` (monotonic times of the first and last write) and ``DONE``.
- ``hold-lock FOLDER``: open the collection, take its write lock, print ``LOCKED``, sleep.
- ``hold-sqlite FOLDER``: hold SQLite's write lock on the catalog (``BEGIN IMMEDIATE``).
- ``follow FOLDER``: open the collection once, print ``READY``, then for each ``check`` line
  on stdin print the whole content (as JSON) as this long-lived reader sees it.
- ``search-loop FOLDER STOPFILE SEED CHECKS``: search / list (and with CHECKS=full also get and
  a filter on a non-indexed path) in a loop until STOPFILE exists, checking invariants of the
  group stream (see :func:`group_items`); prints ``OPS n``.

Any failure prints a traceback and exits non-zero.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

COLLECTION = "c"
GROUP = 10  # items per group in the search-loop stream
PERMANENT_GROUPS = 5  # groups 0..4 are never deleted


def schema() -> dict[str, Any]:
    import polyvec

    return {"vectors": {"d": polyvec.Dense(8, metric="l2"), "t": polyvec.Multi(4, metric="dot")},
            "indexed": ["tag"]}


def vectors_for(seed: list[int], n: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"d": rng.standard_normal((n, 8)).astype(np.float32),
            "t": [rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32)
                  for _ in range(n)]}


# -- stream of the two concurrent writers -------------------------------------------------------

def writer_batch(prefix: str, i: int) -> tuple[str, list[Any], dict[str, Any] | None,
                                                list[dict[str, Any]] | None]:
    """(op, ids, vectors, payloads) of batch ``i`` of writer ``prefix``."""
    if i % 11 == 10:
        return "flush", [], None, None
    if i % 17 == 16:
        return "compact", [], None, None
    if i % 5 == 4:
        return "delete", [f"{prefix}-{i - 1}-0", f"{prefix}-{i - 3}-1"], None, None
    ids = [f"{prefix}-{i}-{j}" for j in range(6)]
    op = "add"
    if i % 3 == 2:  # replace the items of batch i-2 (new vectors and payloads)
        ids = [f"{prefix}-{i - 2}-{j}" for j in range(6)]
        op = "upsert"
    seed = [sum(map(ord, prefix)), i]
    return op, ids, vectors_for(seed, len(ids)), [
        {"w": prefix, "i": i, "j": j, "tag": "x"} for j in range(len(ids))]


def writer_model(prefix: str, n: int, model: dict[Any, Any]) -> None:
    for i in range(n):
        op, ids, vectors, payloads = writer_batch(prefix, i)
        if op in ("add", "upsert"):
            assert vectors is not None and payloads is not None
            for j, k in enumerate(ids):
                model[k] = (payloads[j], vectors["d"][j], vectors["t"][j])
        elif op == "delete":
            for k in ids:
                model.pop(k, None)


def run_batch(coll: Any, op: str, ids: list[Any], vectors: Any, payloads: Any) -> None:
    if op in ("add", "upsert"):
        getattr(coll, op)(ids, vectors=vectors, payloads=payloads)
    elif op == "delete":
        coll.delete(ids)
    else:
        getattr(coll, op)()


# -- the group stream of the search-loop readers --------------------------------------------------

def group_items(g: int, version: int) -> tuple[list[int], dict[str, Any], list[dict[str, Any]]]:
    """Group ``g`` (ids g*10 .. g*10+9), written whole by one add/upsert call."""
    ids = [g * GROUP + j for j in range(GROUP)]
    tag = "even" if g % 2 == 0 else "odd"
    payloads = [{"g": g, "v": version, "tag": tag} for _ in ids]
    return ids, vectors_for([g, version], GROUP), payloads


def _check_groups(coll: Any, rng: np.random.Generator, full: bool = True) -> None:
    ids = list(coll)
    assert len(ids) == len(set(ids)), "duplicate ids"
    groups: dict[int, int] = {}
    for k in ids:
        groups[k // GROUP] = groups.get(k // GROUP, 0) + 1
    partial = {g: n for g, n in groups.items() if n != GROUP}
    assert not partial, f"partially visible groups (not atomic): {partial}"
    for g in range(PERMANENT_GROUPS):
        assert groups.get(g) == GROUP, f"permanent group {g} missing"
    if not full:
        return
    # one get() call sees each group whole, at one version
    g = int(rng.choice(list(groups))) if rng.random() < 0.8 else int(rng.integers(1000))
    items = coll.get([g * GROUP + j for j in range(GROUP)])
    present = [it for it in items if it is not None]
    assert len(present) in (0, GROUP), f"group {g}: {len(present)} of {GROUP} items in one get"
    if present:
        versions = {it.payload["v"] for it in present}
        assert len(versions) == 1, f"group {g}: mixed versions {versions} in one get"
        _, vecs, payloads = group_items(g, versions.pop())
        for j, it in enumerate(items):
            assert it is not None and it.payload == payloads[j]
            assert np.array_equal(it.vectors["d"], vecs["d"][j])
            assert np.array_equal(it.vectors["t"], vecs["t"][j])


def _check_searches(coll: Any, rng: np.random.Generator, full: bool = True) -> None:
    q = rng.standard_normal(8).astype(np.float32)
    res = coll.search(q, k=10, field="d")
    got = list(res.ids)
    assert None not in got and len(set(got)) == 10, got  # >= 50 items always exist
    assert all(isinstance(i, int) for i in got), got
    assert list(res.scores) == sorted(res.scores, reverse=True)
    res = coll.search(q, k=10, field="d", filter={"tag": "even"})
    got = [i for i in res.ids if i is not None]
    assert len(got) == 10 and all((i // GROUP) % 2 == 0 for i in got), got
    if full:
        # a filter on a payload path that is not indexed (evaluated by SQLite, not in memory)
        res = coll.search(q, k=10, field="d", filter={"g": {"$lt": PERMANENT_GROUPS}})
        got = [i for i in res.ids if i is not None]
        assert len(got) == 10 and all(i // GROUP < PERMANENT_GROUPS for i in got), got
    res = coll.search(rng.standard_normal((3, 4)).astype(np.float32), k=5, field="t")
    got = list(res.ids)
    assert None not in got and len(set(got)) == 5, got


def search_loop(folder: str, stopfile: str, seed: int, checks: str) -> None:
    import polyvec

    full = checks == "full"
    coll = polyvec.connect(folder).get_collection(COLLECTION)
    rng = np.random.default_rng(seed)
    _check_searches(coll, rng, full)  # warm up (numba kernels load on first use) first
    _check_groups(coll, rng, full)
    print("READY", flush=True)
    ops = 0
    while not os.path.exists(stopfile):
        if rng.random() < 0.5:
            _check_searches(coll, rng, full)
        else:
            _check_groups(coll, rng, full)
        ops += 1
    _check_groups(coll, rng, full)  # once more after the writer has finished
    _check_searches(coll, rng, full)
    print(f"OPS {ops}", flush=True)


# -- commands -------------------------------------------------------------------------------------

def write(folder: str, prefix: str, n: int, gofile: str) -> None:
    import polyvec

    coll = polyvec.connect(folder).get_collection(COLLECTION)
    print("READY", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(gofile):
        assert time.monotonic() < deadline, "no go signal"
        time.sleep(0.001)
    t0 = time.monotonic()
    for i in range(n):
        run_batch(coll, *writer_batch(prefix, i))
    print(f"T {t0} {time.monotonic()}", flush=True)
    print("DONE", flush=True)


def hold_lock(folder: str) -> None:
    import polyvec

    coll = polyvec.connect(folder).get_collection(COLLECTION)
    coll._store.lock.acquire()
    print("LOCKED", flush=True)
    time.sleep(120)


def hold_sqlite(folder: str) -> None:
    import sqlite3

    conn = sqlite3.connect(Path(folder) / COLLECTION / "catalog.sqlite", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE meta SET crc = crc WHERE key = 'magic'")
    print("LOCKED", flush=True)
    time.sleep(120)


def follow(folder: str) -> None:
    import polyvec

    coll = polyvec.connect(folder).get_collection(COLLECTION)
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() != "check":
            continue
        ids = list(coll)
        items = coll.get(ids)
        out: dict[str, Any] = {"len": len(coll), "items": []}
        for it in items:
            assert it is not None
            out["items"].append([it.id, it.payload, it.vectors["d"].tolist(),
                                 it.vectors["t"].tolist()])
        top = None
        if ids:
            q = items[0].vectors["d"]  # type: ignore[union-attr]
            top = coll.search(q, k=1, field="d").ids[0]
        out["top"] = top
        print(json.dumps(out), flush=True)


def main() -> None:
    cmd, folder, *rest = sys.argv[1:]
    try:
        if cmd == "write":
            write(folder, rest[0], int(rest[1]), rest[2])
        elif cmd == "hold-lock":
            hold_lock(folder)
        elif cmd == "hold-sqlite":
            hold_sqlite(folder)
        elif cmd == "follow":
            follow(folder)
        elif cmd == "search-loop":
            search_loop(folder, rest[0], int(rest[1]), rest[2])
        else:
            raise SystemExit(f"unknown command {cmd!r}")
    except Exception:
        traceback.print_exc()
        sys.stdout.flush()
        sys.exit(1)


if __name__ == "__main__":
    main()
