"""Sharded collections on Ray against the embedded collection, on the Debian vectors.

Systems, each through the API a user calls, all alive at once on one local Ray node:
- ``embedded``: ``polyvec.connect(...).create_collection`` in this process;
- ``sharded xN``: ``polyvec.distributed.connect_ray(...).create_collection(shards=N)`` for
  N = 1, 2, 4 (one replica each), each shard a Ray actor in its own process.

Measured per system: ingest rate (``add`` in batches of 1,000 from this process, then
``flush``), index build (``create_index``, shards in parallel), and one query per call
from one client thread: QPS, p50, p99, exact (no index), indexed (``HNSW32,SQ8,Refine`` at
``target_recall=0.95``, calibrated on 200 held-out queries) and indexed at the default
settings (no knob), recall@10 against exact. Every process keeps its default threads (a
shard actor gets its node's cores over the collection's replicas there).
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

import polyvec as pv

K = 10
SPEC = "HNSW32,SQ8,Refine"
SHARDS = [1, 2, 4]
SAMPLES = slice(1000, 1200)  # calibration queries (not measured)
MODES: dict[str, dict[str, Any]] = {  # (in this order: the index is built before "indexed")
    "exact": {},  # no index
    "indexed": {"target_recall": 0.95},
    "indexed default": {},  # the index at its default parameters, no knob given
}


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


def texts_ingest(workdir: Path, rdb: Any, n: int) -> dict[str, float]:
    """``polyvec.distributed.ingest`` of the first ``n`` Debian descriptions from JSONL into a
    new collection of each system (MiniLM attached: Ray Data embeds in one worker, this
    process writes); items a second, the whole call (the worker's model load included)."""
    import json

    from polyvec.distributed import ingest as ingest_
    from polyvec.embed import minilm

    path = workdir / "texts.jsonl"
    with open(DATA / "debian-minilm" / "docs.jsonl") as f, open(path, "w") as out:
        for _ in range(n):
            d = json.loads(next(f))
            out.write(json.dumps({"id": d["id"], "text": d["description"][:1000],
                                  "section": d["section"]}) + "\n")
    model = minilm()
    made = {"embedded": pv.connect(workdir / "texts").create_collection(
        "texts", {"v": pv.Dense(384)})}
    for shards in SHARDS:
        made[f"sharded x{shards}"] = rdb.create_collection(f"texts{shards}", {"v": pv.Dense(384)},
                                                            shards=shards)
    out_rates = {}
    for name, coll in made.items():
        coll.use_embedder("v", model)
        t = time.perf_counter()
        assert ingest_(coll, str(path), batch_size=256) == n
        out_rates[name] = n / (time.perf_counter() - t)
    return out_rates


def timed(coll: Any, q: np.ndarray, **knobs: Any) -> tuple[list[float], list[list[int]]]:
    times, ids = [], []
    for i in range(len(q)):
        t = time.perf_counter()
        res = coll.search(q[i], k=K, **knobs)
        times.append(time.perf_counter() - t)
        ids.append([int(x) for x in res.ids if x is not None])
    return times, ids


def _inside(replica: Any, q: np.ndarray, knobs: dict[str, Any]) -> list[float]:
    """(Run in a shard's actor) each query's search timed there, without the call."""
    times = []
    for x in q:
        t = time.perf_counter()
        replica.coll.search(x, K, **knobs)
        times.append(time.perf_counter() - t)
    return times


def in_shard(coll: Any, q: np.ndarray, **knobs: Any) -> list[float]:
    """The first shard's own search times, measured inside its actor."""
    import ray

    actor = coll._replicas[coll.ring.shards[0]][0].actor
    return list(ray.get(actor.__ray_call__.remote(_inside, q, knobs)))


def recall(ids: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(t[:K].tolist())) / K for a, t in zip(
        ids, truth, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pv-dist"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--items", type=int, default=0, help="use the first N items (0: all)")
    ap.add_argument("--texts", type=int, default=1_000,
                    help="descriptions ingested through ingest() with MiniLM (0: skip)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--from-json", type=Path, help="write the report again from a run's JSON")
    args = ap.parse_args()
    if args.from_json:
        import json

        payload = json.loads(args.from_json.read_text())
        write_results("distributed", payload, report(payload), args.out)
        plot(payload, args.out / "distributed.png")
        return
    import ray

    from polyvec.distributed import connect_ray

    data = load()
    base, q = data["base"], data["queries"][:args.queries]
    if args.items:
        base = base[:args.items]
    truth = np.argsort(-(q @ base.T), axis=1)[:, :K]
    shutil.rmtree(args.workdir, ignore_errors=True)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False)
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
    if args.texts:
        for name, per_s in texts_ingest(args.workdir, rdb, args.texts).items():
            rows[name]["texts_per_s"] = per_s
        print({k: round(r["texts_per_s"]) for k, r in rows.items()}, flush=True)
    runs: dict[str, dict[str, list[float]]] = {n: {} for n in systems}
    recalls: dict[str, dict[str, float]] = {n: {} for n in systems}
    for mode, knobs in MODES.items():
        if mode == "indexed":
            for name, c in systems.items():
                t = time.perf_counter()
                c.create_index("v", SPEC, sample_queries=data["queries"][SAMPLES])
                rows[name]["build_s"] = time.perf_counter() - t
        for c in systems.values():  # warm: a new process's first queries apart (numba
            timed(c, q[:100], **knobs)  # loads its kernels in the background after them)
        time.sleep(10)
        for c in systems.values():
            timed(c, q[:50], **knobs)
        for rnd in range(args.rounds):
            for name, c in systems.items():
                times, ids = timed(c, q, **knobs)
                if name != "embedded":
                    runs[name].setdefault(f"{mode} in shard", []).extend(
                        in_shard(c, q, **knobs))
                runs[name].setdefault(mode, []).extend(times)
                runs[name].setdefault(f"{mode} qps", []).append(len(times) / sum(times))
                recalls[name][mode] = recall(ids, truth)
                print(f"round {rnd + 1} {mode} {name}: {len(times) / sum(times):.0f} QPS",
                      flush=True)
    for name in systems:
        for mode in MODES:
            t = np.array(runs[name][mode]) * 1e3
            rows[name][mode] = {"qps": float(np.median(runs[name][f"{mode} qps"])),
                                "qps_rounds": runs[name][f"{mode} qps"],
                                "p50_ms": float(np.percentile(t, 50)),
                                "p99_ms": float(np.percentile(t, 99)),
                                "recall": recalls[name][mode]}
            inside = runs[name].get(f"{mode} in shard")
            if inside:  # the first shard's own search, timed in its actor
                rows[name][mode]["in_shard_p50_ms"] = float(np.percentile(inside, 50)) * 1e3
    payload = {"machine": machine(), "items": len(base), "queries": len(q), "k": K,
               "texts": args.texts,
               "spec": SPEC, "rounds": args.rounds, "systems": rows}
    table = report(payload)
    print(table)
    write_results("distributed", payload, table, args.out)
    plot(payload, args.out / "distributed.png")
    ray.shutdown()


