"""Cost of compiling a payload filter into a selection over 100,000 items.

Indexed paths (in-memory columns) vs the same filters on non-indexed paths (SQLite JSON
functions), median of repeated ``collection.select(filter)`` calls.

    python benchmarks/filters.py

Writes benchmarks/results/filters.{json,md}.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
from _common import machine, markdown_table, write_results

import polyvec as pv

N = 100_000
FILTERS = {
    "equality": {"section": "python"},
    "range": {"year": {"$gte": 2015, "$lt": 2020}},
    "$in": {"section": {"$in": ["python", "doc", "libs"]}},
    "combined": {"$or": [{"section": "python", "year": {"$gt": 2018}}, {"tags": "gpu"}]},
}


def main() -> None:
    rng = np.random.default_rng(0)
    sections = ["python", "doc", "libs", "net", "web", "math", "games", "x11"]
    payloads = [{"section": sections[int(rng.integers(len(sections)))],
                 "year": int(rng.integers(1995, 2026)),
                 "tags": ["gpu"] if rng.random() < 0.05 else []} for _ in range(N)]
    vecs = rng.standard_normal((N, 8)).astype(np.float32)
    db = pv.connect(tempfile.mkdtemp(prefix="polyvec-bench-"))
    colls = {
        "indexed columns": db.create_collection(
            "idx", {"v": pv.Dense(8)}, indexed=["section", "year", "tags"]),
        "SQLite JSON": db.create_collection("sql", {"v": pv.Dense(8)}),
    }
    for c in colls.values():
        for lo in range(0, N, 10_000):
            c.add(list(range(lo, lo + 10_000)), {"v": vecs[lo:lo + 10_000]},
                  payloads[lo:lo + 10_000])
    rows, results = [], []
    for fname, flt in FILTERS.items():
        row = [fname]
        counts = set()
        for cname, c in colls.items():
            c.select(flt)
            times = []
            for _ in range(20):
                t = time.perf_counter()
                sel = c.select(flt)
                times.append(time.perf_counter() - t)
            counts.add(len(sel))
            ms = 1000 * float(np.median(times))
            results.append({"filter": fname, "path": cname, "median_ms": ms, "selected": len(sel)})
            row.append(f"{ms:.2f}")
        if len(counts) != 1:
            raise SystemExit(f"indexed and SQLite selections disagree on {fname}: {counts}")
        row.append(f"{counts.pop():,}")
        rows.append(row)
    table = markdown_table(["filter", *[f"{c} (ms)" for c in colls], "selected of 100,000"],
                           rows)
    write_results("filters", {"machine": machine(), "n": N, "results": results}, table)
    print(table)


if __name__ == "__main__":
    main()
