"""The engine-core benchmark: every acceptance figure of issue 11, one stage each.

Stages (``--only a,c,...``; all by default), each reporting its figure, the target and
pass/fail:

a. ``Collection.search`` (one query per call, one thread; Debian 58,026 x 384 cosine, one
   segment, ``HNSW32,SQ8,Refine``) at recall@10 0.95 vs the index layer alone (the very index
   the collection built, loaded from its folder with ``polyvec.index.load_index``) vs faiss
   ``IndexHNSWFlat(32)`` (efConstruction 200) on the same data: >= 0.9x and >= 1.3x.
b. 1,000,000 x 384 added with default settings in batches of 10,000, then
   ``create_index("dense", "HNSW32,SQ8,Refine")``, vs the same vectors in one segment: QPS at
   recall 0.95 >= 0.8x. Vectors: the Debian vectors repeated, each copy plus Gaussian noise
   (sigma 0.01 per coordinate), re-normalized; queries: the Debian queries; ground truth by
   faiss ``IndexFlatIP``.
c. exact MaxSim through a collection (one segment, ``Multi(128, dtype="f16")``) vs
   ``polyvec.multivector.maxsim_scores`` over an f32 copy of the same tokens: >= 1.0x. Token
   sets: MiniLM tokens cached by ``benchmarks/multivector.py`` if present, else synthetic
   (clustered, 20-140 tokens per document, 32 per query).
d. filtered search on an indexed column at 10% selectivity vs unfiltered, both at recall@10
   0.95 (the filtered truth is exact among the selected rows): cost <= 1.5x.
e. two threads searching one collection handle vs one thread (exact: Debian with default
   settings; HNSW: the stage-a collection): throughput >= 1.7x.
f. a reader's first search after another process adds one item to the 1,000,000-item
   collection of b vs a warm search: <= 20 ms more.
g. a new process opens the Debian collection of a and answers its first query: <= 100 ms
   (one throwaway process first, for the kernels' first compile); LanceDB (same vectors, no
   ANN index) open + first query as reference; with and without import time.
h. durable ingest of the Debian vectors with payloads in batches of 1,000 (each ``add``
   durable): >= 60,000 items/s and >= 0.5x LanceDB's ``Table.add`` in the same run; bytes
   written (/proc/self/io write_bytes of the ingesting process) per byte of vector data.
i. key map and per-item bookkeeping at 1,000,000 items (128-d f16): anonymous RSS of a process
   after it opens the collection minus before (file-backed mapped pages excluded): <= 32 B
   per item; open time.
j. compacting 1,000,000 x 128-d f16 with 10% deleted: peak RSS (ru_maxrss of the compacting
   process, a fresh one that opens the collection and compacts it, started through a small
   launcher so that it does not inherit the benchmark's ru_maxrss) <= its RSS with the
   collection open + 1.5x the largest segment + 64 MiB; the peak after open, and the
   compaction's own RSS and anonymous-RSS peaks (sampled), are reported too.

Speed ratios alternate the systems over ``--rounds`` (>= 5) rounds on the same built indexes
and report the median of the per-round ratios. QPS at 0.95 is read from each system's
recall/QPS frontier over an (ef, oversample) grid, log-QPS interpolated (as ``ann.py``): a
first pass measures every setting's recall, the timed rounds then run the frontier settings
around 0.95. One query per call, one thread (``NUMBA_NUM_THREADS=1``, one BLAS thread; faiss
builds use 2 OpenMP threads).

The 1,000,000-item collections (``--scale`` times that) and the other built collections are
cached in ``--workdir`` (default /tmp/polyvec-core) and rebuilt when the code under
``src/polyvec`` changes (``--keep-cache`` reuses them anyway, ``--rebuild`` always rebuilds).

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/core.py            # full (~25 min)
    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/core.py --scale 0.02 --queries 200 \\
        --results /tmp/core-dev                                             # dev run, minutes

Writes ``benchmarks/results/core.{json,md,png}`` (or into ``--results``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    DATA,
    ROOT,
    exact_kth,
    machine,
    markdown_table,
    peak_rss_mib,
    proc_status,
    proc_write_bytes,
    qps_at,
    read_jsonl,
    tie_recall,
    write_results,
)

K = 10
LEVEL = 0.95
SPEC = "HNSW32,SQ8,Refine"
EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)
OVERSAMPLES = (2.0, 4.0)
FULL_N = 1_000_000
NOISE = 0.01
DEBIAN = DATA / "debian-minilm"
MV_CACHE = Path.home() / ".cache" / "polyvec" / "debian-minilm-mv"
COMPACT_FIXED = 64 << 20  # stage j: fixed bound above the open collection's RSS
SEARCH = Callable[[np.ndarray], np.ndarray]  # one query (d,) -> ids (K,)


# ----------------------------------------------------------------------------- set-up
def faiss_mod() -> Any:
    import faiss

    return faiss


def one_thread() -> None:
    """Query-time threads: one everywhere (numba is pinned by NUMBA_NUM_THREADS=1)."""
    faiss_mod().omp_set_num_threads(1)


def build_threads() -> None:
    faiss_mod().omp_set_num_threads(2)


def fingerprint() -> str:
    """Hash of the engine's source: a cached collection is reused only by the code that built
    it (another engine version may lay segments out differently)."""
    import polyvec

    h = hashlib.sha1()
    src = Path(polyvec.__file__).parent
    for p in sorted(src.rglob("*.py")):
        h.update(str(p.relative_to(src)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


@dataclass
class Ctx:
    workdir: Path
    scale: float
    nq: int
    rounds: int
    fp: str
    keep_cache: bool
    rebuild: bool
    mv_docs: int = 10_000
    built: dict[str, float] = field(default_factory=dict)  # cache entry -> build seconds

    @property
    def n_big(self) -> int:
        return max(10_000, int(round(FULL_N * self.scale / 10_000)) * 10_000)

    def cached(self, name: str, build: Callable[[Path], dict[str, Any]],
               code_dependent: bool = True) -> tuple[Path, dict[str, Any]]:
        """``workdir/name``, built by ``build(folder)`` unless a valid copy exists."""
        folder = self.workdir / name
        stamp = folder / "BUILT.json"
        if stamp.is_file() and not self.rebuild:
            meta = json.loads(stamp.read_text())
            if not code_dependent or self.keep_cache or meta.get("fingerprint") == self.fp:
                return folder, meta
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(f"  building cache {name} ...", flush=True)
        t = time.perf_counter()
        meta = build(folder)
        meta |= {"fingerprint": self.fp, "build_s": round(time.perf_counter() - t, 1)}
        self.built[name] = meta["build_s"]
        stamp.write_text(json.dumps(meta))
        print(f"  built {name} in {meta['build_s']} s", flush=True)
        return folder, meta


DEBIAN_ROWS: int | None = None  # --debian-rows: a prefix of the corpus, for dev runs only


def debian() -> tuple[np.ndarray, np.ndarray]:
    base = np.load(DEBIAN / "base_f16.npy")[:DEBIAN_ROWS]
    queries = np.load(DEBIAN / "queries_f16.npy").astype(np.float32)
    return np.ascontiguousarray(base.astype(np.float32)), queries


def dname(name: str) -> str:
    """A Debian cache entry's name (suffixed when only a prefix of the corpus is used)."""
    return name if DEBIAN_ROWS is None else f"{name}_rows{DEBIAN_ROWS}"


