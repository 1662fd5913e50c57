"""polyvec's HTTP server against Chroma's (``chroma run``), loopback only, bounded in time.

Data: the Debian MiniLM vectors (58,026 x 384, ``../shared/data/debian-minilm``), their queries
and exact top-10. Built once into ``--workdir``: a polyvec folder with an exact collection
(default settings, no index) and one indexed ``HNSW32,SQ8,Refine``, and a Chroma folder (HNSW,
cosine, its defaults) filled through its own server.

Measured, for each system, through the client a user calls (``pv.Client``; ``chromadb``'s
``HttpClient``, run from Chroma's own environment ``--chroma-python``): one-query searches
(k=10) from 1 and 32 concurrent clients (client processes x threads), polyvec with 1 and 2
workers, and a 90% search / 10% write mix (a write is an upsert of one item of a random
direction with a payload; a run first deletes what earlier runs wrote). polyvec's HNSW also
runs with no knobs (the server's defaults), and each system's cold start is timed: a new
server process until it answers, then a fresh client's first search.
Each measurement runs ``--seconds``; systems alternate over ``--rounds`` rounds and the
medians are reported. Recall@10 of each system's setting comes first, on the same queries;
polyvec's HNSW runs at the smallest ``ef`` whose recall reaches Chroma's ("equal recall").
The server's p50 overhead is its single-client p50 minus the embedded ``Collection.search``
p50 at the same setting, in the same run.

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/server.py --workdir /tmp/pv-server \\
        --chroma-python /tmp/chromavenv/bin/python

Results: ``benchmarks/results/server.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _common import DATA, RESULTS, machine, markdown_table, write_results

K = 10
PACE_S = 0.001  # the idle gap of the paced embedded reference (about a round trip's)
DEBIAN = DATA / "debian-minilm"
EFS = [16, 24, 32, 48, 64, 96, 128, 192]

# a client process: THREADS threads searching (and writing a fraction of the time) for
# SECONDS; CONNECT, SEARCH and WRITE are each system's own client calls
HARNESS = r"""
import json, sys, threading, time, numpy as np
import numpy.random  # before the threads: its lazy import races (a RecursionError)
{imports}
target, coll, threads, seconds, write, seed, qfile = sys.argv[1:8]
threads, seconds, write = int(threads), float(seconds), float(write)
qs = np.load(qfile)
lat, errors, lock = [], [0], threading.Lock()
start = threading.Barrier(threads + 1)
def run(t):
    rng = np.random.default_rng(int(seed) * 100 + t)
    c = {connect}
    q = qs[0]
    {search}
    start.wait()
    mine, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        i = int(rng.integers(len(qs)))
        q, new = qs[i], 10**9 + int(rng.integers(10**6))
        t0 = time.perf_counter()
        try:
            if rng.random() < write:  # a new item of a random direction: no query's match
                w = rng.standard_normal(qs.shape[1]).astype(np.float32)
                {write}
            else:
                {search}
        except Exception:
            errors[0] += 1
            continue
        mine.append(time.perf_counter() - t0)
    with lock:
        lat.extend(mine)
ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for t in ts: t.start()
start.wait()
print("go", flush=True)
for t in ts: t.join()
print(json.dumps({{"lat": lat, "errors": errors[0]}}), flush=True)
"""
POLYVEC_CHILD = HARNESS.format(
    imports="from polyvec.client import Client\nknobs = json.loads(sys.argv[8])",
    connect="Client(target).get_collection(coll)",
    search="c.search(q, k=10, **knobs)",
    write="c.upsert([new], w[None], [{'w': t}])")
CHROMA_CHILD = HARNESS.format(
    imports="import chromadb",
    connect="chromadb.HttpClient(host=target.split(':')[0], "
            "port=int(target.split(':')[1])).get_collection(coll)",
    search="c.query(query_embeddings=[q.tolist()], n_results=10)",
    write="c.upsert(ids=[str(new)], embeddings=[w.tolist()], metadatas=[{'w': t}])")

CHROMA_BUILD = r"""
import sys, numpy as np, chromadb
host, port, coll, xfile = sys.argv[1:5]
x = np.load(xfile)
client = chromadb.HttpClient(host=host, port=int(port))
names = [c.name for c in client.list_collections()]
if coll not in names:
    c = client.create_collection(coll, metadata={"hnsw:space": "cosine"})
    for lo in range(0, len(x), 1000):
        c.add(ids=[str(i) for i in range(lo, min(len(x), lo + 1000))],
              embeddings=x[lo:lo + 1000].tolist())
