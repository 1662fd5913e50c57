"""The compatibility report: how well new-model queries retrieve from an old-model index.

Rows (MRR@k and Recall@k against qrels):

- ``old->old``: old-model queries against the old index (the baseline; skipped with a note when
  the old model cannot embed queries any more);
- ``new->new (full re-index)``: new-model queries against every item re-embedded by the new
  model (exact search);
- ``new->old mapped``: new-model queries mapped into the old space, against the old index, for
  every mapping kind and every paired-sample size; with relevance pairs also the supervised
  adapter (at the largest sample size).

The empirical compatibility criterion (ALGORITHMS.md): a mapped new model is *compatible* when
its queries beat old-against-old, M(T(φ_new(Q)), φ_old(G)) > M(φ_old(Q), φ_old(G)); the ratio
to the baseline is reported too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgument, MissingExtra
from .mappings import KINDS, normalize

__all__ = ["CompatReport", "compatibility_report", "retrieval_metrics"]


def retrieval_metrics(ids: np.ndarray, qrels: Sequence[Any], k: int = 10) -> dict[str, float]:
    """MRR@k and Recall@k of ranked ``ids`` ``(nq, >=k)`` against relevant-id sets."""
    rr, rec = [], []
    for row, rel in zip(ids, qrels, strict=True):
        rel = set(rel)
        top = list(row[:k])
        hit = next((i for i, x in enumerate(top) if x in rel), None)
        rr.append(0.0 if hit is None else 1.0 / (hit + 1))
        rec.append(len(rel & set(top)) / max(1, len(rel)))
    return {f"mrr@{k}": float(np.mean(rr)), f"recall@{k}": float(np.mean(rec))}


@dataclass
class CompatReport:
    """The report; ``rows`` are dicts with ``method``, ``kind``, ``pairs`` and the metrics."""

    field: str
    new_model: str
    old_model: str
    k: int
    nq: int
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def baseline(self, method: str) -> float | None:
        return next((r[f"mrr@{self.k}"] for r in self.rows if r["method"] == method), None)

    def to_dict(self) -> dict[str, Any]:
        base = self.baseline("old->old")
        rows = []
        for r in self.rows:
            r = dict(r)
            if base:
                r["ratio_to_old_old"] = r[f"mrr@{self.k}"] / base
                if r["method"].startswith("new->old"):
                    r["compatible"] = bool(r[f"mrr@{self.k}"] > base)
            rows.append(r)
        return {"field": self.field, "new_model": self.new_model, "old_model": self.old_model,
                "k": self.k, "queries": self.nq, "rows": rows, "notes": self.notes,
                "criterion": "compatible when MRR(new mapped -> old index) > MRR(old -> old)"}

    def to_markdown(self) -> str:
        d = self.to_dict()
        k = self.k
        out = [f"Compatibility of {self.new_model} queries with the {self.old_model} index of "
               f"field {self.field!r} ({self.nq} queries)", "",
               f"| method | kind | paired items | MRR@{k} | Recall@{k} | × old→old | "
               "compatible |", "|---|---|---|---|---|---|---|"]
        for r in d["rows"]:
            ratio = r.get("ratio_to_old_old")
            out.append(f"| {r['method']} | {r.get('kind') or ''} | {r.get('pairs') or ''} | "
                       f"{r[f'mrr@{k}']:.4f} | {r[f'recall@{k}']:.4f} | "
                       f"{'' if ratio is None else f'{ratio:.3f}'} | "
                       f"{'' if 'compatible' not in r else ('yes' if r['compatible'] else 'no')}"
                       " |")
        out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def plot(self, path: str | Path) -> Path:
        """MRR@k of each mapping kind vs paired-sample count, with the baselines as lines."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise MissingExtra("the plot needs matplotlib: pip install 'polyvec[eval]'") from e
        k = self.k
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        mapped = [r for r in self.rows if r["method"] == "new->old mapped"]
        for kind in dict.fromkeys(r["kind"] for r in mapped):
            pts = sorted((r["pairs"], r[f"mrr@{k}"]) for r in mapped if r["kind"] == kind)
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"mapped: {kind}")
        for r in self.rows:
            if r["method"] == "new->old supervised":
                ax.scatter([r["pairs"]], [r[f"mrr@{k}"]], marker="*", s=120, color="k",
                           label=f"supervised ({r['relevance_pairs']} relevance pairs)")
        styles = {"old->old": "--", "new->new (full re-index)": ":"}
        for method, style in styles.items():
            base = self.baseline(method)
            if base is not None:
                ax.axhline(base, linestyle=style, color="gray", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("paired items")
        ax.set_ylabel(f"MRR@{k}")
        ax.set_title(f"{self.new_model} queries on the {self.old_model} index")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _topk(q: np.ndarray, x: np.ndarray, keys: Sequence[Any], k: int) -> np.ndarray:
    """Exact top-k keys by inner product (ties: the earlier item first)."""
    order = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]
    return np.asarray(list(keys), dtype=object)[order]