def debian_truth(base: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact top-K ids of ``q``: the dataset's file, or computed for a corpus prefix."""
    if DEBIAN_ROWS is None:
        return np.load(DEBIAN / "gt_top100_ids.npy")[:len(q), :K]
    return np.argsort(-(q @ base.T), axis=1)[:, :K]


def noisy_debian(base: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows: Debian row ``i % 58,026`` plus N(0, NOISE^2) per coordinate, re-normalized
    (seeded per 10,000-row chunk, so any n gives the same first rows)."""
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for c, lo in enumerate(range(0, n, 10_000)):
        hi = min(n, lo + 10_000)
        rng = np.random.default_rng(1000 + c)
        x = base[np.arange(lo, hi) % len(base)]
        x = x + NOISE * rng.standard_normal(x.shape, dtype=np.float32)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def clustered(lo: int, hi: int, dim: int, seed: int = 7) -> np.ndarray:
    """Rows ``lo:hi`` (``lo`` a multiple of 10,000) of a synthetic clustered set of unit
    vectors: 1,000 Gaussian centres, noise 0.3 per coordinate; seeded per 10,000-row chunk."""
    centres = np.random.default_rng(seed).standard_normal((1000, dim), dtype=np.float32)
    out = np.empty((hi - lo, dim), dtype=np.float32)
    for a in range(lo, hi, 10_000):
        b = min(hi, a + 10_000)
        rng = np.random.default_rng(seed * 1000 + a // 10_000)
        x = centres[rng.integers(0, 1000, b - a)]
        x = x + 0.3 * rng.standard_normal(x.shape, dtype=np.float32)
        out[a - lo:b - lo] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def as_ids(ids: Any) -> np.ndarray:
    """One query's ids as int64 (K,), ``None`` and missing slots as -1."""
    out = np.full(K, -1, dtype=np.int64)
    vals = [-1 if i is None else int(i) for i in list(ids)[:K]]
    out[:len(vals)] = vals
    return out


def add_batches(coll: Any, x: np.ndarray, batch: int = 10_000,
                payloads: list[dict[str, Any]] | None = None) -> float:
    t = time.perf_counter()
    for lo in range(0, len(x), batch):
        hi = min(len(x), lo + batch)
        coll.add(list(range(lo, hi)), {"dense": x[lo:hi]},
                 None if payloads is None else payloads[lo:hi])
    return time.perf_counter() - t


def collection_index(folder: Path, field_name: str, metric: str) -> Any:
    """The index a one-segment collection built for ``field_name``, loaded from its folder
    (``indexes/<segment>.<field>.<nonce>/``) as a standalone ``polyvec.index`` object."""
    from polyvec.factory import parse_index
    from polyvec.index import load_index

    found = [p for p in (folder / "indexes").glob(f"*.{field_name}.*")
             if p.is_dir() and not p.name.startswith("_") and not p.name.endswith(".tmp")]
    if len(found) != 1:
        raise RuntimeError(f"expected one index folder for {field_name!r} in {folder}, got "
                           f"{[p.name for p in found]}")
    arrays = {f.stem: np.load(f, mmap_mode="r") for f in found[0].glob("*.npy")}
    return load_index(parse_index(SPEC), arrays, metric)


# ----------------------------------------------------------------------------- built data
def debian_indexed(ctx: Ctx) -> tuple[Path, dict[str, Any]]:
    """Debian, ids = rows, payload ``tenth`` (random 0-9, indexed), one segment, indexed."""
    import polyvec as pv

    def build(folder: Path) -> dict[str, Any]:
        base, _ = debian()
        tenth = np.random.default_rng(0).integers(0, 10, len(base))
        db = pv.connect(folder)
        coll = db.create_collection("c", {"dense": pv.Dense(384)}, indexed=["tenth"],
                                    segment_rows=len(base) + 1)
        add_s = add_batches(coll, base, payloads=[{"tenth": int(t)} for t in tenth])
        coll.flush()
        build_threads()
        t = time.perf_counter()
        coll.create_index("dense", SPEC)
        index_s = time.perf_counter() - t
        db.close()
        np.save(folder / "tenth.npy", tenth)
        return {"n": len(base), "add_s": round(add_s, 1), "index_s": round(index_s, 1)}

    return ctx.cached(dname("debian_indexed"), build)


def debian_default(ctx: Ctx) -> tuple[Path, dict[str, Any]]:
    """Debian with default settings, no index (exact search)."""
    import polyvec as pv

    def build(folder: Path) -> dict[str, Any]:
        base, _ = debian()
        db = pv.connect(folder)
        coll = db.create_collection("c", {"dense": pv.Dense(384)})
        add_s = add_batches(coll, base)
        segs = len(coll.info()["segments"])
        db.close()
        return {"n": len(base), "add_s": round(add_s, 1), "segments": segs}

    return ctx.cached(dname("debian_default"), build)


def faiss_flat_hnsw(ctx: Ctx, base: np.ndarray) -> tuple[Any, float]:
    faiss = faiss_mod()

    def build(folder: Path) -> dict[str, Any]:
        build_threads()
        t = time.perf_counter()
        fi = faiss.IndexHNSWFlat(base.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        fi.hnsw.efConstruction = 200
        fi.add(base)
        s = time.perf_counter() - t
        faiss.write_index(fi, str(folder / "hnsw32flat.faiss"))
        return {"faiss_build_s": round(s, 1)}

    folder, meta = ctx.cached(dname("faiss_hnsw32flat_debian"), build, code_dependent=False)
    return faiss.read_index(str(folder / "hnsw32flat.faiss")), meta["faiss_build_s"]


def big384(ctx: Ctx, one_segment: bool) -> tuple[Path, dict[str, Any]]:
    """The n_big x 384 noisy-Debian collection: default settings, or one segment."""
    import polyvec as pv

    n = ctx.n_big

    def build(folder: Path) -> dict[str, Any]:
        base, _ = debian()
        x = noisy_debian(base, n)
        db = pv.connect(folder)
        kw = {"segment_rows": n + 1} if one_segment else {}
        coll = db.create_collection("c", {"dense": pv.Dense(384)}, **kw)
        add_s = add_batches(coll, x)
        if one_segment:
            coll.flush()
        build_threads()
        t = time.perf_counter()
        coll.create_index("dense", SPEC)
        index_s = time.perf_counter() - t
        segs = len(coll.info()["segments"])
        db.close()
        return {"n": n, "add_s": round(add_s, 1), "index_s": round(index_s, 1),
                "segments": segs}

    return ctx.cached(f"d384_{'one' if one_segment else 'default'}_n{n}", build)


def big384_truth(ctx: Ctx, x: np.ndarray, q: np.ndarray) -> np.ndarray:
    faiss = faiss_mod()

    def build(folder: Path) -> dict[str, Any]:
        build_threads()
        fi = faiss.IndexFlatIP(x.shape[1])
        fi.add(x)
        _, ids = fi.search(q, K)
        np.save(folder / "gt.npy", ids)
        return {"nq": len(q)}

    folder, meta = ctx.cached(f"gt384_n{len(x)}_q{len(q)}", build, code_dependent=False)
    return np.load(folder / "gt.npy")


def big128(ctx: Ctx) -> tuple[Path, dict[str, Any]]:
    """n_big x 128 f16 synthetic clustered, default settings, no index."""
    import polyvec as pv

    n = ctx.n_big

    def build(folder: Path) -> dict[str, Any]:
        db = pv.connect(folder)
        coll = db.create_collection("c", {"dense": pv.Dense(128, dtype="f16")})
        add_s = 0.0
        for lo in range(0, n, 100_000):  # generated in parts: bounded memory
            x = clustered(lo, min(n, lo + 100_000), 128)
            t = time.perf_counter()
            for a in range(0, len(x), 10_000):
                coll.add(list(range(lo + a, lo + a + len(x[a:a + 10_000]))),
                         {"dense": x[a:a + 10_000]})
            add_s += time.perf_counter() - t
        segs = len(coll.info()["segments"])
        db.close()
        return {"n": n, "add_s": round(add_s, 1), "segments": segs}

    return ctx.cached(f"f16_128_n{n}", build)


def big128_deleted(ctx: Ctx) -> tuple[Path, dict[str, Any]]:
    import polyvec as pv

    src, meta0 = big128(ctx)
    n = meta0["n"]

    def build(folder: Path) -> dict[str, Any]:
        shutil.rmtree(folder)
        shutil.copytree(src, folder, ignore=shutil.ignore_patterns("BUILT.json"))
        db = pv.connect(folder)
        coll = db.get_collection("c")
        t = time.perf_counter()
        gone = 0
        for lo in range(0, n, 100_000):
            gone += coll.delete(list(range(lo, min(n, lo + 100_000), 10)))
        del_s = time.perf_counter() - t
        db.close()
        return {"n": n, "deleted": gone, "delete_s": round(del_s, 1)}

    return ctx.cached(f"f16_128_n{n}_del10", build)


# ----------------------------------------------------------------------------- measuring
@dataclass
class System:
    name: str
    settings: list[tuple[dict[str, Any], SEARCH]]
    recalls: list[float] = field(default_factory=list)
    window: list[int] = field(default_factory=list)  # settings timed in the rounds
    qps: dict[int, list[float]] = field(default_factory=dict)  # setting -> QPS per round


def timed(fn: SEARCH, rows: list[np.ndarray], warm: int = 20) -> tuple[float, list[Any]]:
    for r in rows[:warm]:
        fn(r)
    out = []
    t = time.perf_counter()
    for r in rows:
        out.append(fn(r))
    return len(rows) / (time.perf_counter() - t), out


def frontier_race(systems: list[System], q: np.ndarray, recall: Callable[[np.ndarray], float],
                  rounds: int, recall_of: dict[str, Callable[[np.ndarray], float]] | None = None
                  ) -> dict[str, Any]:
    """Recall of every setting (stopping a line once it saturates), then ``rounds`` timed
    rounds over each system's frontier settings around LEVEL, the systems alternated (their
    order rotates each round). Returns per system the QPS at LEVEL per round."""
    rows = list(q)
    for s in systems:  # numba's runtime up first: no system's first pass walks without it
        for _, fn in s.settings[:1]:
            fn(rows[0])
    from polyvec._kernels._numba import wait_warm

    wait_warm(600)
    for s in systems:
        rec_fn = (recall_of or {}).get(s.name, recall)
        first_qps: list[float] = []
        saturated: set[Any] = set()
        for knobs, fn in s.settings:
            line = knobs.get("oversample")
            if line in saturated:
                s.recalls.append(-1.0)
                first_qps.append(0.0)
                continue
            qps, ids = timed(fn, rows)
            r = rec_fn(np.vstack([as_ids(i) for i in ids]))
            s.recalls.append(r)
            first_qps.append(qps)
            print(f"    {s.name:28s} {knobs} recall {r:.4f} {qps:8.0f} QPS", flush=True)
            if r >= 0.995:
                saturated.add(line)
        s.window = window_of(s.recalls, first_qps,
                             [knobs.get("oversample") for knobs, _ in s.settings])
    for rnd in range(rounds):
        order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
        for s in order:
            for i in s.window:
                qps, _ = timed(s.settings[i][1], rows, warm=5)
                s.qps.setdefault(i, []).append(qps)
    out = {}
    for s in systems:
        per_round = [qps_at([(s.recalls[i], s.qps[i][r]) for i in s.window], LEVEL)
                     for r in range(rounds)]
        out[s.name] = {
            "qps_at_level_per_round": per_round,
            "qps_at_level": (float(np.median([p for p in per_round if p is not None]))
                             if any(p is not None for p in per_round) else None),
            "max_recall": max(s.recalls),
            "points": [{**s.settings[i][0], "recall": round(s.recalls[i], 4),
                        "qps_median": (round(float(np.median(s.qps[i])), 1) if i in s.qps
                                       else None)}
                       for i in range(len(s.settings)) if s.recalls[i] >= 0]}
    return out


def window_of(recalls: list[float], qps: list[float], lines: list[Any]) -> list[int]:
    """Settings to time around LEVEL: the first pass's frontier (two below, two above by its
    QPS), and on each line of settings (one ``oversample``, ``ef`` rising) the last below
    LEVEL and the first at or above it. One pass's QPS is noisy (settings that do the same
    work, such as ``ef`` under ``k * oversample``, swap places on its frontier), so a
    setting that would lead the timed frontier is never left out on one pass's noise."""
    pts = sorted(((r, q, i) for i, (r, q) in enumerate(zip(recalls, qps, strict=True))
                  if r >= 0), reverse=True)
    front: list[tuple[float, float, int]] = []
    for r, q, i in pts:
        if not front or q > front[0][1]:
            front.insert(0, (r, q, i))
    below = [f for f in front if f[0] < LEVEL][-2:]
    above = [f for f in front if f[0] >= LEVEL][:2]
    picked = [f[2] for f in below + above]
    for line in dict.fromkeys(lines):
        on = [i for i, (r, ln) in enumerate(zip(recalls, lines, strict=True))
              if ln == line and r >= 0]
        under = [i for i in on if recalls[i] < LEVEL]
        over = [i for i in on if recalls[i] >= LEVEL]
        if under:
            picked.append(max(under, key=lambda i: recalls[i]))
        if over:
            picked.append(min(over, key=lambda i: recalls[i]))
    return sorted(set(picked))


def per_round_ratio(res: dict[str, Any], num: str, den: str) -> tuple[float | None,
                                                                        list[float | None]]:
    a = res[num]["qps_at_level_per_round"]
    b = res[den]["qps_at_level_per_round"]
    ratios = [x / y if x and y else None for x, y in zip(a, b, strict=True)]
    ok = [r for r in ratios if r is not None]
    return (float(np.median(ok)) if ok else None), ratios


def grid() -> list[dict[str, Any]]:
    return [{"ef": ef, "oversample": ov} for ov in OVERSAMPLES for ef in EFS]


def coll_settings(coll: Any, flt: dict[str, Any] | None = None
                  ) -> list[tuple[dict[str, Any], SEARCH]]:
    out = []
    for kv in grid():
        def fn(x: np.ndarray, kv: dict[str, Any] = kv) -> np.ndarray:
            return coll.search(x, k=K, filter=flt, **kv).ids
        out.append((kv, fn))
    return out


def verdict(figure: float | None, target: float, higher_is_better: bool) -> bool:
    if figure is None:
        return False
    return figure >= target if higher_is_better else figure <= target


# ----------------------------------------------------------------------------- stages
def stage_a(ctx: Ctx) -> dict[str, Any]:
    import polyvec as pv
    from polyvec.index import QueryParams

    faiss = faiss_mod()
    base, queries = debian()
    folder, meta = debian_indexed(ctx)
    fi, fbuild = faiss_flat_hnsw(ctx, base)
    coll = pv.connect(folder).get_collection("c")
    idx = collection_index(folder / "c", "dense", "cosine")
    q = queries[:ctx.nq]
    kth = exact_kth(base, q, debian_truth(base, q), K)
    one_thread()
    layer = []
    for kv in grid():
        p = QueryParams(**kv)

        def fn(x: np.ndarray, p: QueryParams = p) -> np.ndarray:
            return idx.search(x[None], K, params=p, rerank=base)[1][0]
        layer.append((kv, fn))
    flat = []
    for ef in EFS:
        fp = faiss.SearchParametersHNSW(efSearch=max(ef, K))

        def ffn(x: np.ndarray, fp: Any = fp) -> np.ndarray:
            return fi.search(x[None], K, params=fp)[1][0]
        flat.append(({"ef": ef}, ffn))
    systems = [System("Collection.search", coll_settings(coll)), System("index layer", layer),
               System("faiss HNSW32,Flat", flat)]
    res = frontier_race(systems, q, lambda ids: tie_recall(ids, base, q, kth, K), ctx.rounds)
    r_layer, rr_layer = per_round_ratio(res, "Collection.search", "index layer")
    r_faiss, rr_faiss = per_round_ratio(res, "Collection.search", "faiss HNSW32,Flat")
    ok = verdict(r_layer, 0.9, True) and verdict(r_faiss, 1.3, True)
    return {"figure": {"vs_index_layer": r_layer, "vs_faiss_hnsw32_flat": r_faiss},
            "target": "vs index layer >= 0.9, vs faiss HNSW32,Flat >= 1.3", "pass": ok,
            "figure_text": f"{fmt(r_layer)}x layer, {fmt(r_faiss)}x faiss "
                           f"({fmt0(res['Collection.search']['qps_at_level'])} / "
                           f"{fmt0(res['index layer']['qps_at_level'])} / "
                           f"{fmt0(res['faiss HNSW32,Flat']['qps_at_level'])} QPS)",
            "ratios_per_round": {"vs_index_layer": rr_layer, "vs_faiss": rr_faiss},
            "systems": res, "collection_build": meta, "faiss_build_s": fbuild,
            "n": len(base), "queries": len(q)}


def stage_b(ctx: Ctx) -> dict[str, Any]:
    import polyvec as pv

    base, queries = debian()
    n = ctx.n_big
    fd, md = big384(ctx, one_segment=False)
    fo, mo = big384(ctx, one_segment=True)
    x = noisy_debian(base, n)
    q = queries[:min(ctx.nq, 500)]
    gt = big384_truth(ctx, x, q)
    kth = exact_kth(x, q, gt, K)
    default = pv.connect(fd).get_collection("c")
    one = pv.connect(fo).get_collection("c")
    one_thread()
    systems = [System(f"default ({md['segments']} segments)", coll_settings(default)),
               System("one segment", coll_settings(one))]
    res = frontier_race(systems, q, lambda ids: tie_recall(ids, x, q, kth, K), ctx.rounds)
    r, rr = per_round_ratio(res, systems[0].name, systems[1].name)
    return {"figure": r, "target": ">= 0.8", "pass": verdict(r, 0.8, True),
            "figure_text": f"{fmt(r)}x ({fmt0(res[systems[0].name]['qps_at_level'])} vs "
                           f"{fmt0(res[systems[1].name]['qps_at_level'])} QPS)",
            "ratios_per_round": rr, "systems": res, "n": n, "queries": len(q),
            "data": f"Debian vectors repeated, + N(0, {NOISE}^2) per coordinate, "
                    "re-normalized", "builds": {"default": md, "one_segment": mo}}


def token_sets(n_docs: int, n_queries: int, dim: int = 128
               ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], str]:
    """(doc tokens f32, offsets, query token sets, source)."""
    files = [MV_CACHE / f"{k}_{dim}.npy" for k in ("doc_tokens", "doc_offsets",
                                                    "query_tokens", "query_offsets")]
    if all(f.is_file() for f in files):
        dt, do, qt, qo = (np.load(f) for f in files)
        nd = min(n_docs, len(do) - 1)
        tokens = np.asarray(dt[:do[nd]], dtype=np.float32)
        qs = [np.asarray(qt[qo[i]:qo[i + 1]], dtype=np.float32) for i in range(n_queries)]
        return tokens, np.asarray(do[:nd + 1]), qs, f"MiniLM tokens ({MV_CACHE})"
    rng = np.random.default_rng(11)
    topics = rng.standard_normal((200, dim), dtype=np.float32)
    lens = rng.integers(20, 141, n_docs)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lens)
    doc_topic = np.repeat(rng.integers(0, 200, n_docs), lens)
    tokens = topics[doc_topic] + 1.5 * rng.standard_normal((int(offsets[-1]), dim),
                                                           dtype=np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    qs = []
    for d in rng.integers(0, n_docs, n_queries):
        pick = rng.integers(offsets[d], offsets[d + 1], 32)
        t = tokens[pick] + 0.5 * rng.standard_normal((32, dim), dtype=np.float32) / np.sqrt(dim)
        # float32 like the tokens (np.sqrt gives a float64 scalar, which makes t float64: a
        # float64 query turns the reference's product into a float64 copy and a dgemm)
        qs.append((t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32))
    return tokens, offsets, qs, "synthetic (200 topics, 20-140 tokens per doc, 32 per query)"


def stage_c(ctx: Ctx) -> dict[str, Any]:
    import polyvec as pv
    from polyvec.multivector import maxsim_scores

    n_docs = ctx.mv_docs
    nq = max(5, ctx.nq // 50)  # each query scores every token (~1 s per query at 10,000 docs)
    tokens, offsets, qs, source = token_sets(n_docs, nq)

    def build(folder: Path) -> dict[str, Any]:
        db = pv.connect(folder)
        coll = db.create_collection("c", {"tokens": pv.Multi(128, dtype="f16")},
                                    segment_rows=n_docs + 1)
        t = time.perf_counter()
        for lo in range(0, n_docs, 1000):
            hi = min(n_docs, lo + 1000)
            coll.add(list(range(lo, hi)),
                     {"tokens": [tokens[offsets[i]:offsets[i + 1]] for i in range(lo, hi)]})
        coll.flush()
        segs = len(coll.info()["segments"])
        db.close()
        return {"n_docs": n_docs, "tokens": int(offsets[-1]), "source": source,
                "add_s": round(time.perf_counter() - t, 1), "segments": segs}

    folder, meta = ctx.cached(f"mv128_f16_{n_docs}", build)
    coll = pv.connect(folder).get_collection("c")
    # the reference scores the collection's own f16 tokens, upcast: identical inputs
    f32 = tokens.astype(np.float16).astype(np.float32)

    def via_collection(qt: np.ndarray) -> np.ndarray:
        return coll.search(qt, k=K).ids

    def via_maxsim(qt: np.ndarray) -> np.ndarray:
        s = maxsim_scores(qt, f32, offsets)
        top = np.argpartition(-s, K)[:K]
        return top[np.argsort(-s[top])]

    one_thread()
    _, a = timed(via_collection, qs, warm=2)
    _, b = timed(via_maxsim, qs, warm=2)
    agree = float(np.mean([len(set(as_ids(x).tolist()) & set(y.tolist())) / K
                           for x, y in zip(a, b, strict=True)]))
    per: dict[str, list[float]] = {"collection": [], "maxsim_scores": []}
    for rnd in range(ctx.rounds):
        pair = [("collection", via_collection), ("maxsim_scores", via_maxsim)]
        for name, fn in (pair if rnd % 2 == 0 else pair[::-1]):
            per[name].append(timed(fn, qs, warm=1)[0])
    ratios = [x / y for x, y in zip(per["collection"], per["maxsim_scores"], strict=True)]
    r = float(np.median(ratios))
    return {"figure": r, "target": ">= 1.0", "pass": verdict(r, 1.0, True),
            "figure_text": f"{fmt(r)}x ({np.median(per['collection']):.1f} vs "
                           f"{np.median(per['maxsim_scores']):.1f} QPS)",
            "qps_per_round": per, "ratios_per_round": ratios, "top10_agreement": agree,
            "queries": nq, "data": meta, "field": "Multi(128, dtype='f16'), one segment"}


def stage_d(ctx: Ctx) -> dict[str, Any]:
    import polyvec as pv

    base, queries = debian()
    folder, meta = debian_indexed(ctx)
    tenth = np.load(folder / "tenth.npy")
    allowed = tenth == 3
    coll = pv.connect(folder).get_collection("c")
    q = queries[:ctx.nq]
    kth_all = exact_kth(base, q, debian_truth(base, q), K)
    rows = np.flatnonzero(allowed)
    s = q @ base[rows].T
    top = rows[np.argsort(-s, axis=1)[:, :K]]
    kth_sel = exact_kth(base, q, top, K)
    one_thread()
    systems = [System("unfiltered", coll_settings(coll)),
               System("filtered 10%", coll_settings(coll, {"tenth": 3}))]
    res = frontier_race(
        systems, q, lambda ids: tie_recall(ids, base, q, kth_all, K), ctx.rounds,
        recall_of={"filtered 10%": lambda ids: tie_recall(ids, base, q, kth_sel, K, allowed)})
    r, rr = per_round_ratio(res, "unfiltered", "filtered 10%")  # cost ratio = QPS ratio
    return {"figure": r, "target": "<= 1.5", "pass": verdict(r, 1.5, False),
            "figure_text": f"{fmt(r)}x cost ({fmt0(res['filtered 10%']['qps_at_level'])} vs "
                           f"{fmt0(res['unfiltered']['qps_at_level'])} QPS)",
            "ratios_per_round": rr, "systems": res, "selectivity": float(allowed.mean()),
            "filter": {"tenth": 3}, "queries": len(q), "collection_build": meta}


THREAD_ROUNDS = 15  # at least: a pass is short (0.1-0.3 s), five ratios swing by +-0.1 here


def threads_ratio(fn: SEARCH, rows: list[np.ndarray], rounds: int) -> dict[str, Any]:
    """One thread against two on the same handle, alternated over ``max(rounds,
    THREAD_ROUNDS)`` rounds (the order swapped each round); the median ratio."""
    rounds = max(rounds, THREAD_ROUNDS)

    def run(part: list[np.ndarray]) -> None:
        for r in part:
            fn(r)

    run(rows[:20])
    one, two = [], []
    for rnd in range(rounds):
        for mode in ((1, 2) if rnd % 2 == 0 else (2, 1)):
            t = time.perf_counter()
            if mode == 1:
                run(rows)
                one.append(len(rows) / (time.perf_counter() - t))
            else:
                ts = [threading.Thread(target=run, args=(rows,)) for _ in range(2)]
                for th in ts:
                    th.start()
                for th in ts:
                    th.join()
                two.append(2 * len(rows) / (time.perf_counter() - t))
    ratios = [b / a for a, b in zip(one, two, strict=True)]
    return {"ratio": float(np.median(ratios)), "ratios_per_round": ratios,
            "qps_1_thread": float(np.median(one)), "qps_2_threads": float(np.median(two))}


def stage_e(ctx: Ctx) -> dict[str, Any]:
    import polyvec as pv

    _, queries = debian()
    fx, mx = debian_default(ctx)
    fh, _ = debian_indexed(ctx)
    exact = pv.connect(fx).get_collection("c")
    hnsw = pv.connect(fh).get_collection("c")
    one_thread()
    ex = threads_ratio(lambda x: exact.search(x, k=K).ids, list(queries[:max(40, ctx.nq // 5)]),
                       ctx.rounds)
    hn = threads_ratio(lambda x: hnsw.search(x, k=K, ef=64, oversample=2.0).ids,
                       list(queries[:ctx.nq]), ctx.rounds)
    ok = verdict(ex["ratio"], 1.7, True) and verdict(hn["ratio"], 1.7, True)
    return {"figure": {"exact": ex["ratio"], "hnsw": hn["ratio"]}, "target": ">= 1.7 (both)",
            "pass": ok, "figure_text": f"exact {ex['ratio']:.2f}x, HNSW {hn['ratio']:.2f}x",
            "exact": ex | {"collection": f"Debian, default settings ({mx['segments']} "
                                         "segments), no index"},
            "hnsw": hn | {"collection": "stage a's (one segment, HNSW32,SQ8,Refine), ef 64, "
                                        "oversample 2"}}


# Linux keeps a process's ru_maxrss across execve, and a child forked (or vforked) from this
# process starts with this process's peak: a child spawned from here reports at least this
# process's peak (the built collections, earlier stages) as its own. A child started by a small
# launcher process inherits only the launcher's peak (about 10 MiB).
_LAUNCH = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def child(kind: str, *args: str, env: dict[str, str] | None = None,
          own_maxrss: bool = False) -> subprocess.Popen[str]:
    """``core.py --child kind args`` in a new process; with ``own_maxrss`` started through a
    small launcher so that its ``ru_maxrss`` is its own peak, not this process's."""
    cmd = [sys.executable, __file__, "--child", kind, *args]
    if own_maxrss:
        cmd = [sys.executable, "-c", _LAUNCH, *cmd]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def last_json(out: str) -> dict[str, Any]:
    return dict(json.loads(out.strip().splitlines()[-1]))


def stage_f(ctx: Ctx) -> dict[str, Any]:
    import polyvec as pv

    base, queries = debian()
    cached, meta = big384(ctx, one_segment=False)
    folder = ctx.workdir / "refresh_scratch"  # a copy: the writes below must not change the
    shutil.rmtree(folder, ignore_errors=True)  # cached collection stage b measures
    shutil.copytree(cached, folder)
    reader = pv.connect(folder).get_collection("c")
    probe = 10**12
    reader.delete([probe])  # left over from an interrupted run
    one_thread()
    w = child("writer", str(folder))
    assert w.stdin is not None and w.stdout is not None
    assert w.stdout.readline().strip() == "ready"
    qs = list(queries[:200])
    for x in qs[:20]:
        reader.search(x, k=K, ef=64, oversample=2.0)
    warm_ms, first_ms, found = [], [], []
    try:
        for rnd in range(ctx.rounds):
            times = []
            for x in qs[20 + rnd * 20: 40 + rnd * 20]:
                t = time.perf_counter()
                reader.search(x, k=K, ef=64, oversample=2.0)
                times.append((time.perf_counter() - t) * 1e3)
            warm_ms.append(float(np.median(times)))
            vec = np.random.default_rng(rnd).standard_normal(384).astype(np.float32)
            vec /= np.linalg.norm(vec)
            np.save(ctx.workdir / "probe.npy", vec)
            w.stdin.write(f"add {probe + rnd}\n")
            w.stdin.flush()
            assert w.stdout.readline().strip() == "ok"
            t = time.perf_counter()
            hit = reader.search(vec, k=K, ef=64, oversample=2.0)
            first_ms.append((time.perf_counter() - t) * 1e3)
            found.append(probe + rnd in list(hit.ids))
    finally:
        w.stdin.write("quit\n")
        w.stdin.flush()
        w.wait(timeout=600)
    reader.close()
    shutil.rmtree(folder, ignore_errors=True)
    extra = [f - m for f, m in zip(first_ms, warm_ms, strict=True)]
    r = float(np.median(extra))
    return {"figure": r, "target": "<= 20 ms more", "pass": verdict(r, 20.0, False),
            "figure_text": f"+{r:.1f} ms (first {np.median(first_ms):.1f} ms, warm "
                           f"{np.median(warm_ms):.1f} ms)",
            "first_ms": first_ms, "warm_ms": warm_ms, "new_item_found": found,
            "n": meta["n"], "search": "ef 64, oversample 2 (the default-settings collection "
                                      "of stage b)"}


def writer_child(folder: str) -> None:
    import polyvec as pv

    coll = pv.connect(folder).get_collection("c")
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "quit":
            break
        vec = np.load(Path(folder).parent / "probe.npy")
        coll.add([int(cmd[1])], {"dense": vec[None]})
        print("ok", flush=True)


COLD_POLYVEC = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import polyvec as pv
t1 = time.perf_counter()
q = np.load(sys.argv[2])
t2 = time.perf_counter()
c = pv.connect(sys.argv[1]).get_collection("c")
t3 = time.perf_counter()
r = c.search(q, k=10)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t3 - t2, "query_s": t4 - t3,
                  "ids": [int(i) for i in r.ids]}))
"""

COLD_LANCEDB = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import lancedb
t1 = time.perf_counter()
q = np.load(sys.argv[2])
t2 = time.perf_counter()
t = lancedb.connect(sys.argv[1]).open_table("t")
t3 = time.perf_counter()
r = t.search(q).distance_type("cosine").limit(10).to_list()
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t3 - t2, "query_s": t4 - t3,
                  "ids": [int(x["id"]) for x in r]}))
"""


def lancedb_debian(ctx: Ctx) -> Path:
    def build(folder: Path) -> dict[str, Any]:
        import lancedb
        import pyarrow as pa

        base, _ = debian()
        vec = pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), base.shape[1])
        tbl = pa.table({"id": pa.array(np.arange(len(base))), "vector": vec})
        lancedb.connect(folder / "db").create_table("t", tbl)
        return {"n": len(base)}

    folder, _ = ctx.cached(dname("lancedb_debian"), build, code_dependent=False)
    return folder / "db"


def spawn(script: str, *args: str) -> tuple[dict[str, Any], float]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         check=True)
    wall = time.perf_counter() - t
    return last_json(out.stdout), wall


