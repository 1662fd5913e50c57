"""Data of benchmarks/upgrade.py: the debian-minilm subset, eval queries, training pairs, and
the old model's (paraphrase-MiniLM-L3-v2) embeddings, cached under ~/.cache/polyvec/upgrade/.

Run it alone once (``python benchmarks/upgrade_data.py``) to fill the cache; upgrade.py calls it.

- Index: the 10,000 documents of ``mv_doc_ids.npy`` (the relevant documents of queries 0-999 plus
  seeded random others), text = ``description``.
- Eval: queries 0-999 (their synopses) with qrels.
- Training (query -> document) pairs for the supervised adapter: 4,000 documents of the index
  that are none of the 2,000 evaluation queries' documents and whose synopsis is none of the
  evaluation query texts (seeded sample); query = the document's synopsis.
- New model (all-MiniLM-L6-v2): documents and eval queries from the shipped base_f16 /
  queries_f16; the 4,000 training synopses embedded here with the same torch model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, read_jsonl  # noqa: E402

SET = DATA / "debian-minilm"
CACHE = Path.home() / ".cache" / "polyvec" / "upgrade"
N_EVAL = 1000
N_TRAIN = 4000


def _cached(name: str, fn: Any) -> np.ndarray:
    path = CACHE / f"{name}.npy"
    if path.exists():
        return np.load(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(fn(), dtype=np.float32)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)
    return arr


def load() -> dict[str, Any]:
    docs = read_jsonl(SET / "docs.jsonl")
    queries = read_jsonl(SET / "queries.jsonl")
    doc_ids = np.sort(np.load(SET / "mv_doc_ids.npy"))
    eval_q = queries[:N_EVAL]
    eval_docs = {q["doc_id"] for q in queries}
    eval_texts = {q["text"].strip().lower() for q in queries}
    candidates = [int(d) for d in doc_ids if int(d) not in eval_docs
                  and docs[int(d)]["synopsis"].strip().lower() not in eval_texts]
    rng = np.random.default_rng(0)
    train_docs = sorted(int(d) for d in rng.choice(candidates, N_TRAIN, replace=False))
    base = np.load(SET / "base_f16.npy")
    qv = np.load(SET / "queries_f16.npy")
    doc_texts = [docs[int(d)]["description"] for d in doc_ids]
    eval_texts_list = [q["text"] for q in eval_q]
    train_texts = [docs[d]["synopsis"] for d in train_docs]

    def l3(texts: list[str]) -> Any:
        from polyvec.embed import paraphrase_minilm
        return lambda: paraphrase_minilm().embed_documents(texts, batch_size=64, progress=True)

    def l6(texts: list[str]) -> Any:
        from polyvec.embed import minilm
        return lambda: minilm("torch").embed_queries(texts, batch_size=64, progress=True)

    return {
        "doc_ids": doc_ids,
        "doc_texts": doc_texts,
        "eval_texts": eval_texts_list,
        "eval_rel": np.array([q["doc_id"] for q in eval_q], dtype=np.int64),
        "train_docs": np.array(train_docs, dtype=np.int64),
        "train_texts": train_texts,
        "new_docs": base[doc_ids].astype(np.float32),
        "new_eval": qv[:N_EVAL].astype(np.float32),
        "old_docs": _cached("l3_docs", l3(doc_texts)),
        "old_eval": _cached("l3_eval_queries", l3(eval_texts_list)),
        "old_train": _cached("l3_train_queries", l3(train_texts)),
        "new_train": _cached("l6_train_queries", l6(train_texts)),
    }


if __name__ == "__main__":
    d = load()
    print(json.dumps({k: list(v.shape) for k, v in d.items() if isinstance(v, np.ndarray)}))
