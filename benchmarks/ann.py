"""Approximate nearest neighbours: polyvec's index layer vs faiss, hnswlib and usearch.

This measures ``polyvec.index`` (the standalone index layer: ``build_index`` +
``VectorIndex.search``) directly, so collection-level overhead (query validation, the freshness
check, id mapping) is not included there; one extra row, "polyvec collection ...", replays the
best settings of HNSW32,SQ8,Refine through ``Collection.search``, the path a user takes.

For each system one build, then a sweep of its query knob (ef / nprobe / oversample). Each
point records recall@10 against exact ground truth (tie-tolerant, see ``Truth``),
single-thread QPS with one query per call
(a Python loop over the evaluation queries, 1 thread everywhere) and batched QPS with 2
threads (all evaluation queries in one call). The table reports, per system, the best
single-thread QPS among settings that reach recall@10 >= 0.90 / 0.95 / 0.99, the build time
(2 threads) and bytes per vector kept in RAM (graph + codes; polyvec: ``bytes_in_ram() / n``,
faiss: serialized size, hnswlib / usearch: serialized size). Full-precision rerank vectors
(which may stay memory-mapped on disk) are reported separately.

Where a faiss peer is exactly the faiss object polyvec builds (faiss ``IndexHNSWFlat(32)``,
efConstruction 200, and the ``IndexHNSWSQ`` base under faiss's ``IndexRefineFlat``), the peer
searches that same graph through faiss directly: its build time is that one build. polyvec
walks SQ8 graphs with its own numba kernel (``polyvec._kernels.graph``), so "polyvec
HNSW32,SQ8,Refine" vs "faiss HNSW32,SQ8 + RefineFlat" is the same graph walked two ways. The
per-query table splits ``index.search`` into the walk (numba, refine included; or faiss's),
the rerank, the transform and the Python left over.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/ann.py [--queries 1000] [--no-fashion]

Writes benchmarks/results/ann.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Any  # noqa: E402

import faiss as _faiss  # noqa: E402
import numpy as np  # noqa: E402
from _common import DATA, RESULTS, machine, markdown_table, peak_rss_mib, write_results  # noqa: E402
from _common import qps_at as frontier_qps_at  # noqa: E402

from polyvec.factory import format_index, parse_index  # noqa: E402
from polyvec.index import QueryParams, build_index  # noqa: E402
from polyvec.index.refine import rerank_candidates  # noqa: E402

K = 10
LEVELS = (0.90, 0.95, 0.99)
# fine steps where the 0.90 / 0.95 / 0.99 levels fall: "best QPS at >= level" on a coarse grid
# mostly measures where the grid points land
EFS = (10, 16, 20, 24, 28, 32, 40, 48, 64, 80, 96, 128, 192, 256)
OVERSAMPLES = (1.5, 2.0, 4.0)
NPROBES = (4, 8, 16, 32, 64, 128)

SearchFn = Callable[[np.ndarray], np.ndarray]  # (nq, d) -> (nq, K) ids
Setting = tuple[dict[str, Any], SearchFn, SearchFn]
faiss: Any = _faiss  # typed Any: its stubs lag its API


@dataclass
class System:
    name: str
    family: str  # "polyvec" or "peer"
    build_s: float
    bytes_per_vector: float
    rerank_bytes_per_vector: float = 0.0
    notes: str = ""
    points: list[dict[str, Any]] = field(default_factory=list)


def version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Truth:
    """The exact answers of the evaluation queries, for a tie-tolerant recall@10.

    A returned row counts when its exact score reaches the exact K-th best score (the
    ann-benchmarks reading): among exactly tied rows any one is right. An id-matching recall
    instead rewards whichever duplicate the ground-truth file happened to list first (on
    debian-minilm: always the higher id), which moves systems by ~0.001 at random.
    """

    base: np.ndarray
    q: np.ndarray
    ids: np.ndarray   # (nq, K), the dataset's exact neighbours
    kth: np.ndarray   # (nq,) exact score of the K-th (higher is better)
    l2: bool

    @classmethod
    def of(cls, base: np.ndarray, q: np.ndarray, ids: np.ndarray, metric: str) -> Truth:
        ids = np.asarray(ids)[:, :K]
        t = cls(base, q, ids, np.zeros(len(q)), metric == "l2")
        return cls(base, q, ids, t.scores(ids).min(axis=1), t.l2)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Exact float64 scores of ``rows`` (nq, m) for their queries."""
        x = self.base[np.maximum(rows, 0)].astype(np.float64)
        qq = self.q.astype(np.float64)[:, None, :]
        s = -((x - qq) ** 2).sum(-1) if self.l2 else (x * qq).sum(-1)
        return np.where(rows >= 0, s, -np.inf)


