"""Build ``tests/fixtures/mv_tokens.npz``: real MiniLM token vectors of real Debian text.

Run from the repository root: ``PYTHONPATH=src .venv/bin/python scripts/make_token_fixture.py``.
Needs the shared debian-minilm set and the ``models`` extra (torch backend). Deterministic up
to the model's float arithmetic.

What it writes (float16 tokens, 128-d via the seeded orthonormal projection of the data README,
i.e. ``polyvec.embed.minilm_tokens(128)``):

- queries: the synopses of queries ``qid`` 0-39 (``query_tokens``, ``query_offsets``);
- documents: the 40 relevant descriptions of those queries plus 160 other documents of the
  multi-vector subset (``mv_doc_ids.npy``) drawn with ``default_rng(0)``, in ascending id order
  (``doc_tokens``, ``doc_offsets``, ``doc_ids`` = rows of ``docs.jsonl``);
- ``relevant``: per query, the row (in the fixture's document order) of its relevant document;
- ``section``: each document's Debian section (a real payload to filter on).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polyvec.embed import minilm_tokens
from polyvec.eval.datasets import debian_minilm_folder

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "mv_tokens.npz"
N_QUERIES, N_OTHER, DIM = 40, 160, 128


def _pack(sets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    return np.concatenate(sets).astype(np.float16), offsets


def main() -> None:
    src = debian_minilm_folder()
    docs = [json.loads(line) for line in (src / "docs.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (src / "queries.jsonl").open(encoding="utf-8")]
    queries = queries[:N_QUERIES]
    relevant = {q["doc_id"] for q in queries}
    mv = np.load(src / "mv_doc_ids.npy")
    pool = np.array(sorted(set(mv.tolist()) - relevant))
    others = np.random.default_rng(0).choice(pool, N_OTHER, replace=False)
    doc_ids = np.array(sorted(relevant | set(others.tolist())), dtype=np.int64)
    emb = minilm_tokens(DIM)
    d_tok, d_off = _pack(emb.embed_documents([docs[i]["description"] for i in doc_ids]))
    q_tok, q_off = _pack(emb.embed_queries([q["text"] for q in queries]))
    row = {int(d): i for i, d in enumerate(doc_ids)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT, doc_tokens=d_tok, doc_offsets=d_off, query_tokens=q_tok, query_offsets=q_off,
        doc_ids=doc_ids, relevant=np.array([row[q["doc_id"]] for q in queries], np.int64),
        section=np.array([docs[i]["section"] for i in doc_ids]))
    print(f"{OUT}: {len(doc_ids)} docs, {len(d_tok)} doc tokens, {len(q_tok)} query tokens, "
          f"{OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
