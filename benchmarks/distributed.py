"""Sharded collections on Ray against the embedded collection, on the Debian vectors.

Systems, each through the API a user calls, all alive at once on one local Ray node:
- ``embedded``: ``polyvec.connect(...).create_collection`` in this process;
- ``sharded xN``: ``polyvec.distributed.connect_ray(...).create_collection(shards=N)`` for
  N = 1, 2, 4 (one replica each), each shard a Ray actor in its own process.

Measured per system: ingest rate (``add`` in batches of 1,000 from this process, then
``flush``), index build (``create_index``, shards in parallel), and one query per call
from one client thread: QPS, p50, p99, exact (no index) and indexed (``HNSW32,SQ8,Refine``
at ``target_recall=0.95``, calibrated on 200 held-out queries), recall@10 against exact.
Rounds alternate the systems; figures are medians over rounds.

This machine has 2 cores: every shard, Ray's own processes and the client share them, so
adding shards cannot add throughput here; the figures measure the scatter-gather overhead
per query and how ingest and search scale when the cores are the bound. The written
capacity model (in the Markdown) extrapolates to 100 M and 1 B vectors.

    PYTHONPATH=benchmarks python benchmarks/distributed.py --workdir /tmp/pv-dist

Writes benchmarks/results/distributed.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import DATA, RESULTS, machine, markdown_table, write_results

os.environ.setdefault("OMP_NUM_THREADS", "1")
import polyvec as pv  # noqa: E402

K = 10
SPEC = "HNSW32,SQ8,Refine"
SHARDS = [1, 2, 4]
SAMPLES = slice(1000, 1200)  # calibration queries (not measured)


def load() -> dict[str, Any]:
    folder = DATA / "debian-minilm"
    base = np.load(folder / "base_f16.npy").astype(np.float32)
    queries = np.load(folder / "queries_f16.npy").astype(np.float32)
    return {"base": base, "queries": queries}


def ingest(coll: Any, base: np.ndarray) -> float:
    t = time.perf_counter()
    for lo in range(0, len(base), 1_000):
        coll.add(list(range(lo, min(len(base), lo + 1_000))), {"v": base[lo:lo + 1_000]})
    coll.flush()
    return len(base) / (time.perf_counter() - t)


def timed(coll: Any, q: np.ndarray, **knobs: Any) -> tuple[list[float], list[list[int]]]:
    times, ids = [], []
    for i in range(len(q)):
        t = time.perf_counter()
        res = coll.search(q[i], k=K, **knobs)
        times.append(time.perf_counter() - t)
        ids.append([int(x) for x in res.ids if x is not None])
    return times, ids


def recall(ids: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(t[:K].tolist())) / K for a, t in zip(
        ids, truth, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pv-dist"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--items", type=int, default=0, help="use the first N items (0: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    import ray

    from polyvec.distributed import connect_ray

    data = load()
    base, q = data["base"], data["queries"][:args.queries]
    if args.items:
        base = base[:args.items]
    truth = np.argsort(-(q @ base.T), axis=1)[:, :K]
    shutil.rmtree(args.workdir, ignore_errors=True)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    rdb = connect_ray(args.workdir / "ray")
    systems: dict[str, Any] = {
        "embedded": pv.connect(args.workdir / "one").create_collection(
            "debian", {"v": pv.Dense(384)})}
    for n in SHARDS:
        systems[f"sharded x{n}"] = rdb.create_collection(f"debian{n}", {"v": pv.Dense(384)},
                                                          shards=n)
    rows: dict[str, dict[str, Any]] = {name: {"ingest_per_s": ingest(c, base)}
                                       for name, c in systems.items()}
    print({k: round(r["ingest_per_s"]) for k, r in rows.items()}, flush=True)
    runs: dict[str, dict[str, list[float]]] = {n: {} for n in systems}
    recalls: dict[str, dict[str, float]] = {n: {} for n in systems}
    for mode in ("exact", "indexed"):
        if mode == "indexed":
            for name, c in systems.items():
                t = time.perf_counter()
                c.create_index("v", SPEC, sample_queries=data["queries"][SAMPLES])
                rows[name]["build_s"] = time.perf_counter() - t
        knobs = {} if mode == "exact" else {"target_recall": 0.95}
        for c in systems.values():  # warm: a new process's first queries apart (numba
            timed(c, q[:100], **knobs)  # loads its kernels in the background after them)
        time.sleep(10)
        for c in systems.values():
            timed(c, q[:50], **knobs)
        for rnd in range(args.rounds):
            for name, c in systems.items():
                times, ids = timed(c, q, **knobs)
                runs[name].setdefault(mode, []).extend(times)
                runs[name].setdefault(f"{mode} qps", []).append(len(times) / sum(times))
                recalls[name][mode] = recall(ids, truth)
                print(f"round {rnd + 1} {mode} {name}: {len(times) / sum(times):.0f} QPS",
                      flush=True)
    for name in systems:
        for mode in ("exact", "indexed"):
            t = np.array(runs[name][mode]) * 1e3
            rows[name][mode] = {"qps": float(np.median(runs[name][f"{mode} qps"])),
                                "qps_rounds": runs[name][f"{mode} qps"],
                                "p50_ms": float(np.percentile(t, 50)),
                                "p99_ms": float(np.percentile(t, 99)),
                                "recall": recalls[name][mode]}
    payload = {"machine": machine(), "items": len(base), "queries": len(q), "k": K,
               "spec": SPEC, "rounds": args.rounds, "systems": rows}
    table = report(payload)
    print(table)
    write_results("distributed", payload, table, args.out)
    plot(payload, args.out / "distributed.png")
    ray.shutdown()


def report(p: dict[str, Any]) -> str:
    rows, one = [], p["systems"]["embedded"]
    for name, r in p["systems"].items():
        rows.append([name, f"{r['ingest_per_s']:,.0f}", f"{r.get('build_s', 0):.1f}",
                     *(f"{r[m]['qps']:,.0f} / {r[m]['p50_ms']:.2f} / {r[m]['p99_ms']:.2f} / "
                       f"{r[m]['recall']:.3f}" for m in ("exact", "indexed")),
                     f"{(r['indexed']['p50_ms'] - one['indexed']['p50_ms']):+.2f}"])
    head = (f"# Sharded collections on Ray: Debian {p['items']:,} x 384, k={p['k']}\n\n"
            f"{p['queries']} queries, one per call from one client thread, median of "
            f"{p['rounds']} alternated rounds; one local Ray node on this {p['machine']['cpus']}"
            "-core machine (CPU-bound: the shards, Ray and the client share the cores). "
            f"Indexed: `{p['spec']}` at `target_recall=0.95`.\n\n")
    table = markdown_table(["system", "ingest items/s", "index build s",
                            "exact QPS / p50 ms / p99 ms / recall",
                            "indexed QPS / p50 ms / p99 ms / recall",
                            "indexed p50 vs embedded (ms)"], rows)
    return head + table + "\n\n" + capacity(p)


def capacity(p: dict[str, Any]) -> str:
    """The written capacity model: memory per node for each codec at 100 M and 1 B
    vectors of 384 dims, the shards that takes, and QPS per node from the measured
    per-shard figures."""
    per = {"float32 (Flat)": 384 * 4, "F16": 384 * 2, "SQ8 + refine vectors on disk": 384,
           "PQ48 + refine vectors on disk": 48, "binary + refine vectors on disk": 48}
    graph = 32 * 2 * 4  # HNSW32: ~2M links of 4 bytes at layer 0
    node_ram = 256 * 2**30 * 0.7  # a 256 GiB node, 70% for vectors and graph
    shard = p["systems"]["sharded x1"]["indexed"]
    lines = ["## Capacity model (written, not measured at that scale)", "",
             "Memory per vector = codes + HNSW32 links (~256 B); full vectors for the exact "
             "refine stay on disk (memory-mapped). A node: 256 GiB RAM, 70% for the index.", "",
             "| codec | bytes/vector in RAM | 100 M: RAM | 100 M: nodes | 1 B: RAM | 1 B: nodes |",
             "|---|---|---|---|---|---|"]
    for name, b in per.items():
        total = b + graph
        lines.append(f"| {name} | {total:,} | {total * 100e6 / 2**30:,.0f} GiB | "
                     f"{int(np.ceil(total * 100e6 / node_ram))} | "
                     f"{total * 1e9 / 2**30:,.0f} GiB | {int(np.ceil(total * 1e9 / node_ram))} |")
    own = p["systems"]["embedded"]["indexed"]  # a shard's own search, without the call
    hops = np.log(25e6) / np.log(p["items"])
    big = np.log(62.5e6) / np.log(p["items"])
    lines += ["",
              f"A shard's own search here: {own['qps']:,.0f} QPS on one core at "
              f"{p['items']:,} items (p50 {own['p50_ms']:.2f} ms, the embedded collection's). "
              f"A graph search costs about log(n) hops: a shard of 25 M items takes "
              f"log(25e6)/log({p['items']:,}) = {hops:.1f}x as many, so ~{own['qps'] / hops:,.0f}"
              " QPS per core before memory stalls (its codes no longer in cache: expect 2-4x "
              "less). Through Ray each query pays the scatter-gather on top "
              f"(+{shard['p50_ms'] - own['p50_ms']:.2f} ms at p50 for one shard here, growing "
              "with the shards on these 2 cores; on a cluster one network round trip, the "
              "shards in parallel). Every query visits every shard: the whole serves what its "
              "slowest shard serves times the cores each shard has, and p99 grows with the "
              "shard count.",
              f"A 1 B-vector SQ8 deployment by this model: 4 nodes of 256 GiB hold the codes "
              f"and graph, as 16 shards of 62.5 M (4 a node, 8 of a node's 32 cores each). A "
              f"shard's search costs log(62.5e6)/log({p['items']:,}) = {big:.1f}x the hops "
              f"measured here: ~{own['qps'] / big:,.0f} QPS a core, so ~"
              f"{8 * own['qps'] / big:,.0f} QPS for the whole (every query visits all 16 "
              f"shards; each node serves its 4 in parallel), or 2-4x less once cache misses "
              f"dominate."]
    return "\n".join(lines)


def plot(p: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(p["systems"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].bar(names, [p["systems"][n]["ingest_per_s"] for n in names])
    axes[0].set_title("ingest (items/s)")
    for ax, mode in zip(axes[1:], ("exact", "indexed"), strict=True):
        ax.bar(names, [p["systems"][n][mode]["qps"] for n in names])
        ax.set_title(f"{mode} search QPS (one stream)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
