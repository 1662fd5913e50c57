"""Lexical and hybrid retrieval (issue 15): polyvec's BM25 field against bm25s (the same tokens,
the same k1 and b) and tantivy, then dense, BM25 and their fusions.

Data: the Debian set (58,026 package descriptions, 2,000 synopsis queries, one relevant
description each) and the Python FAQ (179 answers, its questions as queries). Every system
indexes the terms of polyvec's default analyzer (``Analyzer()``: NFKC, Unicode words,
lowercase, Lucene's 33 English stop words): bm25s gets them as token lists, tantivy as text
split on whitespace (its ``whitespace`` tokenizer). tantivy's BM25 constants are fixed
(k1 = 1.2, b = 0.75): its quality is reported, not compared.

Single-thread, one query per call, as a user calls each: ``Collection.search(text, 10)``
(which analyses the text); bm25s's ``retrieve`` of the analyzer's tokens (the analysis
timed with it); tantivy's ``parse_query`` + ``search``. The systems alternate over rounds;
medians are reported. Results: ``benchmarks/results/sparse.{json,md,png}``.

    pip install bm25s tantivy   # the peers, beside polyvec's [eval,models] extras
    PYTHONPATH=benchmarks .venv/bin/python benchmarks/sparse.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import DATA, RESULTS, machine, markdown_table, read_jsonl, write_results

import polyvec as pv
from polyvec.lexical import Analyzer

K = 10


def _quality(ranked: list[list[Any]], relevant: list[Any]) -> dict[str, float]:
    """nDCG@10 and MRR@10 with one relevant document per query."""
    ndcg = mrr = 0.0
    for ids, rel in zip(ranked, relevant, strict=True):
        ids = list(ids)[:K]
        if rel in ids:
            r = ids.index(rel) + 1
            ndcg += 1 / np.log2(r + 1)
            mrr += 1 / r
    return {"ndcg@10": ndcg / len(ranked), "mrr@10": mrr / len(ranked),
            "recall@10": sum(rel in list(ids)[:K] for ids, rel in zip(ranked, relevant,
                                                                      strict=True)) / len(ranked)}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _debian() -> dict[str, Any]:
    root = DATA / "debian-minilm"
    docs = read_jsonl(root / "docs.jsonl")
    queries = read_jsonl(root / "queries.jsonl")
    return {"name": "debian", "texts": [d["description"] for d in docs],
            "queries": [q["text"] for q in queries], "relevant": [q["doc_id"] for q in queries],
            "base": np.load(root / "base_f16.npy").astype(np.float32),
            "qv": np.load(root / "queries_f16.npy").astype(np.float32)}


def _faq() -> dict[str, Any]:
    from polyvec.embed import minilm
    from polyvec.eval.datasets import load_python_faq

    ds = load_python_faq()
    index = {d["id"]: i for i, d in enumerate(ds.corpus)}
    texts = [d["text"] for d in ds.corpus]
    queries = [q["text"] for q in ds.queries]
    emb = minilm()
    return {"name": "faq", "texts": texts, "queries": queries,
            "relevant": [index[next(iter(ds.qrels[q["id"]]))] for q in ds.queries],
            "base": np.asarray(emb.embed_documents(texts), np.float32),
            "qv": np.asarray(emb.embed_queries(queries), np.float32)}


class Systems:
    """The three lexical systems over one set, built once."""

    def __init__(self, data: dict[str, Any], work: Path, k1: float, b: float) -> None:
        self.analyzer = Analyzer()
        self.data = data
        self.build: dict[str, float] = {}
        self.bytes: dict[str, int] = {}
        doc_tokens = [self.analyzer.terms(t) for t in data["texts"]]
        self.postings = sum(len(set(t)) for t in doc_tokens)
        n = len(doc_tokens)

        t0 = time.perf_counter()  # polyvec: text in, through the public API
        db = pv.connect(work / "polyvec")
        self.coll = db.create_collection(
            "docs", {"text": pv.BM25(k1=k1, b=b), "dense": pv.Dense(data["base"].shape[1])})
        for lo in range(0, n, 10_000):
            hi = min(n, lo + 10_000)
            self.coll.add(list(range(lo, hi)), {"text": data["texts"][lo:hi],
                                                "dense": data["base"][lo:hi]})
        self.coll.flush()
        self.coll.wait_for_maintenance()
        self.build["polyvec (BM25 + dense fields)"] = time.perf_counter() - t0
        self.bytes["polyvec (its BM25 field's arrays)"] = sum(
            f.stat().st_size for f in (work / "polyvec").rglob("text.*.npy"))
        self.bytes["polyvec (the whole folder)"] = _dir_bytes(work / "polyvec")

        import bm25s

        t0 = time.perf_counter()
        self.bm25s = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.bm25s.index(doc_tokens, show_progress=False)
        self.build["bm25s (tokens given)"] = time.perf_counter() - t0
        self.bm25s.save(str(work / "bm25s"))
        self.bytes["bm25s"] = _dir_bytes(work / "bm25s")

        import tantivy

        t0 = time.perf_counter()
        sb = tantivy.SchemaBuilder()
        sb.add_text_field("body", stored=False, tokenizer_name="whitespace")
        sb.add_integer_field("id", stored=True, indexed=False, fast=True)
        (work / "tantivy").mkdir()
        self.tantivy = tantivy.Index(sb.build(), path=str(work / "tantivy"))
        writer = self.tantivy.writer(heap_size=128_000_000, num_threads=1)
        for i, toks in enumerate(doc_tokens):
            writer.add_document(tantivy.Document(id=i, body=" ".join(toks)))
        writer.commit()
        writer.wait_merging_threads()
        self.tantivy.reload()
        self.searcher = self.tantivy.searcher()
        self.build["tantivy (tokens given)"] = time.perf_counter() - t0
        self.bytes["tantivy"] = _dir_bytes(work / "tantivy")

    def polyvec(self, q: str) -> list[Any]:
        return [i for i in self.coll.search(q, K, field="text").ids if i is not None]

    def bm25s_(self, q: str) -> list[Any]:
        toks = self.analyzer.terms(q)
        if not toks:
            return []
        ids, _ = self.bm25s.retrieve([toks], k=K, show_progress=False, n_threads=1)
        return ids[0].tolist()

    def tantivy_(self, q: str) -> list[Any]:
        toks = self.analyzer.terms(q)
        if not toks:
            return []
        query = self.tantivy.parse_query(" ".join(toks), ["body"])
        return [self.searcher.doc(a)["id"][0] for _, a in self.searcher.search(query, K).hits]


def _qps(fn: Any, queries: list[str]) -> float:
    t0 = time.perf_counter()
    for q in queries:
        fn(q)
    return len(queries) / (time.perf_counter() - t0)


def _hybrid(s: Systems, data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Dense, BM25 and their three fusions (polyvec alone: one call each)."""
    out: dict[str, dict[str, float]] = {}
    queries, qv, rel = data["queries"], data["qv"], data["relevant"]
    runs: dict[str, list[list[Any]]] = {
        "dense": [s.coll.search(v, K, field="dense").ids.tolist() for v in qv],
        "bm25": [s.polyvec(q) for q in queries]}
    for fusion in ("rrf", "weighted", "dbsf"):
        runs[f"dense + bm25, {fusion}"] = [
            s.coll.search({"dense": v, "text": q}, K, fusion=fusion).ids.tolist()
            for v, q in zip(qv, queries, strict=True)]
    for name, ranked in runs.items():
        out[name] = _quality(ranked, rel)
    # fit_fusion's weights, fitted on the odd queries, measured on the even ones
    train, test = range(1, len(queries), 2), range(0, len(queries), 2)
    fit = s.coll.fit_fusion([{"dense": qv[i], "text": queries[i]} for i in train],
                            [rel[i] for i in train], fusion="weighted")
    w = fit["weights"]
    held = [rel[i] for i in test]
    out["dense (even half)"] = _quality([runs["dense"][i] for i in test], held)
    out["bm25 (even half)"] = _quality([runs["bm25"][i] for i in test], held)
    out[f"weighted, fitted on the odd half {w} (even half)"] = _quality(
        [s.coll.search({"dense": qv[i], "text": queries[i]}, K, fusion="weighted",
                       weights=w).ids.tolist() for i in test], held)
    return out


