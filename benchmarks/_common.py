"""Shared helpers for the benchmarks: data loading, timing, peak RAM, result files."""

from __future__ import annotations

import json
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times


def machine() -> dict[str, Any]:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "numpy": np.__version__}


def write_results(name: str, payload: dict[str, Any], table: str,
                  folder: Path | None = None) -> Path:
    out = RESULTS if folder is None else folder
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / f"{name}.md").write_text(table + "\n")
    return out / f"{name}.json"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- recall, frontiers
def exact_kth(base: np.ndarray, q: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Exact (float64) inner-product score of the k-th neighbour of each query, from its exact
    top-``k`` ids ``(nq, >=k)``: the bar a returned row must reach in :func:`tie_recall`."""
    rows = np.asarray(ids)[:, :k]
    x = base[np.maximum(rows, 0)].astype(np.float64)
    s = np.einsum("qkd,qd->qk", x, q.astype(np.float64))
    return np.where(rows >= 0, s, np.inf).min(axis=1)


def tie_recall(ids: np.ndarray, base: np.ndarray, q: np.ndarray, kth: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> float:
    """Tie-tolerant recall@k for inner-product data (as ``ann.recall_at_k``): a returned row
    counts when its exact score reaches the exact k-th best, it is not a repeat, and (with
    ``allowed``, a bool mask over rows) it may be returned at all."""
    rows = np.sort(np.asarray(ids, dtype=np.int64)[:, :k], axis=1)
    fresh = np.ones(rows.shape, bool)
    fresh[:, 1:] = rows[:, 1:] != rows[:, :-1]
    valid = rows >= 0
    x = base[np.maximum(rows, 0)].astype(np.float64)
    s = np.einsum("qkd,qd->qk", x, q.astype(np.float64))
    tol = 1e-6 * np.maximum(1.0, np.abs(kth))[:, None]
    hit = (s >= kth[:, None] - tol) & fresh & valid
    if allowed is not None:
        hit &= allowed[np.maximum(rows, 0)]
    return float(hit.sum() / (len(rows) * k))


def qps_at(points: list[tuple[float, float]], level: float) -> float | None:
    """QPS at exactly ``level`` on the recall/QPS frontier of ``(recall, qps)`` points,
    log-QPS interpolated between the frontier points around it (as ``ann.qps_at``); ``None``
    if no point reaches the level."""
    import math

    front: list[tuple[float, float]] = []  # ascending recall, descending QPS
    for r, q in sorted(points, reverse=True):
        if not front or q > front[0][1]:
            front.insert(0, (r, q))
    above = [f for f in front if f[0] >= level]
    below = [f for f in front if f[0] < level]
    if not above:
        return None
    (r1, q1), lower = above[0], below[-1] if below else None
    if lower is None or r1 == level:
        return q1
    r0, q0 = lower
    t = (level - r0) / (r1 - r0)
    return float(math.exp(math.log(q0) + t * (math.log(q1) - math.log(q0))))


def proc_status() -> dict[str, int]:
    """This process's memory lines of /proc/self/status, in bytes (VmRSS, RssAnon, ...)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def proc_write_bytes() -> int:
    """Bytes this process caused to be written to storage (/proc/self/io write_bytes)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0
