"""Threads sharing one collection handle: QPS of 1 vs 2 threads, single-query searches.

Builds (once, into ``--folder``) a collection of the Debian MiniLM vectors
(``../shared/data/debian-minilm`` beside the repository), sealed with the default segment
size, and a copy indexed with ``HNSW32,SQ8,Refine``; then, for each setting, alternates
rounds of 1 and 2 searching threads (each thread: one query per call, ``k=10``) and prints
the median QPS of each and their ratio. Run it with any polyvec on ``PYTHONPATH`` (the
folder format is the same) to compare versions::

    PYTHONPATH=src python benchmarks/threads.py --folder /tmp/pv-threads --rows 58026
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import numpy as np

import polyvec as pv

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "debian-minilm"


def build(folder: Path, rows: int) -> None:
    x = np.load(DATA / "base_f16.npy")[:rows].astype(np.float32)
    db = pv.connect(folder)
    for name, index in (("exact", None), ("hnsw", "HNSW32,SQ8,Refine")):
        if name in db.list_collections():
            continue
        coll = db.create_collection(name, vectors={"v": pv.Dense(384)})
        for s in range(0, rows, 5000):
            coll.add(list(range(s, min(rows, s + 5000))), x[s:s + 5000])
        coll.flush()
        if index:
            coll.create_index("v", index)
    db.close()


def qps(coll: object, queries: np.ndarray, threads: int, seconds: float, **kw: object) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def run(t: int) -> None:
        i = t * 97
        while time.perf_counter() < stop:
            coll.search(queries[i % len(queries)], k=10, **kw)  # type: ignore[attr-defined]
            i += 1
            counts[t] += 1

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=58026)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    build(args.folder, args.rows)
    q = np.load(DATA / "queries_f16.npy").astype(np.float32)
    db = pv.connect(args.folder)
    out = {}
    for name, kw in (("exact", {}), ("hnsw", {"target_recall": 0.95})):
        coll = db.get_collection(name)
        qps(coll, q, 1, 0.5, **kw)  # warm-up (kernels compiled, pages mapped)
        one, two = [], []
        for _ in range(args.rounds):
            one.append(qps(coll, q, 1, args.seconds, **kw))
            two.append(qps(coll, q, 2, args.seconds, **kw))
        m1, m2 = statistics.median(one), statistics.median(two)
        out[name] = {"qps_1": round(m1, 1), "qps_2": round(m2, 1), "ratio": round(m2 / m1, 3)}
    print(json.dumps({"polyvec": pv.__file__, **out}))


if __name__ == "__main__":
    main()
