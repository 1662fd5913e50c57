"""Evaluate polyvec retrieval on a :class:`~polyvec.eval.datasets.Dataset`.

Two flows, one report shape:

- text sets (Python FAQ, BEIR, Debian descriptions): the corpus is embedded with MiniLM into a
  dense field and a token-vector field (MiniLM token vectors, untrained late interaction,
  scored by exact MaxSim); every query is searched on each field; MRR@10, nDCG@10 and R@10
  against the qrels (ir-measures), plus the LID distribution of the dense vectors;
- vector sets (ann-benchmarks files, Debian vectors): the given vectors go into a dense field;
  recall@10 against the set's exact neighbours, and IR metrics where there are qrels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import polyvec as pv

from .datasets import Dataset
from .lid import lid_mle, lid_summary
from .metrics import DEFAULT_IR_METRICS, ir_metrics, recall_at_k, run_from_results
from .report import PlotSpec, ReportFiles, write_report

__all__ = ["FieldResult", "build_text_collection", "evaluate_text", "evaluate_vectors",
           "field_rows", "write_eval_report"]

DENSE_LABEL = "dense MiniLM (384-d)"


def token_label(dim: int | None) -> str:
    return f"MiniLM token vectors, MaxSim ({dim or 384}-d, untrained late interaction)"


@dataclass(frozen=True)
class FieldResult:
    """All queries searched on one field."""

    label: str
    field: str
    ids: np.ndarray
    scores: np.ndarray
    seconds: float


def build_text_collection(db: pv.Database, name: str, data: Dataset, *, backend: str = "torch",
                          token_dim: int | None = 128, fields: tuple[str, ...] = ("dense",
                                                                                   "tokens"),
                          progress: bool = True, batch: int = 256) -> pv.Collection:
    """A collection holding ``data.corpus`` embedded into the requested fields."""
    from ..embed import minilm, minilm_tokens

    vectors: dict[str, Any] = {}
    embedders: dict[str, Any] = {}
    if "dense" in fields:
        embedders["dense"] = minilm(backend)
        vectors["dense"] = pv.Dense(384)
    if "tokens" in fields:
        embedders["tokens"] = minilm_tokens(token_dim, backend=backend)
        vectors["tokens"] = pv.Multi(token_dim or 384)
    coll = db.create_collection(name, vectors, embedders=embedders)
    texts = [(d.get("title", "") + ". " if d.get("title") else "") + d["text"]
             for d in data.corpus]
    payloads = data.payloads or [{"title": d.get("title", "")} for d in data.corpus]
    ids = [d["id"] for d in data.corpus]
    with tqdm(total=len(ids), desc=f"embedding + indexing ({', '.join(fields)})", unit="doc",
              disable=not progress) as bar:
        for lo in range(0, len(ids), batch):
            coll.add_texts(texts[lo:lo + batch], ids[lo:lo + batch], payloads[lo:lo + batch])
            bar.update(len(texts[lo:lo + batch]))
    coll.flush()
    return coll


def search_field(coll: pv.Collection, field: str, label: str, queries: Any, k: int,
                 *, text: bool) -> FieldResult:
    t = time.perf_counter()
    res = coll.search_text(queries, k, field=field) if text else coll.search(queries, k,
                                                                            field=field)
    return FieldResult(label, field, res.ids, res.scores, time.perf_counter() - t)


def field_rows(data: Dataset, results: list[FieldResult], *,
               metrics: tuple[str, ...] = DEFAULT_IR_METRICS) -> list[dict[str, Any]]:
    """One table row per field: IR metrics against the qrels, and queries per second."""
    qids = [q["id"] for q in data.queries]
    rows = []
    for r in results:
        row: dict[str, Any] = {"system": r.label}
        if data.qrels:
            row |= ir_metrics(run_from_results(qids, r.ids, r.scores), data.qrels,
                              metrics=metrics)
        row["QPS"] = len(qids) / r.seconds if r.seconds else float("nan")
        rows.append(row)
    return rows


def evaluate_text(data: Dataset, db_path: Path, *, backend: str = "torch",
                  token_dim: int | None = 128, fields: tuple[str, ...] = ("dense", "tokens"),
                  k: int = 10, progress: bool = True) -> dict[str, Any]:
    """Embed, index and search a text set; returns the report data with ``rows``."""
    db = pv.connect(db_path)
    if data.name in db.list_collections():
        db.drop_collection(data.name)
    t = time.perf_counter()
    coll = build_text_collection(db, data.name, data, backend=backend, token_dim=token_dim,
                                 fields=fields, progress=progress)
    build_s = time.perf_counter() - t
    texts = [q["text"] for q in data.queries]
    results = []
    if "dense" in fields:
        results.append(search_field(coll, "dense", DENSE_LABEL, texts, max(k, 100), text=True))
    if "tokens" in fields:
        results.append(search_field(coll, "tokens", token_label(token_dim), texts, max(k, 100),
                                    text=True))
    out: dict[str, Any] = {"dataset": data.describe(), "backend": backend, "k": k,
                           "build_seconds": build_s, "rows": field_rows(data, results)}
    if "dense" in fields:
        items = coll.get([d["id"] for d in data.corpus[:2000]])
        dense = np.stack([it.vectors["dense"] for it in items if it is not None])
        out["lid_dense"] = lid_summary(lid_mle(dense, k=min(20, len(dense) - 1),
                                               sample=500, metric="cosine"))
    db.close()
    return out


def evaluate_vectors(data: Dataset, db_path: Path, *, k: int = 10) -> dict[str, Any]:
    """Exact search over a vector set: recall@k vs its neighbours, IR metrics if judged."""
    if data.base is None or data.query_vectors is None:
        raise pv.InvalidArgument(f"{data.name}: no vectors; evaluate it as a text set")
    metric = data.metric or "cosine"
    db = pv.connect(db_path)
    if data.name in db.list_collections():
        db.drop_collection(data.name)
    coll = db.create_collection(data.name, {"v": pv.Dense(data.base.shape[1], metric=metric)})
    doc_ids = np.array([d["id"] for d in data.corpus], dtype=object)
    t = time.perf_counter()
    for lo in range(0, len(data.base), 10_000):
        coll.add(list(doc_ids[lo:lo + 10_000]), {"v": data.base[lo:lo + 10_000]})
    coll.flush()
    build_s = time.perf_counter() - t
    res = search_field(coll, "v", f"polyvec exact ({metric})", data.query_vectors, max(k, 100),
                       text=False)
    out: dict[str, Any] = {"dataset": data.describe(), "k": k, "build_seconds": build_s}
    row: dict[str, Any] = {"system": res.label}
    if data.neighbors is not None:
        row[f"recall@{k} vs dataset neighbours"] = recall_at_k(
            res.ids[:, :k], doc_ids[data.neighbors], k).mean
    if data.qrels:
        row |= ir_metrics(run_from_results([q["id"] for q in data.queries], res.ids,
                                           res.scores), data.qrels)
    row["QPS"] = len(data.queries) / res.seconds
    out["rows"] = [row]
    out["lid"] = lid_summary(lid_mle(np.asarray(data.base, dtype=np.float32), k=20, sample=500,
                                     metric="cosine" if metric == "cosine" else "l2"))
    db.close()
    return out


def write_eval_report(out_dir: Path, name: str, data: dict[str, Any]) -> ReportFiles:
    rows = data["rows"]
    metric_cols = tuple(c for c in rows[0] if c not in ("system", "QPS"))
    plots = [PlotSpec(name=f"{name}-metrics", kind="bar", x="system", y=metric_cols,
                      title=f"{name}: retrieval quality")] if metric_cols else None
    return write_report(out_dir, name, data, rows, plots=plots)