def stage_g(ctx: Ctx) -> dict[str, Any]:
    _, queries = debian()
    folder, _ = debian_indexed(ctx)
    qfile = ctx.workdir / "cold_query.npy"
    np.save(qfile, queries[0])
    systems: dict[str, tuple[str, str]] = {"polyvec": (COLD_POLYVEC, str(folder))}
    notes = {}
    try:
        import lancedb  # noqa: F401

        systems["LanceDB"] = (COLD_LANCEDB, str(lancedb_debian(ctx)))
    except ImportError:
        notes["LanceDB"] = "not installed (pip install lancedb)"
    for script, path in systems.values():  # throwaway: first compile, page cache
        spawn(script, path, str(qfile))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for rnd in range(ctx.rounds):
        names = list(systems) if rnd % 2 == 0 else list(systems)[::-1]
        for name in names:
            res, wall = spawn(*systems[name], str(qfile))
            runs[name].append(res | {"process_wall_s": wall})
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "open_plus_first_query_ms": float(np.median([r["open_s"] + r["query_s"]
                                                         for r in rs])) * 1e3,
            "with_import_ms": float(np.median([r["import_s"] + r["open_s"] + r["query_s"]
                                               for r in rs])) * 1e3,
            "open_ms": float(np.median([r["open_s"] for r in rs])) * 1e3,
            "first_query_ms": float(np.median([r["query_s"] for r in rs])) * 1e3,
            "import_ms": float(np.median([r["import_s"] for r in rs])) * 1e3,
            "process_wall_ms": float(np.median([r["process_wall_s"] for r in rs])) * 1e3,
            "top1": rs[0]["ids"][0]}
    r = summary["polyvec"]["open_plus_first_query_ms"]
    lance = summary.get("LanceDB", {})
    return {"figure": r, "target": "<= 100 ms (open + first query, without import)",
            "pass": verdict(r, 100.0, False),
            "figure_text": f"{r:.0f} ms ({summary['polyvec']['with_import_ms']:.0f} ms with "
                           f"import); LanceDB {lance.get('open_plus_first_query_ms', 0):.0f} "
                           f"ms ({lance.get('with_import_ms', 0):.0f})",
            "systems": summary, "notes": notes,
            "collection": "stage a's Debian collection (one segment, HNSW32,SQ8,Refine), "
                          "default search; LanceDB: same vectors, no ANN index"}


