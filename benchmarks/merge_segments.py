"""Search cost of many small indexed segments vs the merged ones (issue 11, item 7).

Builds the same collection twice from the Debian MiniLM vectors (``../shared`` beside the
repository), adding ``--n`` rows in batches of ``--batch`` with ``--segment-rows``, then
``create_index("v", SPEC)``: once with merging off (one graph per sealed segment, the old
behaviour) and once with the default merge policy (merged first, one graph per
``max_segment_rows``). Then QPS of one query per call at ``target_recall`` and the achieved
recall@10 against exact search, systems alternated over ``--rounds`` rounds (medians).

    PYTHONPATH=src python benchmarks/merge_segments.py --n 40000 --segment-rows 10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import polyvec as pv
from polyvec.engine.merge import MergePolicy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian-minilm"


def build(folder: Path, x: np.ndarray, args: argparse.Namespace, merge: bool,
          sample: np.ndarray) -> tuple[pv.Collection, float]:
    coll = pv.connect(folder).create_collection("c", {"v": pv.Dense(x.shape[1])},
                                                segment_rows=args.segment_rows)
    if not merge:
        coll._store.merge_policy = MergePolicy(max_segment_rows=1)  # nothing fits: no merges
    t0 = time.perf_counter()
    for lo in range(0, len(x), args.batch):
        coll.add(list(range(lo, min(len(x), lo + args.batch))), x[lo:lo + args.batch])
    coll.flush()
    coll.create_index("v", args.spec, sample_queries=sample)
    return coll, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40_000)
    ap.add_argument("--segment-rows", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--spec", default="HNSW32,SQ8,Refine")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    x = np.load(DATA / "base_f16.npy")[: args.n].astype(np.float32)
    q = np.load(DATA / "queries_f16.npy").astype(np.float32)
    sample, held = q[:300], q[1000:1000 + args.queries]
    with tempfile.TemporaryDirectory() as tmp:
        systems = {}
        for name, merge in (("per-seal segments", False), ("merged", True)):
            coll, secs = build(Path(tmp) / name.replace(" ", "-"), x, args, merge, sample)
            exact = coll.search(held, k=10)
            res = coll.search(held, k=10, target_recall=args.target)
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in
                                    zip(res.ids.tolist(), exact.ids.tolist(), strict=True)]))
            systems[name] = {"coll": coll, "build_s": secs, "recall": recall, "qps": [],
                             "segments": len(coll.info()["segments"])}
        for _ in range(args.rounds):
            for s in systems.values():
                t0 = time.perf_counter()
                for v in held:
                    s["coll"].search(v, k=10, target_recall=args.target)
                s["qps"].append(len(held) / (time.perf_counter() - t0))
        out = {name: {"segments": s["segments"], "build_s": round(s["build_s"], 1),
                      "recall": round(s["recall"], 4),
                      "qps_median": round(statistics.median(s["qps"]), 1)}
               for name, s in systems.items()}
        a, b = (out[n]["qps_median"] for n in systems)
        out["merged/per-seal qps"] = round(b / a, 2)
        print(json.dumps({"args": vars(args), "results": out}, indent=1))


if __name__ == "__main__":
    main()