def compatibility_report(coll: Any, field: str, new_model: str, old_model: str, *,
                         queries: Sequence[str] | None, qrels: Sequence[Any],
                         sample_sizes: Sequence[int] = (250, 1000, 4000),
                         kinds: Sequence[str] | None = None, relevance: Any = None,
                         query_vectors: Mapping[str, np.ndarray] | None = None,
                         new_item_vectors: tuple[Sequence[Any], np.ndarray] | None = None,
                         k: int = 10, seed: int = 0, texts: Mapping[Any, str] | None = None,
                         text_key: str = "text") -> CompatReport:
    """Build a :class:`CompatReport` for ``coll``'s ``field`` (see the module docstring).

    Parameters
    ----------
    queries : list of str, optional
        Query texts (embedded with each model's embedder) ...
    query_vectors : {model name: (nq, dim) array}, optional
        ... or their vectors per model version (e.g. cached).
    qrels : list of sets
        The relevant item ids of each query.
    new_item_vectors : (ids, (n, d_new) array), optional
        New-model vectors of the items: the full re-index, and the source of paired samples
        (so nothing is embedded twice). Without it items' texts are embedded.
    relevance : optional
        Relevance pairs for the supervised adapter (as in ``fit_mapping``).
    """
    qv = dict(query_vectors or {})
    nq = len(qrels)
    rep = CompatReport(field, new_model, old_model, k, nq)

    def vectors_of(model: str) -> np.ndarray | None:
        if model in qv:
            return np.asarray(qv[model], np.float32)
        if queries is None:
            return None
        try:
            emb = coll._embedder_of(field, model)
        except MissingExtra as e:
            rep.notes.append(f"{model}: cannot embed queries ({e})")
            return None
        return np.asarray(emb.embed_queries(list(queries)), np.float32)

    q_new = vectors_of(new_model)
    if q_new is None or len(q_new) != nq:
        raise InvalidArgument(f"queries: expected {nq} queries (one per qrels entry) for "
                              f"{new_model!r}")
    q_old = vectors_of(old_model)
    if q_old is not None:
        res = coll.search(q_old, k, field=field)
        rep.rows.append({"method": "old->old", **retrieval_metrics(res.ids, qrels, k)})
    else:
        rep.notes.append("old->old baseline skipped: no old-model query vectors")
    if new_item_vectors is None:
        keys = list(coll)
        old_vecs, payloads = coll._stored(field, keys)
        words = coll._texts_of(keys, payloads, text_key, texts)
        new_vecs = np.asarray(coll._embedder_of(field, new_model).embed_documents(words),
                              np.float32)
    else:
        keys, new_vecs = list(new_item_vectors[0]), np.asarray(new_item_vectors[1], np.float32)
    if coll._fields[field].metric == "cosine":  # as a re-index through add() stores them
        new_vecs = normalize(new_vecs)
    ids = _topk(q_new, new_vecs, keys, k)
    rep.rows.append({"method": "new->new (full re-index)",
                     **retrieval_metrics(ids, qrels, k)})
    pos = {key: i for i, key in enumerate(keys)}
    sizes = sorted({min(int(n), len(keys)) for n in sample_sizes})
    largest = None
    for n in sizes:
        rows = np.sort(np.random.default_rng(seed).choice(len(keys), n, replace=False))
        sample = [keys[i] for i in rows]
        old, _ = coll._stored(field, sample)
        pairs = (new_vecs[[pos[s] for s in sample]], old)
        for kind in (kinds or KINDS):
            m, rec = coll._fit(field, new_model, old_model, pairs=pairs, kind=kind, seed=seed)
            res = coll.search(m.transform(q_new), k, field=field)
            rep.rows.append({"method": "new->old mapped", "kind": kind, "pairs": n,
                             "params": {k_: v for k_, v in m.params.items() if k_ != "held_out"},
                             **retrieval_metrics(res.ids, qrels, k)})
        largest = pairs
    if relevance is not None and largest is not None:
        m, rec = coll._fit(field, new_model, old_model, pairs=largest, relevance=relevance,
                           seed=seed)
        res = coll.search(m.transform(q_new), k, field=field)
        n_rel = len(relevance[1]) if isinstance(relevance, tuple) else len(relevance)
        rep.rows.append({"method": "new->old supervised", "kind": "supervised",
                         "pairs": len(largest[0]), "relevance_pairs": n_rel,
                         "params": {k_: v for k_, v in m.params.items()
                                    if k_ != "held_out_mrr10_curve"},
                         **retrieval_metrics(res.ids, qrels, k)})
    return rep