def debian_payload_rows(n: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    base, _ = debian()
    docs = read_jsonl(DEBIAN / "docs.jsonl")[:n]
    return base[:n], [{"package": d["package"], "section": d["section"]} for d in docs]


def ingest_child(system: str, folder: str, n: str) -> None:
    x, payloads = debian_payload_rows(int(n))
    path = Path(folder)
    if system == "polyvec":
        import polyvec as pv

        db = pv.connect(path)
        w0 = proc_write_bytes()
        t = time.perf_counter()
        coll = db.create_collection("c", {"dense": pv.Dense(384)}, indexed=["section"])
        for lo in range(0, len(x), 1000):
            coll.add(list(range(lo, min(len(x), lo + 1000))), {"dense": x[lo:lo + 1000]},
                     payloads[lo:lo + 1000])
        dt = time.perf_counter() - t
        db.close()  # the background seal the 50th add asked for finishes here
        dt_closed = time.perf_counter() - t
        w1 = proc_write_bytes()
    else:
        import lancedb
        import pyarrow as pa

        batches = []
        for lo in range(0, len(x), 1000):
            part = x[lo:lo + 1000]
            pl = payloads[lo:lo + 1000]
            batches.append(pa.table({
                "id": pa.array(np.arange(lo, lo + len(part))),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), 384),
                "package": pa.array([p["package"] for p in pl]),
                "section": pa.array([p["section"] for p in pl])}))
        db = lancedb.connect(path)
        w0 = proc_write_bytes()
        t = time.perf_counter()
        tbl = db.create_table("t", batches[0])
        for b in batches[1:]:
            tbl.add(b)
        dt = dt_closed = time.perf_counter() - t
        w1 = proc_write_bytes()
    du = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(json.dumps({"n": len(x), "s": dt, "items_per_s": len(x) / dt,
                      "items_per_s_closed": len(x) / dt_closed,
                      "write_bytes": w1 - w0, "du_bytes": du, "vector_bytes": x.nbytes}))