def recall_at_k(ids: np.ndarray, gt: Truth) -> float:
    rows = np.sort(np.asarray(ids, dtype=np.int64)[:, :K], axis=1)
    fresh = np.ones(rows.shape, bool)
    fresh[:, 1:] = rows[:, 1:] != rows[:, :-1]  # a row returned twice counts once
    tol = 1e-6 * np.maximum(1.0, np.abs(gt.kth))[:, None]
    hit = (gt.scores(rows) >= gt.kth[:, None] - tol) & fresh & (rows >= 0)
    return float(hit.sum() / (len(rows) * K))


def single_qps(fn: SearchFn, q: np.ndarray) -> tuple[float, np.ndarray]:
    """One query per call, in a Python loop; returns QPS and the ids.

    The first 200 queries run once untimed, so no system pays for cold pages, caches or lazy
    set-up that the one measured before it (on the same graph) already warmed.
    """
    rows = [q[i:i + 1] for i in range(len(q))]
    for r in rows[:200]:  # warm
        fn(r)
    out = []
    t = time.perf_counter()
    for r in rows:
        out.append(fn(r))
    dt = time.perf_counter() - t
    return len(q) / dt, np.vstack(out)


def batch_qps(fn: SearchFn, q: np.ndarray, repeats: int = 3) -> float:
    """All queries in one call (2 threads); the best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(q)
        best = min(best, time.perf_counter() - t)
    return len(q) / best


def sweep(system: System, settings: list[Setting],
          q: np.ndarray, gt: Truth, stop_at: float = 0.999) -> None:
    """Run each (knobs, single-thread fn, 2-thread batched fn); stop a knob line once saturated."""
    for knobs, one, batched in settings:
        qps1, ids = single_qps(one, q)
        rec = recall_at_k(ids, gt)
        qps2 = batch_qps(batched, q)
        system.points.append({**knobs, "recall": round(rec, 4), "qps_1t": round(qps1, 1),
                              "qps_batch_2t": round(qps2, 1)})
        print(f"  {system.name:34s} {knobs} recall {rec:.4f} 1t {qps1:8.0f} QPS  "
              f"batch2t {qps2:8.0f} QPS", flush=True)
        if rec >= stop_at:
            break


def best_at(system: System, level: float) -> dict[str, Any] | None:
    ok = [p for p in system.points if p["recall"] >= level]
    return max(ok, key=lambda p: p["qps_1t"]) if ok else None


def set_threads(n: int) -> None:
    faiss.omp_set_num_threads(n)


def serialized_bytes(index: Any) -> int:
    return int(faiss.serialize_index(index).size)


# ----------------------------------------------------------------------------- polyvec
def polyvec_system(spec_s: str, base: np.ndarray, metric: str, q: np.ndarray, gt: Truth,
                   sample: np.ndarray | None, keep: dict[str, Any]) -> System:
    spec = parse_index(spec_s)
    t = time.perf_counter()
    index = build_index(base, spec, metric, sample_queries=sample, threads=2)
    build_s = time.perf_counter() - t
    keep[spec_s] = index
    rerank = base if index.refines else None
    sysm = System(f"polyvec {spec_s}", "polyvec", build_s, index.bytes_in_ram() / len(base),
                  rerank_bytes_per_vector=(base.shape[1] * 4 if rerank is not None else 0.0),
                  notes="polyvec.index measured directly (not collections)")
    knob = index.knob
    if knob == "ef":
        knob_values: list[dict[str, Any]] = [{"ef": e} for e in EFS]
    elif knob == "nprobe":
        knob_values = [{"nprobe": p} for p in NPROBES]
    else:
        knob_values = [{}]
    overs: tuple[float | None, ...] = OVERSAMPLES if index.refines else (None,)
    for ov in overs:
        settings: list[Setting] = []
        for kv in knob_values:
            params = QueryParams(oversample=ov, **kv)

            def one(x: np.ndarray, params: QueryParams = params) -> np.ndarray:
                return index.search(x, K, params=params, rerank=rerank)[1]

            def batched(x: np.ndarray, params: QueryParams = params) -> np.ndarray:
                set_threads(2)
                try:
                    return index.search(x, K, params=params, rerank=rerank)[1]
                finally:
                    set_threads(1)

            settings.append(({**kv, "oversample": ov}, one, batched))
        sweep(sysm, settings, q, gt)
    return sysm


def polyvec_collection_system(spec_s: str, base: np.ndarray, metric: str, q: np.ndarray,
                              gt: Truth, knobs: list[dict[str, Any]]) -> System:
    """The same index, searched through a collection (``Collection.search``): the path a user
    takes, with query validation, the freshness check, id mapping and the result object.

    Items are added with ids = row numbers, sealed into one segment, then indexed (the build
    time includes the collection's recall calibration). ``knobs`` are the settings to sweep
    (the index-level sweep's best points).
    """
    import polyvec as pv

    with tempfile.TemporaryDirectory() as tmp:
        db = pv.connect(tmp)
        coll = db.create_collection("ann", vectors={"v": pv.Dense(base.shape[1], metric=metric)},
                                    segment_rows=len(base))
        for lo in range(0, len(base), 10_000):
            hi = min(len(base), lo + 10_000)
            coll.add(list(range(lo, hi)), {"v": base[lo:hi]})
        coll.flush()
        set_threads(2)
        t = time.perf_counter()
        coll.create_index("v", spec_s)
        build_s = time.perf_counter() - t
        set_threads(1)
        ram = coll.info()["indexes"]["v"]["ram_bytes_per_vector"]
        sysm = System(f"polyvec collection {spec_s}", "polyvec", build_s, ram,
                      rerank_bytes_per_vector=base.shape[1] * 4 if "Refine" in spec_s else 0,
                      notes="Collection.search end to end (one sealed segment, ids = rows); "
                            "build includes recall calibration")
        settings: list[Setting] = []
        for kv in knobs:
            def one(x: np.ndarray, kv: dict[str, Any] = kv) -> np.ndarray:
                return np.asarray(coll.search(x[0], k=K, **kv).ids, dtype=np.int64)[None, :]

            def batched(x: np.ndarray, kv: dict[str, Any] = kv) -> np.ndarray:
                set_threads(2)
                try:
                    return np.asarray(coll.search(x, k=K, **kv).ids, dtype=np.int64)
                finally:
                    set_threads(1)

            settings.append((dict(kv), one, batched))
        sweep(sysm, settings, q, gt, stop_at=1.1)
        db.close()
    return sysm


def overhead(index: Any, base: np.ndarray, q: np.ndarray, ef: int,
             oversample: float | None) -> dict[str, Any]:
    """Per-query time of ``index.search`` split into the walk (polyvec's numba kernel, with
    its fused refine, or faiss's), the rerank, the query transform and the rest (Python);
    faiss's own walk over the same graph for comparison."""
    rerank = base if index.refines else None
    params = QueryParams(ef=ef, oversample=oversample)
    kc = max(K, math.ceil(K * index.oversample(params))) if rerank is not None else K
    p = faiss.SearchParametersHNSW(efSearch=max(kc, ef))
    fi = index.faiss_index
    rows = [q[i:i + 1] for i in range(len(q))]
    qt = rows if index.transform is None else [index.transform.transform_queries(r)
                                               for r in rows]
    walker = index._searcher()

    def loop(fn: Callable[[int], Any]) -> float:
        for i in range(min(200, len(rows))):
            fn(i)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for i in range(len(rows)):
                fn(i)
            best = min(best, (time.perf_counter() - t) / len(rows))
        return best * 1e6

    total = loop(lambda i: index.search(rows[i], K, params=params, rerank=rerank))
    raw = loop(lambda i: fi.search(qt[i], kc, params=p))
    rr = tr = 0.0
    if walker is not None:  # walk + exact refine in one kernel call
        walk = loop(lambda i: walker.search(qt[i], max(kc, ef), kc, rerank=rerank, qr=rows[i],
                                            k=K))
    else:
        walk = raw
        cands = [fi.search(qt[i], kc, params=p)[1].astype(np.int64) for i in range(len(rows))]
        if rerank is not None:
            metric = index.metric
            rr = loop(lambda i: rerank_candidates(rows[i], cands[i], rerank, K, metric))
    if index.transform is not None:
        tr = loop(lambda i: index.transform.transform_queries(rows[i]))
    return {"spec": format_index(index.spec), "ef": ef, "oversample": oversample, "candidates": kc,
            "walk": "polyvec numba (+ refine)" if walker is not None else "faiss",
            "us_per_query_total": round(total, 1), "us_walk": round(walk, 1),
            "us_rerank": round(rr, 1), "us_transform": round(tr, 1),
            "us_python_overhead": round(total - walk - rr - tr, 1),
            "overhead_share": round((total - walk - rr - tr) / total, 3),
            "us_faiss_walk_same_graph": round(raw, 1)}


# ----------------------------------------------------------------------------- peers
def faiss_hnsw_flat_peer(pv_index: Any, build_s: float, base: np.ndarray, q: np.ndarray,
                         gt: Truth) -> System:
    fi = pv_index.faiss_index  # the same IndexHNSWFlat(d, 32) efConstruction 200 polyvec built
    s = System("faiss HNSW32,Flat", "peer", build_s, serialized_bytes(fi) / len(base),
               notes="faiss IndexHNSWFlat(32), efC 200; same faiss graph as polyvec HNSW32")
    settings: list[Setting] = []
    for ef in EFS:
        p = faiss.SearchParametersHNSW(efSearch=max(ef, K))

        def one(x: np.ndarray, p: Any = p) -> np.ndarray:
            return fi.search(x, K, params=p)[1]

        def batched(x: np.ndarray, p: Any = p) -> np.ndarray:
            set_threads(2)
            try:
                return fi.search(x, K, params=p)[1]
            finally:
                set_threads(1)

        settings.append(({"ef": ef}, one, batched))
    sweep(s, settings, q, gt)
    return s


def faiss_refine_peer(name: str, base_index: Any, build_s: float, base: np.ndarray,
                      q: np.ndarray, gt: Truth, knob: str, values: tuple[int, ...],
                      notes: str) -> System:
    ref = faiss.IndexRefineFlat(base_index, faiss.swig_ptr(np.ascontiguousarray(base)))
    s = System(name, "peer", build_s, serialized_bytes(base_index) / len(base),
               rerank_bytes_per_vector=base.shape[1] * 4, notes=notes)
    s._ref = ref  # type: ignore[attr-defined]  # keep the wrapper alive
    for kf in OVERSAMPLES:
        settings: list[Setting] = []
        for v in values:
            if knob == "ef":
                inner: Any = faiss.SearchParametersHNSW(efSearch=max(v, math.ceil(K * kf)))
            else:
                inner = faiss.SearchParametersIVF(nprobe=v)
            p = faiss.IndexRefineSearchParameters(k_factor=kf, base_index_params=inner)

            def one(x: np.ndarray, p: Any = p) -> np.ndarray:
                return ref.search(x, K, params=p)[1]

            def batched(x: np.ndarray, p: Any = p) -> np.ndarray:
                set_threads(2)
                try:
                    return ref.search(x, K, params=p)[1]
                finally:
                    set_threads(1)

            settings.append(({knob: v, "k_factor": kf}, one, batched))
        sweep(s, settings, q, gt)
    return s


def faiss_ivfpq_peer(base: np.ndarray, metric: str, q: np.ndarray, gt: Truth) -> System:
    d = base.shape[1]
    m = 48 if d % 48 == 0 else 56 if d % 56 == 0 else 16
    fm = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    spec = f"IVF1024,PQ{m}"
    set_threads(2)
    t = time.perf_counter()
    idx = faiss.index_factory(d, spec, fm)
    idx.train(base)
    idx.add(base)
    build_s = time.perf_counter() - t
    set_threads(1)
    return faiss_refine_peer(f"faiss {spec} + RefineFlat", idx, build_s, base, q, gt, "nprobe",
                             NPROBES, f"faiss index_factory('{spec}') + IndexRefineFlat")


def hnswlib_peer(base: np.ndarray, metric: str, q: np.ndarray, gt: Truth) -> System:
    import hnswlib

    n, d = base.shape
    idx = hnswlib.Index(space="l2" if metric == "l2" else "ip", dim=d)
    t = time.perf_counter()
    idx.init_index(max_elements=n, M=16, ef_construction=200, random_seed=0)
    idx.set_num_threads(2)
    idx.add_items(base, np.arange(n))
    build_s = time.perf_counter() - t
    idx.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "h.bin")
        idx.save_index(path)
        size = os.path.getsize(path)
    s = System("hnswlib M16", "peer", build_s, size / n,
               notes="hnswlib M 16, ef_construction 200; bytes = saved file (graph + f32)")
    settings: list[Setting] = []
    for ef in EFS:
        def one(x: np.ndarray, ef: int = ef) -> np.ndarray:
            idx.set_ef(max(ef, K))
            return idx.knn_query(x, k=K, num_threads=1)[0]

        def batched(x: np.ndarray, ef: int = ef) -> np.ndarray:
            idx.set_ef(max(ef, K))
            return idx.knn_query(x, k=K, num_threads=2)[0]

        settings.append(({"ef": ef}, one, batched))
    sweep(s, settings, q, gt)
    return s


def usearch_peer(base: np.ndarray, metric: str, dtype: str, q: np.ndarray,
                 gt: Truth) -> System:
    from usearch.index import Index

    n, d = base.shape
    idx: Any = Index(ndim=d, metric="l2sq" if metric == "l2" else "cos", dtype=dtype,
                connectivity=16)
    t = time.perf_counter()
    idx.add(np.arange(n, dtype=np.uint64), base, threads=2)
    build_s = time.perf_counter() - t
    size = len(idx.save())
    s = System(f"usearch {dtype} conn16", "peer", build_s, size / n,
               notes=f"usearch Index(connectivity=16, dtype={dtype}); bytes = serialized")
    settings: list[Setting] = []
    for ef in EFS:
        def one(x: np.ndarray, ef: int = ef) -> np.ndarray:
            idx.expansion_search = max(ef, K)
            return idx.search(x, K, threads=1).keys

        def batched(x: np.ndarray, ef: int = ef) -> np.ndarray:
            idx.expansion_search = max(ef, K)
            return idx.search(x, K, threads=2).keys

        settings.append(({"ef": ef}, one, batched))
    sweep(s, settings, q, gt)
    return s


def guarded(name: str, errors: dict[str, str], fn: Callable[[], System]) -> System | None:
    try:
        return fn()
    except Exception as e:  # a peer that fails to install/run is recorded, not fatal
        errors[name] = f"{type(e).__name__}: {e}"
        print(f"  {name}: FAILED {errors[name]}", flush=True)
        return None


# ----------------------------------------------------------------------------- datasets
def run_dataset(name: str, base: np.ndarray, q: np.ndarray, gt_ids: np.ndarray,
                sample: np.ndarray, metric: str) -> dict[str, Any]:
    n, d = base.shape
    gt = Truth.of(base, q, gt_ids, metric)
    print(f"== {name}: {n} x {d}, {len(q)} eval queries, metric {metric}", flush=True)
    set_threads(1)
    errors: dict[str, str] = {}
    keep: dict[str, Any] = {}
    systems: list[System] = []
    nlist = int(round(4 * math.sqrt(n)))
    specs = ["HNSW32,SQ8,Refine", "HNSW32", "HNSW32(lid)", "HNSW32,F16,Refine",
             "HNSW16,SQ8,Refine", "Proj128,HNSW32,Refine", "Proj128,HNSW32,SQ8,Refine",
             f"IVF{nlist},Flat"]
    if metric != "l2":  # the OOD projection scores by inner product only
        specs.insert(7, "Proj128(ood),HNSW32,Refine")
    for spec in specs:
        use_sample = sample if spec.startswith("Proj") else None

        def make(spec: str = spec, us: np.ndarray | None = use_sample) -> System:
            return polyvec_system(spec, base, metric, q, gt, us, keep)

        s = guarded(f"polyvec {spec}", errors, make)
        if s is not None:
            systems.append(s)
    by_name = {s.name: s for s in systems}
    if "HNSW32" in keep:
        systems.append(faiss_hnsw_flat_peer(keep["HNSW32"], by_name["polyvec HNSW32"].build_s,
                                            base, q, gt))
    if "HNSW32,SQ8,Refine" in keep:
        pv = keep["HNSW32,SQ8,Refine"]
        bs = by_name["polyvec HNSW32,SQ8,Refine"].build_s
        s = guarded("faiss HNSW32,SQ8 + RefineFlat", errors, lambda: faiss_refine_peer(
            "faiss HNSW32,SQ8 + RefineFlat", pv.faiss_index, bs, base, q, gt, "ef", EFS,
            "faiss IndexHNSWSQ(QT_8bit, 32) efC 200 + IndexRefineFlat; same faiss graph as "
            "polyvec HNSW32,SQ8"))
        if s is not None:
            systems.append(s)
    for label, fn in [
        ("faiss IVF-PQ + RefineFlat", lambda: faiss_ivfpq_peer(base, metric, q, gt)),
        ("hnswlib", lambda: hnswlib_peer(base, metric, q, gt)),
        ("usearch f32", lambda: usearch_peer(base, metric, "f32", q, gt)),
        ("usearch i8", lambda: usearch_peer(base, metric, "i8", q, gt)),
    ]:
        s = guarded(label, errors, fn)
        if s is not None:
            systems.append(s)

    # the best index-level settings, replayed through a collection
    for spec in ("HNSW32,SQ8,Refine",):
        if f"polyvec {spec}" in by_name:
            pts = [best_at(by_name[f"polyvec {spec}"], lv) for lv in LEVELS]
            knobs = [{k: p[k] for k in ("ef", "oversample", "nprobe") if p.get(k) is not None}
                     for p in pts if p is not None]
            knobs = [dict(t) for t in dict.fromkeys(tuple(sorted(k.items())) for k in knobs)]

            def make_coll(spec: str = spec, knobs: list[dict[str, Any]] = knobs) -> System:
                return polyvec_collection_system(spec, base, metric, q, gt, knobs)

            s = guarded(f"polyvec collection {spec}", errors, make_coll)
            if s is not None:
                systems.append(s)

    over = []
    for spec in ("HNSW32", "HNSW32,SQ8,Refine"):
        if spec in keep:
            idx = keep[spec]
            best = best_at(by_name[f"polyvec {spec}"], 0.95)
            ef = int(best["ef"]) if best else 64
            ov = best.get("oversample") if best else None
            over.append(overhead(idx, base, q, ef, ov))
            print(f"  overhead {over[-1]}", flush=True)
    out = {"n": n, "dim": d, "metric": metric, "eval_queries": len(q),
           "systems": [s.__dict__ for s in systems], "errors": errors, "overhead": over,
           "lid_order": lid_effect(by_name),
           "best": {s.name: {str(lv): best_at(s, lv) for lv in LEVELS} for s in systems}}
    out["systems"] = [{k: v for k, v in s.items() if not k.startswith("_")}
                      for s in out["systems"]]
    keep.clear()
    return out


def lid_effect(by_name: dict[str, System]) -> list[dict[str, Any]]:
    """Recall and QPS of the same HNSW32 build in row order vs descending-LID order, per ef."""
    plain, lid = by_name.get("polyvec HNSW32"), by_name.get("polyvec HNSW32(lid)")
    if plain is None or lid is None:
        return []
    by_ef = {p["ef"]: p for p in lid.points}
    return [{"ef": p["ef"], "recall_row_order": p["recall"],
             "recall_lid_order": by_ef[p["ef"]]["recall"],
             "recall_gain": round(by_ef[p["ef"]]["recall"] - p["recall"], 4),
             "build_s_row_order": round(plain.build_s, 1), "build_s_lid_order":
             round(lid.build_s, 1)} for p in plain.points if p["ef"] in by_ef]


def qps_at(points: list[dict[str, Any]], level: float) -> float | None:
    """QPS at exactly ``level`` on a system's recall/QPS frontier, log-QPS interpolated
    between the frontier points around it (``None`` if it never gets there): a grid-free
    reading of the same curve."""
    return frontier_qps_at([(p["recall"], p["qps_1t"]) for p in points], level)


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets on the Debian data, as ratios within this run (the best measured
    setting at >= the level, and the frontier read at exactly the level)."""
    systems = {s["name"]: s for s in res["systems"]}
    best = res["best"]

    def interp(name: str, lv: float) -> float:
        return qps_at(systems[name]["points"], lv) or 0.0

    def qps(name: str, lv: float) -> float:
        b = best.get(name, {}).get(str(lv))
        return float(b["qps_1t"]) if b else 0.0

    pv = [s for s in systems.values() if s["family"] == "polyvec"]
    peers = [s for s in systems.values() if s["family"] == "peer"]
    faiss_flat = systems.get("faiss HNSW32,Flat")
    out = []
    for lv in (0.95, 0.99):
        best_peer = max(peers, key=lambda s: qps(s["name"], lv), default=None)
        bp = qps(best_peer["name"], lv) if best_peer else 0.0
        ranked = sorted(pv, key=lambda s: -qps(s["name"], lv))
        top = ranked[0] if ranked else None
        if lv == 0.95 and faiss_flat is not None:
            ff = qps(faiss_flat["name"], lv)
            ff_bytes = faiss_flat["bytes_per_vector"]
            ff_i = interp(faiss_flat["name"], lv)
            bp_i = max((interp(p["name"], lv) for p in peers), default=0.0)
            for s in ranked:
                q_ = qps(s["name"], lv)
                r_ff = q_ / ff if ff else 0.0
                r_bp = q_ / bp if bp else 0.0
                mem = s["bytes_per_vector"] / ff_bytes
                qi = interp(s["name"], lv)
                out.append({"level": lv, "config": s["name"], "qps": q_,
                            "interp": {"qps": round(qi), "vs_faiss_hnsw_flat":
                                       round(qi / ff_i, 3) if ff_i else None,
                                       "vs_best_peer": round(qi / bp_i, 3) if bp_i else None},
                            "vs_faiss_hnsw_flat": round(r_ff, 3), "target_vs_faiss": 1.3,
                            "vs_best_peer": round(r_bp, 3), "best_peer": best_peer["name"]
                            if best_peer else None, "target_vs_best_peer": 1.0,
                            "bytes_ratio_vs_faiss_flat": round(mem, 3), "target_bytes": 0.5,
                            "pass": bool(r_ff >= 1.3 and r_bp >= 1.0 and mem <= 0.5)})
        elif lv == 0.99 and top is not None:
            q_ = qps(top["name"], lv)
            r_bp = q_ / bp if bp else 0.0
            qi = interp(top["name"], lv)
            bp_i = max((interp(p["name"], lv) for p in peers), default=0.0)
            out.append({"level": lv, "config": top["name"], "qps": q_,
                        "interp": {"qps": round(qi), "vs_faiss_hnsw_flat": None,
                                   "vs_best_peer": round(qi / bp_i, 3) if bp_i else None},
                        "vs_best_peer": round(r_bp, 3), "best_peer": best_peer["name"]
                        if best_peer else None, "target_vs_best_peer": 1.0,
                        "pass": bool(r_bp >= 1.0)})
    return out


def table(name: str, res: dict[str, Any]) -> str:
    rows = []
    for s in res["systems"]:
        b = res["best"][s["name"]]
        cells = []
        for lv in LEVELS:
            p = b[str(lv)]
            if p is None:
                cells.append("–")
            else:
                knobs = ",".join(f"{k}={v}" for k, v in p.items()
                                 if k not in ("recall", "qps_1t", "qps_batch_2t")
                                 and v is not None)
                cells.append(f"{p['qps_1t']:.0f} ({knobs}; 2t batch {p['qps_batch_2t']:.0f})")
        top = max(p["recall"] for p in s["points"]) if s["points"] else 0.0
        rows.append([s["name"], f"{s['build_s']:.1f}", f"{s['bytes_per_vector']:.0f}",
                     f"{s['rerank_bytes_per_vector']:.0f}", *cells, f"{top:.4f}"])
    hdr = ["system", "build s", "RAM B/vec", "rerank B/vec (mmap-able)",
           "1t QPS @0.90", "1t QPS @0.95", "1t QPS @0.99", "max recall"]
    return f"### {name}\n\n" + markdown_table(hdr, rows)


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for s in results[name]["systems"]:
            pts = sorted(s["points"], key=lambda p: p["recall"])
            # the Pareto front: best QPS at or above each recall
            front, best = [], 0.0
            for p in reversed(pts):
                if p["qps_1t"] > best:
                    best = p["qps_1t"]
                    front.append(p)
            front.reverse()
            style = "-o" if s["family"] == "polyvec" else "--s"
            ax.plot([p["recall"] for p in front], [p["qps_1t"] for p in front], style,
                    ms=3, label=s["name"])
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("QPS, 1 thread, 1 query per call")
        ax.set_title(f"{name} (polyvec.index measured directly)")
        ax.set_xlim(0.8, 1.0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "ann.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=1000, help="evaluation queries (Debian)")
    ap.add_argument("--no-fashion", action="store_true",
                    help="skip fashion-mnist (L2; about half of the run time)")
    ap.add_argument("--fashion-queries", type=int, default=500)
    args = ap.parse_args()
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    d = DATA / "debian-minilm"
    base = np.ascontiguousarray(np.load(d / "base_f16.npy").astype(np.float32))
    queries = np.load(d / "queries_f16.npy").astype(np.float32)
    gt = np.load(d / "gt_top100_ids.npy")[:, :K]
    nq = min(args.queries, len(queries) // 2)
    # evaluation queries first; the held-out rest only fits Proj128(ood)
    results = {"debian-minilm": run_dataset("debian-minilm", base, queries[:nq], gt[:nq],
                                            queries[nq:], "cosine")}
    skipped = {}
    if not args.no_fashion:
        from polyvec.eval.datasets import load_fashion_mnist

        ds = load_fashion_mnist()
        assert ds.base is not None and ds.query_vectors is not None and ds.neighbors is not None
        fq = args.fashion_queries
        results["fashion-mnist"] = run_dataset(
            "fashion-mnist", np.ascontiguousarray(ds.base), ds.query_vectors[:fq],
            ds.neighbors[:fq, :K], ds.query_vectors[fq:fq + 2000], "l2")
    else:
        skipped["fashion-mnist"] = "skipped with --no-fashion"
    tg = targets(results["debian-minilm"])
    payload = {
        "benchmark": "ann", "scope": "polyvec.index measured directly (build_index + "
        "VectorIndex.search), not collections", "k": K, "levels": LEVELS,
        "machine": machine(), "versions": {p: version(p) for p in (
            "faiss-cpu", "hnswlib", "usearch", "numpy")},
        "results": results, "targets_debian": tg, "skipped": skipped,
        "wall_s": round(time.perf_counter() - t0, 1),
        "loadavg_start_end": [list(load_start), list(os.getloadavg())],
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    parts = ["# ANN benchmark: polyvec.index vs faiss, hnswlib, usearch", "",
             "polyvec side: the standalone index layer (`polyvec.index`) measured directly, not "
             "collections. recall@10 vs exact (tie-tolerant: a row counts when its exact score "
             "reaches the exact 10th best); QPS = one query per call, 1 thread (best setting "
             "reaching the level; its 2-thread batched QPS in brackets). RAM B/vec = graph + "
             "codes; rerank vectors (float32, may stay memory-mapped) listed separately.", ""]
    for name, res in results.items():
        parts += [table(name, res), ""]
        broken = [s["name"] for s in res["systems"]
                  if s["points"] and max(p["recall"] for p in s["points"]) < 0.5]
        if broken:
            parts += [f"Anomaly: {broken} never reach recall@10 0.5 at any setting (a defect "
                      "in that configuration, not a tuning matter).", ""]
        if res["errors"]:
            parts += [f"Errors: {res['errors']}", ""]
        parts += ["Per-query time of polyvec `index.search` (µs):", "",
                  markdown_table(list(res["overhead"][0]) if res["overhead"] else ["-"],
                                 [list(o.values()) for o in res["overhead"]]), ""]
        if res.get("lid_order"):
            gains = [r["recall_gain"] for r in res["lid_order"]]
            verdict = ("helps" if min(gains) > 0 else "hurts" if max(gains) < 0
                       else "is mixed")
            parts += [f"Insertion in descending LID order (HNSW32(lid) vs HNSW32, same "
                      f"efConstruction) {verdict} on {name}: recall@10 change per ef:", "",
                      markdown_table(list(res["lid_order"][0]),
                                     [list(r.values()) for r in res["lid_order"]]), ""]
    parts += ["### Targets (Debian, ratios within this run)", "",
              markdown_table(["level", "config", "QPS", "vs faiss HNSW32,Flat (≥1.3)",
                              "vs best peer (≥1.0)", "best peer", "bytes vs faiss flat (≤0.5)",
                              "pass", "at exactly the level: QPS, vs faiss flat, vs best peer"],
                             [[t["level"], t["config"], f"{t['qps']:.0f}",
                               t.get("vs_faiss_hnsw_flat", "–"), t["vs_best_peer"],
                               t["best_peer"], t.get("bytes_ratio_vs_faiss_flat", "–"),
                               "PASS" if t["pass"] else "FAIL",
                               f"{t['interp']['qps']}, {t['interp']['vs_faiss_hnsw_flat'] or '–'}"
                               f", {t['interp']['vs_best_peer']}"] for t in tg]), "",
              "The pass column reads the best measured setting at or above each level, as the "
              "issue asks; the last column reads each system's recall/QPS frontier at exactly "
              "the level (log-QPS interpolated between measured settings), which does not "
              "depend on where a system's grid points happen to fall.", ""]
    if skipped:
        parts += [f"Skipped: {skipped}", ""]
    parts += [f"Versions: {payload['versions']}; wall {payload['wall_s']} s; load average "
              f"(1, 5, 15 min) at start / end {payload['loadavg_start_end']} on "
              f"{machine()['cpus']} CPUs (above ~1 means other processes shared the cores)"]
    md = "\n".join(parts)
    write_results("ann", payload, md)
    plot(results)
    print(md)


if __name__ == "__main__":
    main()
