"""Exact search and durable ingest on the Debian MiniLM data (58,026 x 384, 2,000 queries).

Batched exact top-10 of all 2,000 queries at once, two threads everywhere:
polyvec (f32 and f16 storage) vs faiss ``IndexFlatIP`` vs a plain numpy matrix product with
``argpartition``. Runs are interleaved and repeated; the median is reported. Then the durable
ingest rate: batches of 1,000 vectors with payloads, each batch one committed (fsync'd) SQLite
transaction.

    python benchmarks/exact.py [--repeats 5]

Writes benchmarks/results/exact.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    DATA,
    RESULTS,
    machine,
    markdown_table,
    peak_rss_mib,
    read_jsonl,
    write_results,
)

import polyvec as pv  # noqa: E402

K = 10


def recall(ids: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(ids, gt,
                                                                                      strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    d = DATA / "debian-minilm"
    base = np.load(d / "base_f16.npy").astype(np.float32)
    queries = np.load(d / "queries_f16.npy").astype(np.float32)
    gt = np.load(d / "gt_top100_ids.npy")[:, :K]
    docs = read_jsonl(d / "docs.jsonl")
    payloads = [{"package": x["package"], "section": x["section"]} for x in docs]
    n, nq = len(base), len(queries)
    faiss.omp_set_num_threads(2)

    tmp = tempfile.mkdtemp(prefix="polyvec-bench-")
    db = pv.connect(tmp)

    # -- durable ingest: batches of 1,000 with payloads --------------------------------------
    ingest = db.create_collection("ingest", {"v": pv.Dense(384, metric="dot")})
    t = time.perf_counter()
    for lo in range(0, n, 1000):
        ingest.add(list(range(lo, min(n, lo + 1000))), {"v": base[lo:lo + 1000]},
                   payloads[lo:lo + 1000])
    ingest_s = time.perf_counter() - t
    ingest.flush()

    f16 = db.create_collection("f16", {"v": pv.Dense(384, metric="dot", dtype="f16")})
    for lo in range(0, n, 10_000):
        f16.add(list(range(lo, min(n, lo + 10_000))), {"v": base[lo:lo + 10_000]})
    f16.flush()

    index = faiss.IndexFlatIP(384)
    index.add(base)

    def run_numpy() -> np.ndarray:
        s = queries @ base.T
        return np.argpartition(-s, K, axis=1)[:, :K]

    systems = {
        "faiss IndexFlatIP": lambda: index.search(queries, K)[1],
        "polyvec exact (f32)": lambda: ingest.search(queries, k=K).ids.astype(np.int64),
        "polyvec exact (f16)": lambda: f16.search(queries, k=K).ids.astype(np.int64),
        "numpy matmul + argpartition": run_numpy,
    }
    answers = {name: fn() for name, fn in systems.items()}  # warm-up (page cache, JIT)
    times: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(args.repeats):
        for name, fn in systems.items():  # interleaved, so drift hits every system alike
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)

    flops = 2.0 * n * nq * 384
    faiss_med = float(np.median(times["faiss IndexFlatIP"]))
    rows, results = [], []
    for name in systems:
        med = float(np.median(times[name]))
        r = {"system": name, "median_s": med, "qps": nq / med, "gflops": flops / med / 1e9,
             "vs_faiss": faiss_med / med, "recall_at_10": recall(answers[name], gt),
             "times_s": times[name]}
        results.append(r)
        rows.append([name, f"{med:.3f}", f"{r['qps']:,.0f}", f"{r['gflops']:.0f}",
                     f"{r['vs_faiss']:.2f}x", f"{r['recall_at_10']:.4f}"])
    table = markdown_table(["system", "median s (2,000 queries)", "QPS", "GFLOP/s",
                            "throughput vs faiss", "recall@10 vs dataset GT"], rows)
    table += (f"\n\nDurable ingest: {n:,} items (384-d f32 + payload) in batches of 1,000, one "
              f"fsync'd transaction each: {ingest_s:.2f} s = **{n / ingest_s:,.0f} items/s**."
              f"\nPeak RSS of the benchmark process: {peak_rss_mib():,.0f} MiB.")
    write_results("exact", {"machine": machine(), "n": n, "nq": nq, "k": K, "threads": 2,
                            "repeats": args.repeats, "search": results,
                            "ingest_items_per_s": n / ingest_s, "ingest_s": ingest_s,
                            "peak_rss_mib": peak_rss_mib()}, table)
    plot(results)
    print(table)


def plot(results: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install 'polyvec[eval]')")
        return
    fig, ax = plt.subplots(figsize=(7, 3))
    names = [r["system"] for r in results]
    ax.barh(names, [r["qps"] for r in results], color="#4477aa")
    ax.set_xlabel("QPS (2,000 queries batched, 2 threads, exact top-10)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(RESULTS / "exact.png", dpi=120)


if __name__ == "__main__":
    main()