TOKEN_DIM = 128  # the late-interaction benchmark's projection (benchmarks/multivector.py)


def _with_tokens(name: str, queries: int) -> dict[str, Any]:
    """A set for the three-retriever table: dense vectors, texts and MiniLM token vectors
    (untrained late interaction, 128-d): the FAQ whole, or Debian's 10k late-interaction
    subset with its first ``queries`` queries (token vectors of 58k descriptions would take
    about 25 minutes to encode here; the subset's are cached by benchmarks/multivector.py)."""
    if name == "faq":
        from polyvec.embed import minilm_tokens

        data = _faq()
        emb = minilm_tokens(TOKEN_DIM)
        data["doc_tokens"] = emb.embed_documents(data["texts"])
        data["query_tokens"] = emb.embed_queries(data["queries"])
        return data
    import multivector

    enc = multivector.encode_cached()
    ids = np.load(multivector.CACHE / "doc_ids.npy")
    deb = _debian()
    dt, do = np.asarray(enc["doc_tokens"], np.float32), enc["doc_offsets"]
    qt, qo = np.asarray(enc["query_tokens"], np.float32), enc["query_offsets"]
    pos = {int(d): i for i, d in enumerate(ids)}
    return {"name": f"debian-10k (queries 0-{queries - 1})",
            "texts": [deb["texts"][i] for i in ids], "base": deb["base"][ids],
            "queries": deb["queries"][:queries], "qv": deb["qv"][:queries],
            "relevant": [pos[int(r)] for r in deb["relevant"][:queries]],
            "doc_tokens": [dt[do[i]:do[i + 1]] for i in range(len(ids))],
            "query_tokens": [qt[qo[i]:qo[i + 1]] for i in range(queries)]}