def report(p: dict[str, Any]) -> str:
    rows, one = [], p["systems"]["embedded"]
    for name, r in p["systems"].items():
        rows.append([name, f"{r['ingest_per_s']:,.0f}",
                     f"{r['texts_per_s']:,.0f}" if "texts_per_s" in r else "-",
                     f"{r.get('build_s', 0):.1f}",
                     *(f"{r[m]['qps']:,.0f} / {r[m]['p50_ms']:.2f} / {r[m]['p99_ms']:.2f} / "
                       f"{r[m]['recall']:.3f}" for m in MODES),
                     f"{(r['indexed']['p50_ms'] - one['indexed']['p50_ms']):+.2f}",
                     " / ".join(f"{r[m].get('in_shard_p50_ms', r[m]['p50_ms']):.2f}"
                                for m in MODES)])
    head = (f"# Sharded collections on Ray: Debian {p['items']:,} x 384, k={p['k']}\n\n"
            f"{p['queries']} queries, one per call from one client thread, median of "
            f"{p['rounds']} alternated rounds; one local Ray node on this {p['machine']['cpus']}"
            "-core machine (CPU-bound: the shards, Ray and the client share the cores). "
            f"Indexed: `{p['spec']}` at `target_recall=0.95`; indexed default: the same index "
            "searched with no knob (its default parameters). Ingest: `add` of the vectors in "
            "batches of 1,000; `ingest()`: "
            f"{p.get('texts', 0):,} description texts from JSONL through "
            "`polyvec.distributed.ingest` with MiniLM attached (Ray Data embeds in one worker, "
            "the driver writes; the call timed whole, the worker's model load included; "
            "measured once a system).\n\n")
    table = markdown_table(["system", "ingest items/s", "ingest() of texts, items/s",
                            "index build s",
                            "exact QPS / p50 ms / p99 ms / recall",
                            "indexed QPS / p50 ms / p99 ms / recall",
                            "indexed default QPS / p50 ms / p99 ms / recall",
                            "indexed p50 vs embedded (ms)",
                            "p50 ms in the shard: exact / indexed / default"], rows)
    return head + table + "\n\n" + capacity(p)