c = client.get_collection(coll)
c.delete(where={"w": {"$gte": 0}})  # the items an earlier run's writes added
print(c.count(), flush=True)
"""

CHROMA_FORGET = r"""
import sys, chromadb
host, port, coll = sys.argv[1:4]
chromadb.HttpClient(host=host, port=int(port)).get_collection(coll).delete(
    where={"w": {"$gte": 0}})
"""

# a fresh client's first search of a server just started (the server's cold start)
POLYVEC_FIRST = r"""
import json, sys, time, numpy as np
from polyvec.client import Client
target, coll, qfile, knobs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
q = np.load(qfile)[0]
c = Client(target).get_collection(coll)
t = time.perf_counter()
c.search(q, k=10, **knobs)
print(json.dumps({"first_ms": (time.perf_counter() - t) * 1e3}), flush=True)
"""
CHROMA_FIRST = r"""
import json, sys, time, numpy as np, chromadb
target, coll, qfile = sys.argv[1], sys.argv[2], sys.argv[3]
q = np.load(qfile)[0]
host, port = target.split(":")
c = chromadb.HttpClient(host=host, port=int(port)).get_collection(coll)
t = time.perf_counter()
c.query(query_embeddings=[q.tolist()], n_results=10)
print(json.dumps({"first_ms": (time.perf_counter() - t) * 1e3}), flush=True)
"""

CHROMA_IDS = r"""
import json, sys, numpy as np, chromadb
host, port, coll, qfile = sys.argv[1:5]
c = chromadb.HttpClient(host=host, port=int(port)).get_collection(coll)
qs = np.load(qfile)
out = []
for lo in range(0, len(qs), 50):
    r = c.query(query_embeddings=qs[lo:lo + 50].tolist(), n_results=10)
    out += [[int(i) for i in row] for row in r["ids"]]
print(json.dumps(out), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[Any], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not come up at {url}")


def cold_start(server: list[str], probe: str, first: list[str]) -> dict[str, float]:
    """Start ``server``, time until ``probe`` answers, then a fresh client process's first
    search (``first`` prints ``{"first_ms"}``), and stop the server."""
    t = time.perf_counter()
    p = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        wait_http(probe, p, server[0])
        ready = time.perf_counter() - t
        got = subprocess.run(first, check=True, capture_output=True, text=True)
        return {"ready_s": ready, **json.loads(got.stdout.strip().splitlines()[-1])}
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(20)


def forget_writes(c: Any, n: int) -> None:
    """Delete what the mix's writes added to collection ``c`` (ids past the ``n`` base
    items), and compact them away."""
    written = [i for i in c if i >= n]
    if written:
        c.delete(written)
        c.compact()
        c.wait_for_maintenance()


def build_polyvec(folder: Path, x: np.ndarray) -> None:
    import polyvec as pv

    db = pv.connect(folder)
    for name, index in (("exact", None), ("hnsw", "HNSW32,SQ8,Refine")):
        if name in db.list_collections():
            forget_writes(db.get_collection(name), len(x))  # an interrupted run's writes
            continue
        c = db.create_collection(name, {"v": pv.Dense(384)})
        for lo in range(0, len(x), 10_000):
            c.add(list(range(lo, min(len(x), lo + 10_000))), {"v": x[lo:lo + 10_000]})
        c.wait_for_maintenance()
        if index:
            c.create_index("v", index)
    db.close()


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K
                          for a, b in zip(ids, truth, strict=True)]))


class Load:
    """One measurement: ``procs`` client processes of ``threads`` threads each."""

    def __init__(self, cmd: list[str], procs: int) -> None:
        self.children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
                         for _ in range(procs)]

    def run(self) -> dict[str, Any]:
        for ch in self.children:  # every thread connected and warm
            assert ch.stdout is not None and ch.stdout.readline().strip() == "go"
        t0 = time.perf_counter()
        outs = [json.loads(ch.communicate()[0].strip().splitlines()[-1]) for ch in self.children]
        wall = time.perf_counter() - t0
        lat = np.concatenate([np.asarray(o["lat"]) for o in outs]) * 1e3
        return {"qps": len(lat) / wall, "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)), "requests": int(len(lat)),
                "errors": int(sum(o["errors"] for o in outs))}