def _hybrid_tokens(data: dict[str, Any], work: Path) -> dict[str, dict[str, float]]:
    """Dense, BM25 and exact token MaxSim alone, then every fusion of two or three of them
    (each one ``Collection.search`` call), and weights fitted on the odd queries."""
    n = len(data["texts"])
    coll = pv.connect(work).create_collection("h", {
        "dense": pv.Dense(data["base"].shape[1]), "text": pv.BM25(),
        "tokens": pv.Multi(TOKEN_DIM)})
    for lo in range(0, n, 2_000):
        hi = min(n, lo + 2_000)
        coll.add(list(range(lo, hi)), {"dense": data["base"][lo:hi],
                                       "text": data["texts"][lo:hi],
                                       "tokens": data["doc_tokens"][lo:hi]})
    coll.flush()
    coll.wait_for_maintenance()
    rel = data["relevant"]
    per_query = [{"dense": v, "text": t, "tokens": m} for v, t, m in
                 zip(data["qv"], data["queries"], data["query_tokens"], strict=True)]
    names = {"dense": "dense", "text": "bm25", "tokens": "tokens"}
    out: dict[str, dict[str, float]] = {}
    for field in names:
        out[names[field]] = _quality([coll.search(q[field], K, field=field).ids.tolist()
                                      for q in per_query], rel)
    for fields in (("dense", "text"), ("dense", "tokens"), ("text", "tokens"),
                   ("dense", "text", "tokens")):
        for fusion in ("rrf", "weighted", "dbsf"):
            label = " + ".join(names[f] for f in fields) + f", {fusion}"
            out[label] = _quality([coll.search({f: q[f] for f in fields}, K,
                                               fusion=fusion).ids.tolist()
                                   for q in per_query], rel)
    train, test = range(1, len(rel), 2), range(0, len(rel), 2)
    fit = coll.fit_fusion([per_query[i] for i in train], [rel[i] for i in train],
                          fusion="weighted")
    w = fit["weights"]
    held = [rel[i] for i in test]
    for field in names:
        out[f"{names[field]} (even half)"] = _quality(
            [coll.search(per_query[i][field], K, field=field).ids.tolist() for i in test],
            held)
    out[f"weighted, all three, fitted on the odd half {w} (even half)"] = _quality(
        [coll.search(per_query[i], K, fusion="weighted", weights=w).ids.tolist()
         for i in test], held)
    coll.close()
    return out


