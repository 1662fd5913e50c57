"""Micro-benchmark of the compressed token index on the 10k-doc Debian multi-vector subset.

Needs the token vectors cached by ``benchmarks/multivector.py --encode-only`` under
``~/.cache/polyvec/debian-minilm-mv/`` (128-d MiniLM tokens, f16). Single thread (BLAS and
numba pinned to one thread). Measures, per (nbits, nprobe, n_candidates):

- candidate generation alone (``TokenIndex.candidates``): QPS, recall@10 against exact MaxSim;
- candidates + exact rerank from the f16 tokens memory-mapped from disk (``rerank_maxsim``):
  QPS, recall@10 against exact MaxSim, MRR@10 / Recall@10 against the qrels;
- build time, bytes per token of the candidate-generation structures in RAM.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/token_index_micro.py [--quick]``.
Exact MaxSim top-10 and the built indexes are cached under ``~/.cache/polyvec/token-index-micro``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, machine, markdown_table, peak_rss_mib, read_jsonl, write_results  # noqa: E402, E501

from polyvec.multivector.maxsim import maxsim_scores  # noqa: E402
from polyvec.multivector.rerank import rerank_maxsim  # noqa: E402
from polyvec.multivector.token_index import TokenIndex  # noqa: E402

MV = Path.home() / ".cache" / "polyvec" / "debian-minilm-mv"
CACHE = Path.home() / ".cache" / "polyvec" / "token-index-micro"
DIM = 128


def load() -> dict[str, np.ndarray]:
    names = ("doc_tokens", "doc_offsets", "query_tokens", "query_offsets")
    files = {n: MV / f"{n}_{DIM}.npy" for n in names}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        sys.exit(f"token vectors not cached: {missing}; run benchmarks/multivector.py "
                 f"--encode-only first")
    out = {n: np.load(f, mmap_mode="r") for n, f in files.items()}
    out["doc_ids"] = np.load(MV / "doc_ids.npy")
    return out


def exact_top10(data: dict[str, np.ndarray], queries: list[np.ndarray]) -> np.ndarray:
    path = CACHE / f"exact_top10_{DIM}_{len(queries)}.npy"
    if path.is_file():
        return np.load(path)
    x = np.asarray(data["doc_tokens"], dtype=np.float32)
    t = time.perf_counter()
    top = np.stack([np.argsort(-maxsim_scores(q, x, data["doc_offsets"]), kind="stable")[:10]
                    for q in queries])
    print(f"exact MaxSim: {len(queries) / (time.perf_counter() - t):.1f} QPS", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, top)
    return top


def build_cached(data: dict[str, np.ndarray], nbits: int) -> tuple[TokenIndex, float]:
    folder = CACHE / f"ti_{DIM}_nbits{nbits}_niter4_mppc64"  # the build defaults
    stamp = folder / "build_seconds.txt"
    if stamp.is_file():
        return TokenIndex.load(folder), float(stamp.read_text())
    x = np.asarray(data["doc_tokens"], dtype=np.float32)
    t = time.perf_counter()
    ti = TokenIndex.build(x, np.asarray(data["doc_offsets"]), nbits=nbits)
    secs = time.perf_counter() - t
    ti.save(folder)
    stamp.write_text(f"{secs:.2f}")
    return TokenIndex.load(folder), secs


def main() -> None:
    quick = "--quick" in sys.argv
    data = load()
    qo = data["query_offsets"]
    qt = np.asarray(data["query_tokens"], dtype=np.float32)
    queries = [qt[qo[i]:qo[i + 1]] for i in range(len(qo) - 1)]
    gt = exact_top10(data, queries)
    qrels = [int(q["doc_id"]) for q in read_jsonl(DATA / "debian-minilm" / "queries.jsonl")]
    row_of = {int(d): i for i, d in enumerate(data["doc_ids"])}
    relevant = np.array([row_of[qrels[i]] for i in range(len(queries))])
    tokens, offsets = data["doc_tokens"], np.asarray(data["doc_offsets"])
    exact_mrr = float(np.mean([1.0 / (1 + list(g).index(r)) if r in g else 0.0
                               for g, r in zip(gt, relevant, strict=True)]))
    n_tokens = len(tokens)
    grid = [(2, 8, 100)] if quick else [
        (nb, npb, nc) for nb in (2, 4) for npb in (8, 16, 32) for nc in (30, 50, 100)]
    x32 = np.asarray(tokens, dtype=np.float32)
    t = time.perf_counter()
    for q in queries[:100]:
        maxsim_scores(q, x32, offsets)
    exact_qps = 100 / (time.perf_counter() - t)  # same run, same load as the rows below
    del x32
    print(f"exact MaxSim: {exact_qps:.1f} QPS (100 queries)", file=sys.stderr)
    rows, results = [], []
    for nbits in sorted({g[0] for g in grid}):
        ti, build_s = build_cached(data, nbits)
        ti.candidates(queries[0], 10)  # compile
        rerank_maxsim(queries[0], tokens, offsets, np.arange(10), 10)
        for nb, nprobe, ncand in grid:
            if nb != nbits:
                continue
            t = time.perf_counter()
            cands = [ti.candidates(q, ncand, nprobe=nprobe)[0] for q in queries]
            t_cand = time.perf_counter() - t
            t = time.perf_counter()
            tops = [rerank_maxsim(q, tokens, offsets, c, 10)[0]
                    for q, c in zip(queries, cands, strict=True)]
            t_rr = time.perf_counter() - t
            rec_c = np.mean([len(set(c[:10].tolist()) & set(g.tolist())) / 10
                             for c, g in zip(cands, gt, strict=True)])
            rec = np.mean([len(set(t_.tolist()) & set(g.tolist())) / 10
                           for t_, g in zip(tops, gt, strict=True)])
            rr = [1.0 / (1 + list(t_).index(r)) if r in t_ else 0.0
                  for t_, r in zip(tops, relevant, strict=True)]
            hit = [float(r in t_) for t_, r in zip(tops, relevant, strict=True)]
            res = {"nbits": nbits, "nprobe": nprobe, "n_candidates": ncand,
                   "n_centroids": ti.n_centroids, "build_s": round(build_s, 1),
                   "cand_qps": len(queries) / t_cand,
                   "cand_recall10_vs_exact": float(rec_c),
                   "qps": len(queries) / (t_cand + t_rr),
                   "recall10_vs_exact": float(rec), "mrr10": float(np.mean(rr)),
                   "recall10_qrels": float(np.mean(hit)),
                   "speedup_vs_exact": len(queries) / (t_cand + t_rr) / exact_qps,
                   "ram_bytes_per_token": ti.nbytes_ram / n_tokens,
                   "disk_bytes_per_token": ti.nbytes_disk / n_tokens,
                   "rerank_bytes_per_token": tokens.dtype.itemsize * DIM}
            results.append(res)
            rows.append([nbits, nprobe, ncand, f"{res['cand_qps']:.0f}", f"{rec_c:.3f}",
                         f"{res['qps']:.0f}", f"{res['speedup_vs_exact']:.0f}x", f"{rec:.3f}",
                         f"{res['mrr10']:.3f}",
                         f"{res['ram_bytes_per_token']:.1f}", f"{build_s:.0f}"])
            print(rows[-1], file=sys.stderr)
    table = markdown_table(
        ["nbits", "nprobe", "cands", "cand QPS", "cand R@10 vs exact", "QPS (+rerank)",
         "vs exact QPS", "R@10 vs exact", "MRR@10", "RAM B/token", "build s"], rows)
    header = (f"Token index micro-benchmark: {len(offsets) - 1} docs, {n_tokens} tokens, "
              f"{len(queries)} queries, {DIM}-d, single thread; rerank from f16 memmap. Exact "
              f"MaxSim in the same run: {exact_qps:.1f} QPS, MRR@10 {exact_mrr:.3f}.\n\n")
    payload = {"machine": machine(), "exact_qps": exact_qps, "exact_mrr10": exact_mrr,
               "n_docs": len(offsets) - 1, "n_tokens": n_tokens,
               "n_queries": len(queries), "dim": DIM, "peak_rss_mib": peak_rss_mib(),
               "results": results}
    print(write_results("token_index_micro", payload, header + table))
    print(header + table)


if __name__ == "__main__":
    main()