def split(clients: int) -> tuple[int, int]:
    """(processes, threads per process) for ``clients`` concurrent clients."""
    return (1, 1) if clients == 1 else (4, clients // 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pv-server")
    ap.add_argument("--chroma-python", default=None, help="python of an env with chromadb")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    t_start = time.perf_counter()
    args.workdir.mkdir(parents=True, exist_ok=True)
    x = np.load(DEBIAN / "base_f16.npy").astype(np.float32)
    q = np.load(DEBIAN / "queries_f16.npy").astype(np.float32)[:args.queries]
    truth = np.load(DEBIAN / "gt_top100_ids.npy")[:len(q), :K]
    qfile = args.workdir / "queries.npy"
    np.save(qfile, q)
    xfile = args.workdir / "base.npy"
    if not xfile.exists():
        np.save(xfile, x)
    folder = args.workdir / "polyvec"
    build_polyvec(folder, x)

    import polyvec as pv

    procs: list[subprocess.Popen[Any]] = []
    out: dict[str, Any] = {"benchmark": "server", "issue": 13, "machine": machine(),
                           "n": len(x), "queries": len(q), "seconds": args.seconds,
                           "rounds": args.rounds}
    try:
        servers = {}
        for workers in (1, 2):
            port = free_port()
            p = subprocess.Popen([sys.executable, "-m", "polyvec.cli", "--db", str(folder),
                                  "serve", "--port", str(port), "--workers", str(workers)],
                                 stdout=subprocess.DEVNULL, start_new_session=True)
            procs.append(p)
            wait_http(f"http://127.0.0.1:{port}/healthz", p, f"polyvec serve ({workers}w)")
            servers[workers] = f"http://127.0.0.1:{port}"
        chroma = None
        if args.chroma_python:
            cport = free_port()
            cp = subprocess.Popen([str(Path(args.chroma_python).parent / "chroma"), "run",
                                   "--path", str(args.workdir / "chroma"), "--port", str(cport)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
            procs.append(cp)
            wait_http(f"http://127.0.0.1:{cport}/api/v2/heartbeat", cp, "chroma run")
            t = time.perf_counter()
            subprocess.run([args.chroma_python, "-c", CHROMA_BUILD, "127.0.0.1", str(cport),
                            "debian", str(xfile)], check=True, capture_output=True)
            out["chroma_build_s"] = round(time.perf_counter() - t, 1)
            got = subprocess.run([args.chroma_python, "-c", CHROMA_IDS, "127.0.0.1",
                                  str(cport), "debian", str(qfile)], check=True,
                                 capture_output=True, text=True)
            chroma_recall = recall(np.asarray(json.loads(got.stdout.strip().splitlines()[-1])),
                                   truth)
            chroma = ("127.0.0.1", cport, chroma_recall)
            out["chroma"] = {"recall": chroma_recall, "index": "HNSW (Chroma defaults), cosine"}

        # polyvec's setting at equal recall: the smallest ef reaching Chroma's (or 0.95)
        emb = pv.connect(folder, create=False)
        hnsw = emb.get_collection("hnsw")
        exact = emb.get_collection("exact")
        level = chroma[2] if chroma else 0.95
        curve = []
        for ef in EFS:
            r = recall(hnsw.search(q, k=K, ef=ef, oversample=2.0).ids.astype(np.int64), truth)
            curve.append({"ef": ef, "recall": r})
            if r >= level:
                break
        knobs = {"ef": curve[-1]["ef"], "oversample": 2.0}
        out["polyvec_hnsw"] = {"knobs": knobs, "recall": curve[-1]["recall"], "curve": curve,
                               "level": level}
        out["polyvec_exact_recall"] = recall(exact.search(q, k=K).ids.astype(np.int64), truth)

        # embedded single-query p50 at the same settings (the overhead's reference): calls
        # back to back, and calls PACE_S apart (a server's round trips keep its searches
        # apart: an exact scan's two BLAS threads then start from idle CPUs, ~0.5 ms slower)
        def embedded_p50(c: Any, kn: dict[str, Any], gap: float = 0.0) -> float:
            lat = []
            for qi in q:
                if gap:
                    time.sleep(gap)
                t0 = time.perf_counter()
                c.search(qi, k=K, **kn)
                lat.append(time.perf_counter() - t0)
            return float(np.percentile(np.asarray(lat) * 1e3, 50))

        out["polyvec_hnsw_default_recall"] = recall(hnsw.search(q, k=K).ids.astype(np.int64),
                                                    truth)
        scenarios: list[tuple[str, Any]] = []
        for name, kn in (("exact", {}), ("hnsw", knobs)):
            for workers in (1, 2):
                for clients in (1, 32):
                    scenarios.append((f"polyvec {name} {workers}w {clients}c",
                                      ("polyvec", servers[workers], name, kn, clients, 0.0)))
            for workers in (1, 2):
                scenarios.append((f"polyvec {name} {workers}w 32c mix",
                                  ("polyvec", servers[workers], name, kn, 32, 0.1)))
        for workers, clients in ((1, 1), (1, 32), (2, 32)):  # no knobs: the server's defaults
            scenarios.append((f"polyvec hnsw defaults {workers}w {clients}c",
                              ("polyvec", servers[workers], "hnsw", {}, clients, 0.0)))
        if chroma:
            for clients in (1, 32):
                scenarios.append((f"chroma hnsw {clients}c",
                                  ("chroma", chroma, "debian", {}, clients, 0.0)))
            scenarios.append(("chroma hnsw 32c mix", ("chroma", chroma, "debian", {}, 32, 0.1)))
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s, _ in scenarios}
        emb_p50: dict[str, list[float]] = {k: [] for k in ("exact", "hnsw", "exact paced",
                                                           "hnsw paced")}
        for rnd in range(args.rounds):
            order = scenarios[rnd % len(scenarios):] + scenarios[:rnd % len(scenarios)]
            emb_p50["exact"].append(embedded_p50(exact, {}))
            emb_p50["hnsw"].append(embedded_p50(hnsw, knobs))
            emb_p50["exact paced"].append(embedded_p50(exact, {}, PACE_S))
            emb_p50["hnsw paced"].append(embedded_p50(hnsw, knobs, PACE_S))
            for label, (system, where, coll, kn, clients, write) in order:
                nproc, threads = split(clients)
                tail = [coll, str(threads), str(args.seconds), str(write), str(rnd), str(qfile)]
                if system == "polyvec":
                    cmd = [sys.executable, "-c", POLYVEC_CHILD, where, *tail, json.dumps(kn)]
                else:
                    host, port, _ = where
                    cmd = [args.chroma_python, "-c", CHROMA_CHILD, f"{host}:{port}", *tail]
                res = Load(cmd, nproc).run()
                runs[label].append(res)
                if write:  # the written items go, so every measurement sees the same data
                    if system == "polyvec":
                        forget_writes(emb.get_collection(coll), len(x))
                    else:
                        subprocess.run([args.chroma_python, "-c", CHROMA_FORGET, host,
                                        str(port), coll], check=True, capture_output=True)
                print(f"round {rnd} {label:28s} {res['qps']:8.0f} QPS  p50 "
                      f"{res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  "
                      f"errors {res['errors']}", flush=True)
        emb.close()
        if chroma:  # its folder is free for a fresh server now (polyvec's is shared anyway)
            os.killpg(procs[-1].pid, signal.SIGTERM)
            procs[-1].wait(20)
        cold: dict[str, list[dict[str, float]]] = {"polyvec": [], "chroma": []}
        for rnd in range(args.rounds):  # a new server process's first search, alternated
            port = free_port()
            cold["polyvec"].append(cold_start(
                [sys.executable, "-m", "polyvec.cli", "--db", str(folder), "serve", "--port",
                 str(port)], f"http://127.0.0.1:{port}/healthz",
                [sys.executable, "-c", POLYVEC_FIRST, f"http://127.0.0.1:{port}", "hnsw",
                 str(qfile), "{}"]))
            if chroma:
                port = free_port()
                cold["chroma"].append(cold_start(
                    [str(Path(args.chroma_python).parent / "chroma"), "run", "--path",
                     str(args.workdir / "chroma"), "--port", str(port)],
                    f"http://127.0.0.1:{port}/api/v2/heartbeat",
                    [args.chroma_python, "-c", CHROMA_FIRST, f"127.0.0.1:{port}", "debian",
                     str(qfile)]))
            print(f"round {rnd} cold start {cold}", flush=True)
        out["cold_start"] = {system: {k: statistics.median(r[k] for r in rs)
                                      for k in ("ready_s", "first_ms")}
                             for system, rs in cold.items() if rs}
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):  # (Chroma's may be stopped)
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    med = {label: {k: statistics.median(r[k] for r in rs) for k in ("qps", "p50_ms", "p99_ms")}
           | {"errors": sum(r["errors"] for r in rs)} for label, rs in runs.items()}
    out["scenarios"] = med
    out["runs"] = runs
    out["embedded_p50_ms"] = {k: statistics.median(v) for k, v in emb_p50.items()}
    overhead = {name: med[f"polyvec {name} 1w 1c"]["p50_ms"] - out["embedded_p50_ms"][name]
                for name in ("exact", "hnsw")}
    out["server_p50_overhead_ms"] = overhead
    out["server_p50_overhead_paced_ms"] = paced = {
        name: med[f"polyvec {name} 1w 1c"]["p50_ms"] - out["embedded_p50_ms"][f"{name} paced"]
        for name in ("exact", "hnsw")}
    if chroma:
        out["vs_chroma_32c"] = {f"{w}w": med[f"polyvec hnsw {w}w 32c"]["qps"]
                                / med["chroma hnsw 32c"]["qps"] for w in (1, 2)}
        out["vs_chroma_32c_mix"] = {f"{w}w": med[f"polyvec hnsw {w}w 32c mix"]["qps"]
                                    / med["chroma hnsw 32c mix"]["qps"] for w in (1, 2)}
        out["vs_chroma_32c_defaults"] = {f"{w}w": med[f"polyvec hnsw defaults {w}w 32c"]["qps"]
                                         / med["chroma hnsw 32c"]["qps"] for w in (1, 2)}
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    rows = [[label, f"{m['qps']:,.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}", m["errors"]]
            for label, m in med.items()]
    text = ["# Server benchmark (issue 13)\n",
            f"Debian {len(x):,} x 384, {len(q)} queries, k={K}, loopback, 2-CPU machine; "
            f"medians of {args.rounds} rounds of {args.seconds:.0f} s, systems alternated. "
            f"polyvec HNSW32,SQ8,Refine at {knobs} (recall {curve[-1]['recall']:.3f}); "
            f"exact recall {out['polyvec_exact_recall']:.3f}"
            + (f"; Chroma HNSW defaults, recall {chroma[2]:.3f}." if chroma else "."), "",
            markdown_table(["scenario", "QPS", "p50 ms", "p99 ms", "errors"], rows), "",
            f"Server p50 overhead over embedded `Collection.search` (1 worker, 1 client): "
            f"exact {overhead['exact']:.2f} ms, HNSW {overhead['hnsw']:.2f} ms "
            f"(embedded p50 {out['embedded_p50_ms']['exact']:.2f} / "
            f"{out['embedded_p50_ms']['hnsw']:.2f} ms, calls back to back); against "
            f"embedded calls {PACE_S * 1e3:g} ms apart: exact {paced['exact']:.2f} ms, HNSW "
            f"{paced['hnsw']:.2f} ms (embedded p50 {out['embedded_p50_ms']['exact paced']:.2f}"
            f" / {out['embedded_p50_ms']['hnsw paced']:.2f} ms)."]
    if out.get("cold_start"):
        text.append("\nA new server process (1 worker) until it answers its probe, then a "
                    "fresh client's first search (polyvec: HNSW at the server's defaults): "
                    + "; ".join(f"{system} ready {c['ready_s']:.2f} s, first search "
                                f"{c['first_ms']:.1f} ms"
                                for system, c in out["cold_start"].items()) + ".")
    text.append(f"\npolyvec HNSW at the server's default settings (no knobs): recall "
                f"{out['polyvec_hnsw_default_recall']:.3f}.")
    if chroma:
        text.append("\npolyvec / Chroma at 32 clients (search): "
                    + ", ".join(f"{k} {v:.2f}x" for k, v in out["vs_chroma_32c"].items())
                    + "; 90/10 mix: "
                    + ", ".join(f"{k} {v:.2f}x" for k, v in out["vs_chroma_32c_mix"].items())
                    + "; at the server's default settings (recall "
                    f"{out['polyvec_hnsw_default_recall']:.3f}): "
                    + ", ".join(f"{k} {v:.2f}x"
                                for k, v in out["vs_chroma_32c_defaults"].items()))
    text.append(f"\nWall {out['wall_s']} s. Command: `PYTHONPATH=benchmarks python "
                f"benchmarks/server.py --workdir {args.workdir}"
                + (f" --chroma-python {args.chroma_python}" if args.chroma_python else "")
                + f" --seconds {args.seconds:g} --rounds {args.rounds}`")
    write_results("server", out, "\n".join(text), args.results)
    plot(med, args.results / "server.png")
    print("\n".join(text))


def plot(med: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(med)
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.35 * len(labels) + 1.5))
    y = np.arange(len(labels))
    axes[0].barh(y, [med[k]["qps"] for k in labels], color=["#c44" if "chroma" in k
                                                           else "#36c" for k in labels])
    axes[0].set_yticks(y, labels)
    axes[0].set_xlabel("QPS")
    axes[0].invert_yaxis()
    axes[1].barh(y - 0.2, [med[k]["p50_ms"] for k in labels], height=0.4, label="p50")
    axes[1].barh(y + 0.2, [med[k]["p99_ms"] for k in labels], height=0.4, label="p99")
    axes[1].set_yticks(y, [""] * len(labels))
    axes[1].set_xscale("log")
    axes[1].set_xlabel("latency (ms)")
    axes[1].invert_yaxis()
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