def stage_h(ctx: Ctx) -> dict[str, Any]:
    n = min(58_026, ctx.n_big)
    systems = ["polyvec"]
    notes = {}
    try:
        import lancedb  # noqa: F401

        systems.append("LanceDB")
    except ImportError:
        notes["LanceDB"] = "not installed (pip install lancedb)"
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    scratch = ctx.workdir / "ingest_scratch"
    for rnd in range(ctx.rounds):
        for name in (systems if rnd % 2 == 0 else systems[::-1]):
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            p = child("ingest", "polyvec" if name == "polyvec" else "lancedb", str(scratch),
                      str(n))
            out, _ = p.communicate()
            if p.returncode:
                raise RuntimeError(f"ingest child {name} failed")
            runs[name].append(last_json(out))
            print(f"    {name:8s} {runs[name][-1]['items_per_s']:10,.0f} items/s", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "items_per_s": float(np.median([r["items_per_s"] for r in rs])),
            "items_per_s_closed": float(np.median([r["items_per_s_closed"] for r in rs])),
            "written_per_vector_byte": float(np.median([r["write_bytes"] / r["vector_bytes"]
                                                        for r in rs])),
            "du_per_vector_byte": float(np.median([r["du_bytes"] / r["vector_bytes"]
                                                   for r in rs]))}
    rate = summary["polyvec"]["items_per_s"]
    rel = rel_closed = None
    if "LanceDB" in runs:
        ratios = [a["items_per_s"] / b["items_per_s"]
                  for a, b in zip(runs["polyvec"], runs["LanceDB"], strict=True)]
        rel = float(np.median(ratios))
        rel_closed = float(np.median([a["items_per_s_closed"] / b["items_per_s"] for a, b in
                                      zip(runs["polyvec"], runs["LanceDB"], strict=True)]))
    ok = verdict(rate, 60_000, True) and verdict(rel, 0.5, True)
    return {"figure": {"items_per_s": rate, "vs_lancedb": rel}, "pass": ok,
            "target": ">= 60,000 items/s and >= 0.5x LanceDB",
            "figure_text": f"{rate:,.0f} items/s, {fmt(rel)}x LanceDB; with the close that "
                           f"finishes the background seal {fmt(rel_closed)}x; "
                           f"{summary['polyvec']['written_per_vector_byte']:.2f} B written / "
                           "vector B",
            "vs_lancedb_with_close": rel_closed,
            "systems": summary, "runs": runs, "n": n, "notes": notes,
            "durability": "polyvec: each add returns when durable against power loss (one "
                          "fdatasync per batch: the growing file's chunk, which holds the "
                          "batch's log record and vectors; the SQLite commit that registers it "
                          "makes no fsync and is replayed from the chunk if a power loss loses "
                          "it; format 3). The seal the 50th add asks for (50,000 rows "
                          "written as a segment) runs on the maintenance thread: the rate is "
                          "timed to the last add's return, and again to the close that waits "
                          "for that seal (vs_lancedb_with_close). LanceDB: Table.add as it "
                          "does it by default, which made no fsync/fdatasync call at all "
                          "(strace of its ingest child): its rate is a page-cache rate"}