def _thresholds(s: Systems, data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``min_relevance=0.5`` after each calibration method (raw scores: isotonic; a hit's
    place in its list: ranked) fitted on the odd queries, measured on the even ones:
    precision (relevant hits kept / hits kept) and recall (relevant hits kept / relevant hits
    in the top 10 before the cut), per field."""
    queries, qv, rel = data["queries"], data["qv"], data["relevant"]
    train, test = range(1, len(queries), 2), range(0, len(queries), 2)
    out = {}
    for (field, qs), method in itertools.product((("dense", qv), ("text", queries)),
                                                 ("isotonic", "ranked")):
        s.coll.calibrate_relevance([qs[i] for i in train], [rel[i] for i in train],
                                   field=field, k=K, method=method)
        kept = kept_rel = top_rel = 0
        for i in test:
            before = s.coll.search(qs[i], K, field=field).ids.tolist()
            after = [h for h in s.coll.search(qs[i], K, field=field,
                                              min_relevance=0.5).ids.tolist() if h is not None]
            kept += len(after)
            kept_rel += rel[i] in after
            top_rel += rel[i] in before
        out[f"{'bm25' if field == 'text' else field}, {method}"] = {
            "precision": kept_rel / kept if kept else float("nan"),
            "recall": kept_rel / top_rel if top_rel else float("nan"),
            "hits_kept_per_query": kept / len(test)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=2000, help="Debian queries timed per round")
    ap.add_argument("--k1", type=float, default=0.9)
    ap.add_argument("--b", type=float, default=0.4)
    ap.add_argument("--token-queries", type=int, default=400,
                    help="Debian queries of the three-retriever table (exact MaxSim each)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    out: dict[str, Any] = {"machine": machine(), "k1": args.k1, "b": args.b,
                           "rounds": args.rounds, "sets": {}}
    work = Path(tempfile.mkdtemp(prefix="pv-sparse-"))
    try:
        for data in (_debian(), _faq()):
            name = data["name"]
            s = Systems(data, work / name, args.k1, args.b)
            rel, queries = data["relevant"], data["queries"]
            quality = {"polyvec": _quality([s.polyvec(q) for q in queries], rel),
                       "bm25s": _quality([s.bm25s_(q) for q in queries], rel),
                       "tantivy (k1 1.2, b 0.75)": _quality([s.tantivy_(q) for q in queries],
                                                           rel)}
            entry: dict[str, Any] = {
                "docs": len(data["texts"]), "queries": len(queries), "postings": s.postings,
                "build_s": s.build, "bytes": s.bytes,
                "bytes_per_posting": {k: v / s.postings for k, v in s.bytes.items()},
                "quality": quality, "hybrid": _hybrid(s, data),
                "min_relevance_0.5": _thresholds(s, data)}
            if name == "debian":
                timed = queries[:args.queries]
                systems = {"polyvec": s.polyvec, "bm25s": s.bm25s_, "tantivy": s.tantivy_}
                qps: dict[str, list[float]] = {k: [] for k in systems}
                for rnd in range(args.rounds):
                    order = list(systems)[rnd % 3:] + list(systems)[:rnd % 3]
                    for k in order:
                        qps[k].append(_qps(systems[k], timed))
                    print(f"round {rnd}: " + ", ".join(f"{k} {v[-1]:.0f} QPS"
                                                       for k, v in qps.items()), flush=True)
                entry["qps"] = {k: statistics.median(v) for k, v in qps.items()}
                entry["qps_runs"] = qps
            out["sets"][name] = entry
            s.coll.close()
        out["late_interaction"] = {}
        for name in ("faq", "debian"):
            data = _with_tokens(name, args.token_queries)
            out["late_interaction"][data["name"]] = {
                "docs": len(data["texts"]), "queries": len(data["queries"]),
                "hybrid": _hybrid_tokens(data, work / f"tokens-{name}")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = _report(out, args)
    write_results("sparse", out, text, args.results)
    _plot(out, args.results / "sparse.png")
    print(text)


def _report(out: dict[str, Any], args: argparse.Namespace) -> str:
    lines = ["# Lexical and hybrid retrieval (issue 15)", "",
             f"polyvec BM25 (k1 {args.k1}, b {args.b}) against bm25s (same tokens, same k1/b, "
             "method lucene) and tantivy (same tokens, its own k1 1.2 / b 0.75); one query per "
             f"call, one thread; medians of {args.rounds} alternated rounds.", ""]
    for name, e in out["sets"].items():
        lines.append(f"## {name}: {e['docs']:,} documents, {e['queries']:,} queries, "
                     f"{e['postings']:,} postings")
        lines.append("")
        rows = [[sysname, f"{q['ndcg@10']:.4f}", f"{q['mrr@10']:.4f}", f"{q['recall@10']:.3f}"]
                for sysname, q in e["quality"].items()]
        lines += [markdown_table(["system", "nDCG@10", "MRR@10", "R@10"], rows), ""]
        d = e["quality"]["polyvec"]["ndcg@10"] - e["quality"]["bm25s"]["ndcg@10"]
        lines.append(f"polyvec - bm25s nDCG@10: {d:+.4f} (target: within 0.002).")
        if "qps" in e:
            qps = e["qps"]
            lines.append(f"QPS: polyvec {qps['polyvec']:,.0f}, bm25s {qps['bm25s']:,.0f}, "
                         f"tantivy {qps['tantivy']:,.0f}: polyvec / bm25s "
                         f"{qps['polyvec'] / qps['bm25s']:.2f}x (target 1.5x), polyvec / "
                         f"tantivy {qps['polyvec'] / qps['tantivy']:.2f}x (target 1.0x).")
        lines.append("Build (s, and documents/s): " + ", ".join(
            f"{k} {v:.1f} ({e['docs'] / v:,.0f}/s)" for k, v in e["build_s"].items())
                     + "; bytes per posting: " + ", ".join(
                         f"{k} {v:.1f}" for k, v in e["bytes_per_posting"].items())
                     + " (polyvec's folder also holds the dense vectors, 1,536 B a document).")
        lines.append("")
        rows = [[run, f"{q['ndcg@10']:.4f}", f"{q['mrr@10']:.4f}", f"{q['recall@10']:.3f}"]
                for run, q in e["hybrid"].items()]
        lines += [markdown_table(["polyvec run", "nDCG@10", "MRR@10", "R@10"], rows), ""]
        rows = [[f, f"{t['precision']:.3f}", f"{t['recall']:.3f}",
                 f"{t['hits_kept_per_query']:.2f}"]
                for f, t in e["min_relevance_0.5"].items()]
        lines += ["`min_relevance=0.5` (calibrated on the odd queries' top 10, measured on "
                  "the even ones; isotonic: on raw scores; ranked: on a hit's score, gap to "
                  "the top hit and rank):", "",
                  markdown_table(["field, method", "precision",
                                  "recall of the top-10's relevant",
                                  "hits kept / query"], rows), ""]
    for name, e in out.get("late_interaction", {}).items():
        lines += [f"## Dense, BM25 and token MaxSim: {name}, {e['docs']:,} documents, "
                  f"{e['queries']:,} queries", "",
                  "Tokens: MiniLM token vectors (untrained late interaction), 128-d, exact "
                  "MaxSim. Equal weights unless fitted.", ""]
        rows = [[run, f"{q['ndcg@10']:.4f}", f"{q['mrr@10']:.4f}", f"{q['recall@10']:.3f}"]
                for run, q in e["hybrid"].items()]
        lines += [markdown_table(["polyvec run", "nDCG@10", "MRR@10", "R@10"], rows), ""]
        singles = {r: q["ndcg@10"] for r, q in e["hybrid"].items()
                   if r in ("dense", "bm25", "tokens")}
        fused = {r: q["ndcg@10"] for r, q in e["hybrid"].items()
                 if "," in r and "even half" not in r}
        best_single, best_fused = max(singles, key=singles.get), max(fused, key=fused.get)  # type: ignore[arg-type]
        lines += [f"Best single retriever: {best_single} ({singles[best_single]:.4f}); best "
                  f"fusion: {best_fused} ({fused[best_fused]:.4f}), "
                  + ("beats it." if fused[best_fused] > singles[best_single] else
                     "**does not beat it**.")
                  + " Fusions below the best single retriever: "
                  + (", ".join(f"{r} ({v:.4f})" for r, v in fused.items()
                               if v < singles[best_single]) or "none") + ".", ""]
    lines.append("Command: `PYTHONPATH=benchmarks .venv/bin/python benchmarks/sparse.py "
                 f"--rounds {args.rounds} --queries {args.queries} --token-queries "
                 f"{args.token_queries}`")
    return "\n".join(lines)


def _plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(out["sets"])
    fig, axes = plt.subplots(1, len(sets) + 1, figsize=(5 * (len(sets) + 1), 3.6))
    deb = out["sets"].get("debian", {})
    if "qps" in deb:
        axes[0].bar(list(deb["qps"]), list(deb["qps"].values()), color=["#36c", "#c44", "#999"])
        axes[0].set_title("Debian: QPS, one thread")
    for ax, name in zip(axes[1:], sets, strict=True):
        runs = {**{f"lex: {k}": v for k, v in out["sets"][name]["quality"].items()},
                **out["sets"][name]["hybrid"]}
        ax.barh(list(runs), [v["ndcg@10"] for v in runs.values()], color="#36c")
        ax.invert_yaxis()
        ax.set_title(f"{name}: nDCG@10")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