def capacity(p: dict[str, Any]) -> str:
    """The written capacity model: memory per node for each codec at 100 M and 1 B
    vectors of 384 dims, the nodes and shards that takes, and QPS from the measured
    per-shard figures."""
    per = {"float32 (Flat)": 384 * 4, "F16": 384 * 2, "SQ8 + refine vectors on disk": 384,
           "PQ48 + refine vectors on disk": 48, "binary + refine vectors on disk": 48}
    graph = 32 * 2 * 4  # HNSW32: ~2M links of 4 bytes at layer 0
    node_ram = 256 * 2**30 * 0.7  # a 256 GiB node, 70% for vectors and graph
    per_node, cores = 4, 8  # shards a node, cores a shard (of a node's 32)
    shard = p["systems"]["sharded x1"]["indexed"]
    own = p["systems"]["embedded"]["indexed"]  # a shard's own search, without the call
    lines = ["## Capacity model (written, not measured at that scale)", "",
             "Memory per vector = codes + HNSW32 links (~256 B); full vectors for the exact "
             "refine stay on disk (memory-mapped). A node: 256 GiB RAM, 70% for the index, "
             f"32 cores as {per_node} shards of {cores} cores. QPS: a shard's own search "
             f"measured here ({own['qps']:,.0f} QPS a core at {p['items']:,} items) over the "
             "log(n) growth of a graph search's hops to the shard's size, times its "
             f"{cores} cores. Every query visits every shard, so the whole and each node "
             "serve that QPS (more shards add capacity for data, not for queries: replicas "
             "add those). Expect 2-4x less once the codes no longer fit in cache. The "
             "hops were measured with SQ8 codes for every row: a float32 hop costs more, a "
             "PQ or binary one less (not measured here).", "",
             "| codec | bytes/vector in RAM | vectors | RAM | nodes | RAM a node | shards | "
             "items a shard | QPS (whole = per node) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, b in per.items():
        total = b + graph
        for n in (100e6, 1e9):
            nodes = int(np.ceil(total * n / node_ram))
            shards = nodes * per_node
            hops = np.log(n / shards) / np.log(p["items"])
            lines.append(f"| {name} | {total:,} | {n / 1e6:,.0f} M | "
                         f"{total * n / 2**30:,.0f} GiB | {nodes} | "
                         f"{total * n / nodes / 2**30:,.0f} GiB | {shards} | "
                         f"{n / shards / 1e6:,.1f} M | {cores * own['qps'] / hops:,.0f} |")
    lines += ["",
              f"Through Ray each query pays the scatter-gather on top of the shards' own "
              f"search (+{shard['p50_ms'] - own['p50_ms']:.2f} ms at p50 for one shard here, "
              "growing with the shards on these 2 cores; on a cluster one network round "
              "trip, the shards in parallel), and p99 grows with the shard count: the "
              "slowest shard sets it."]
    return "\n".join(lines)


def plot(p: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(p["systems"])
    fig, axes = plt.subplots(1, 1 + len(MODES), figsize=(17, 3.8))
    axes[0].bar(names, [p["systems"][n]["ingest_per_s"] for n in names])
    axes[0].set_title("ingest (items/s)")
    for ax, mode in zip(axes[1:], MODES, strict=True):
        ax.bar(names, [p["systems"][n][mode]["qps"] for n in names])
        ax.set_title(f"{mode} search QPS (one stream)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