def open_rss_child(folder: str) -> None:
    import polyvec as pv

    db = pv.connect(folder)
    s0 = proc_status()
    t = time.perf_counter()
    coll = db.get_collection("c")
    open_s = time.perf_counter() - t
    s1 = proc_status()
    n = len(coll)
    q = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    t = time.perf_counter()
    coll.search(q, k=K)
    search_s = time.perf_counter() - t
    s2 = proc_status()
    print(json.dumps({"n": n, "open_s": open_s, "first_search_s": search_s, "before": s0,
                      "after_open": s1, "after_search": s2}))


def stage_i(ctx: Ctx) -> dict[str, Any]:
    folder, meta = big128(ctx)
    runs = []
    for _ in range(3):
        p = child("open_rss", str(folder))
        out, _ = p.communicate()
        runs.append(last_json(out))
    n = runs[0]["n"]

    def per_item(r: dict[str, Any], after: str, key: str) -> float:
        return float((r[after][key] - r["before"][key]) / n)

    anon = float(np.median([per_item(r, "after_open", "RssAnon") for r in runs]))
    return {"figure": anon, "target": "<= 32 B/item", "pass": verdict(anon, 32.0, False),
            "figure_text": f"{anon:.1f} B/item anon; open "
                           f"{np.median([r['open_s'] for r in runs]) * 1e3:.0f} ms",
            "anon_b_per_item_after_open": anon,
            "rss_b_per_item_after_open": float(np.median([per_item(r, "after_open", "VmRSS")
                                                          for r in runs])),
            "anon_b_per_item_after_first_search": float(np.median(
                [per_item(r, "after_search", "RssAnon") for r in runs])),
            "open_ms": float(np.median([r["open_s"] for r in runs])) * 1e3,
            "first_search_ms": float(np.median([r["first_search_s"] for r in runs])) * 1e3,
            "n": n, "runs": runs, "collection": meta,
            "method": "RssAnon after get_collection minus before (file-backed pages, i.e. "
                      "mapped vector data, excluded), divided by the item count"}


def compact_child(folder: str) -> None:
    import polyvec as pv

    maxrss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    coll = pv.connect(folder).get_collection("c")
    segs = coll.info()["segments"]
    maxrss_open = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    before = proc_status()
    peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            s = proc_status()
            for k in peak:
                peak[k] = max(peak[k], s[k])
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    coll.compact()
    dt = time.perf_counter() - t
    done.set()
    th.join()
    end = proc_status()  # VmHWM: the same peak as ru_maxrss, from /proc (never reset here:
    # clear_refs would lower ru_maxrss too)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    after = coll.info()
    print(json.dumps({"segments_before": segs, "segments_after": after["segments"],
                      "count_after": after["count"], "compact_s": dt, "before": before,
                      "ru_maxrss_at_start": maxrss_start, "ru_maxrss_after_open": maxrss_open,
                      "ru_maxrss": maxrss, "vmhwm": end["VmHWM"], "sampled_peak": peak}))


def stage_j(ctx: Ctx) -> dict[str, Any]:
    src, meta = big128_deleted(ctx)
    scratch = ctx.workdir / "compact_scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(src, scratch, ignore=shutil.ignore_patterns("BUILT.json"))
    try:
        # a fresh process (open, then compact), started through a launcher: its ru_maxrss is
        # its own peak, not this process's (which has built the 1M collections)
        p = child("compact", str(scratch / ""), own_maxrss=True)
        out, _ = p.communicate()
        if p.returncode:
            raise RuntimeError("compact child failed")
        r = last_json(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    row_bytes = 128 * 2 + 8  # f16 vector + int64 seq
    # the largest segment before or after (a small collection may have none sealed before)
    largest = max(s["rows"] for s in r["segments_before"] + r["segments_after"]) * row_bytes
    open_rss = r["before"]["VmRSS"]
    bound = open_rss + 1.5 * largest + COMPACT_FIXED
    peak = r["ru_maxrss"]
    mib = 1 << 20
    anon = (r["sampled_peak"]["RssAnon"] - r["before"]["RssAnon"]) / mib
    during = r["sampled_peak"]["VmRSS"] / mib
    return {"figure": peak / mib, "target": f"<= {bound / mib:.0f} MiB (RSS open "
                                            f"{open_rss / mib:.0f} + 1.5 x largest segment "
                                            f"{largest / mib:.1f} + {COMPACT_FIXED // mib})",
            "pass": bool(peak <= bound),
            "figure_text": f"ru_maxrss {peak / mib:.0f} MiB vs bound {bound / mib:.0f} MiB "
                           f"(open peaks at {r['ru_maxrss_after_open'] / mib:.0f} MiB; "
                           f"compaction at {during:.0f} MiB sampled; anon peak +{anon:.0f} MiB "
                           "over open)",
            "ru_maxrss_bytes": peak, "vmhwm_bytes": r["vmhwm"],
            "ru_maxrss_at_start_bytes": r["ru_maxrss_at_start"],
            "ru_maxrss_after_open_bytes": r["ru_maxrss_after_open"],
            "sampled_peak_during_compaction": r["sampled_peak"],
            "peak_anon_over_open_mib": anon,
            "largest_segment_bytes": largest, "fixed_bound_bytes": COMPACT_FIXED,
            "open_rss_bytes": open_rss, "compact_s": r["compact_s"],
            "segments_before": len(r["segments_before"]),
            "segments_after": len(r["segments_after"]), "count_after": r["count_after"],
            "expected_count": meta["n"] - meta["deleted"], "collection": meta,
            "method": "a fresh process started through a small launcher (a child of the "
                      "benchmark would inherit its ru_maxrss) opens the copied collection and "
                      "compacts it; figure = its ru_maxrss (open and compaction); the "
                      "compaction's own peak is /proc/self/status sampled every 2 ms"}


STAGES: dict[str, tuple[str, Callable[[Ctx], dict[str, Any]], bool]] = {
    # name: (title, function, uses the 1M sizes)
    "a": ("Collection.search vs index layer vs faiss HNSW32,Flat at recall 0.95", stage_a,
          False),
    "b": ("1M x 384, default settings vs one segment, QPS at recall 0.95", stage_b, True),
    "c": ("exact MaxSim through a collection vs maxsim_scores (f32)", stage_c, False),
    "d": ("filtered (10%) vs unfiltered cost at recall 0.95", stage_d, False),
    "e": ("two threads vs one on one handle (exact, HNSW)", stage_e, False),
    "f": ("first search after another process adds one item (1M)", stage_f, True),
    "g": ("new process: open + first query (Debian, indexed)", stage_g, False),
    "h": ("durable ingest, batches of 1,000 x 384 with payloads", stage_h, False),
    "i": ("key map and bookkeeping bytes per item at 1M", stage_i, True),
    "j": ("compaction peak RSS, 1M x 128 f16, 10% deleted", stage_j, True),
}


def prepare(ctx: Ctx, key: str) -> None:
    """Build (or check) the cached collections stage ``key`` uses, measuring nothing."""
    if key in "adeg":
        debian_indexed(ctx)
    if key == "a":
        faiss_flat_hnsw(ctx, debian()[0])
    if key == "e":
        debian_default(ctx)
    if key in "bf":
        big384(ctx, one_segment=False)
    if key == "b":
        big384(ctx, one_segment=True)
        base, queries = debian()
        big384_truth(ctx, noisy_debian(base, ctx.n_big), queries[:min(ctx.nq, 500)])
    if key in "ij":
        big128(ctx)
    if key == "j":
        big128_deleted(ctx)
    if key == "g":
        with contextlib.suppress(ImportError):
            lancedb_debian(ctx)


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def fmt0(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


# ----------------------------------------------------------------------------- report
def plot(results: dict[str, Any], folder: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    a = results.get("a", {}).get("systems") or results.get("b", {}).get("systems") or {}
    for name, s in a.items():
        pts = sorted((p["recall"], p["qps_median"]) for p in s["points"]
                     if p["qps_median"] is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=3, label=name)
    ax.axvline(LEVEL, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("QPS (median of rounds), 1 thread")
    ax.set_title("stage a: frontier settings timed in the rounds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax = axes[1]
    names, margins, colours = [], [], []
    for key, r in results.items():
        m = r.get("margin")
        if m is not None:
            names.append(key)
            margins.append(m)
            colours.append("#2a7" if r.get("pass") else "#c33")
    ax.bar(names, margins, color=colours)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("figure / target (> 1 meets it; 'at most' targets inverted)")
    ax.set_title("issue 11 acceptance, per stage")
    fig.tight_layout()
    fig.savefig(folder / "core.png", dpi=110)


MARGIN_KEYS = {"a": ("vs_index_layer", 0.9, True), "b": (None, 0.8, True),
               "c": (None, 1.0, True), "d": (None, 1.5, False), "e": ("exact", 1.7, True),
               "f": (None, 20.0, False), "g": (None, 100.0, False),
               "h": ("items_per_s", 60_000, True), "i": (None, 32.0, False)}


def margin(key: str, r: dict[str, Any]) -> float | None:
    """The stage's worst figure relative to its target (> 1 meets it)."""
    if "figure" not in r:
        return None
    if key == "j":
        bound = r["open_rss_bytes"] + 1.5 * r["largest_segment_bytes"] + r["fixed_bound_bytes"]
        return bound / (r["figure"] * (1 << 20))
    fig = r["figure"]
    vals = []
    if key == "a":
        vals = [(fig["vs_index_layer"], 0.9, True), (fig["vs_faiss_hnsw32_flat"], 1.3, True)]
    elif key == "e":
        vals = [(fig["exact"], 1.7, True), (fig["hnsw"], 1.7, True)]
    elif key == "h":
        vals = [(fig["items_per_s"], 60_000, True), (fig["vs_lancedb"], 0.5, True)]
    else:
        _, t, hi = MARGIN_KEYS[key]
        vals = [(fig, t, hi)]
    out = []
    for v, t, hi in vals:
        if v is None:
            continue
        out.append(v / t if hi else (t / v if v > 0 else 100.0))
    return min(out) if out else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(STAGES), help="stages, e.g. a,c,h")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the 1,000,000-item sizes (b, f, i, j; h up to 58,026)")
    ap.add_argument("--queries", type=int, default=1000, help="evaluation queries (a, b, d)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mv-docs", type=int, default=10_000, help="stage c: documents")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/polyvec-core"))
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder (default benchmarks/results)")
    ap.add_argument("--keep-cache", action="store_true",
                    help="reuse cached collections even if the engine's code changed")
    ap.add_argument("--rebuild", action="store_true", help="rebuild every cached collection")
    ap.add_argument("--debian-rows", type=int, default=None,
                    help="dev runs: use only the first rows of the Debian corpus (a, d, e, g)")
    ap.add_argument("--build-only", action="store_true",
                    help="build the selected stages' cached collections, measure nothing")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        {"writer": writer_child, "ingest": ingest_child, "open_rss": open_rss_child,
         "compact": compact_child}[kind](*rest)
        return
    global DEBIAN_ROWS
    DEBIAN_ROWS = args.debian_rows
    if args.rounds < 5:
        print("note: fewer than 5 rounds: ratios are not acceptance figures", flush=True)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(STAGES)
    if unknown:
        raise SystemExit(f"--only: unknown stages {sorted(unknown)}; have {list(STAGES)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(args.workdir, args.scale, args.queries, args.rounds, fingerprint(),
              args.keep_cache, args.rebuild, args.mv_docs)
    if args.build_only:
        for key in only:
            t = time.perf_counter()
            prepare(ctx, key)
            print(f"== {key}: caches ready in {time.perf_counter() - t:.1f} s", flush=True)
        print(f"built: {ctx.built}")
        return
    t_all = time.perf_counter()
    load0 = os.getloadavg()
    results: dict[str, Any] = {}
    walls: dict[str, float] = {}
    for key in only:
        title, fn, _ = STAGES[key]
        print(f"== {key}. {title}", flush=True)
        before = dict(ctx.built)
        t = time.perf_counter()
        try:
            r = fn(ctx)
        except Exception as e:  # a stage that breaks is reported, the others still run
            import traceback

            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {e}", "pass": False, "figure_text": "error",
                 "target": "–"}
        walls[key] = time.perf_counter() - t
        r["wall_s"] = round(walls[key], 1)
        r["cache_build_s"] = round(sum(v for k, v in ctx.built.items() if k not in before), 1)
        r["title"] = title
        r["margin"] = None if "error" in r else margin(key, r)
        results[key] = r
        print(f"== {key}: {r['figure_text']} | target {r['target']} | "
              f"{'PASS' if r['pass'] else 'FAIL'} | {walls[key]:.1f} s "
              f"(cache builds {r['cache_build_s']} s)", flush=True)
    total = time.perf_counter() - t_all
    est = estimate(results, ctx.scale)
    dev = (ctx.scale < 1.0 or ctx.nq < 1000 or ctx.rounds < 5 or ctx.mv_docs < 10_000
           or DEBIAN_ROWS is not None)
    payload = {"benchmark": "core", "issue": 11, "dev_run": dev, "scale": ctx.scale,
               "n_big": ctx.n_big, "queries": ctx.nq, "rounds": ctx.rounds,
               "fingerprint": ctx.fp, "machine": machine(), "wall_s": round(total, 1),
               "estimate_full_s": est, "loadavg_start_end": [list(load0),
                                                             list(os.getloadavg())],
               "peak_rss_mib": round(peak_rss_mib(), 1), "stages": results}
    rows = [[k, r["title"], r["figure_text"], r["target"], "PASS" if r["pass"] else "FAIL",
             f"{r['wall_s']:.0f} ({r['cache_build_s']:.0f})"] for k, r in results.items()]
    head = "# Engine core benchmark (issue 11)"
    if dev:
        head += (f" — DEV RUN (scale {ctx.scale}, {ctx.nq} queries, {ctx.rounds} rounds): "
                 "not acceptance figures")
    md = "\n".join([
        head, "",
        f"1M sizes at scale {ctx.scale} = {ctx.n_big:,} items. Speed ratios: median of "
        f"per-round ratios, systems alternated over {ctx.rounds} rounds; QPS at recall@10 "
        f"{LEVEL} read from each system's frontier (log-QPS interpolation). One query per "
        "call, one thread unless stated.", "",
        markdown_table(["stage", "what", "figure", "target", "verdict",
                        "wall s (of it cache builds)"], rows), "",
        f"Wall {total:.0f} s; full run (scale 1) extrapolated from this one, the 1M-size "
        f"stages scaled linearly in n (an upper bound: search costs grow slower): cold cache "
        f"{est['cold_s'] / 60:.0f} min, warm cache {est['warm_s'] / 60:.0f} min. Load average "
        f"(1, 5, 15 min) start/end {payload['loadavg_start_end']} on "
        f"{machine()['cpus']} CPUs. Engine source fingerprint {ctx.fp}.",
        "", "Command: `PYTHONPATH=src:benchmarks python benchmarks/core.py "
        + " ".join(sys.argv[1:]) + "`"])
    folder = args.results
    write_results("core", payload, md, folder=folder)
    plot(results, folder or (ROOT / "benchmarks" / "results"))
    print(md)


def estimate(results: dict[str, Any], scale: float) -> dict[str, float]:
    """Full-run time from this run: stages on the 1M sizes scale with 1/scale (builds and
    measurements alike, a rough upper reading); the others stay."""
    cold = warm = 0.0
    for key, r in results.items():
        big = STAGES[key][2]
        f = 1.0 / scale if big else 1.0
        build = r["cache_build_s"]
        cold += (r["wall_s"] - build) * (f if big else 1.0) + build * f
        warm += (r["wall_s"] - build) * (f if big else 1.0)
    return {"cold_s": round(cold), "warm_s": round(warm)}


if __name__ == "__main__":
    main()
