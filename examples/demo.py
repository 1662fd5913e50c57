"""polyvec demo: ask the Python FAQ questions, dense vs multi-vector retrieval, with evaluation.

1. Fetches the Python FAQ from the Debian package python3.11-doc (apt-get download, cached).
2. Embeds every answer with all-MiniLM-L6-v2 into a dense field, and into a multi-vector
   field of MiniLM token vectors projected to 128-d (untrained late interaction, MaxSim).
3. Asks a few questions and prints the top answers with their payload.
4. Evaluates both fields on every FAQ question (its own answer is the relevant document):
   MRR@10, nDCG@10 and Recall@10 via ir-measures; writes JSON + Markdown + PNG.

    python examples/demo.py [--db ./demo-db] [--out ./demo-results] [--backend torch|onnx]
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
import time
from pathlib import Path

import polyvec as pv
from polyvec.eval.datasets import load_python_faq
from polyvec.eval.runner import (
    DENSE_LABEL,
    build_text_collection,
    field_rows,
    search_field,
    token_label,
    write_eval_report,
)

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "how can I make my python program run faster?",
    "is there a way to turn a python script into a windows exe",
    "why does my default argument list keep growing between calls",
    "how to copy an object",
]


def show(coll: pv.Collection, question: str, field: str, *, filter: dict | None = None) -> None:
    hits = coll.search_text(question, k=3, field=field, filter=filter)
    items = coll.get([i for i in hits.ids if i is not None])
    for rank, (item, score) in enumerate(zip(items, hits.scores, strict=False), 1):
        p = item.payload
        print(f"     {rank}. {score:6.3f}  [{p['page']}] {p['question']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=ROOT / "demo-db")
    ap.add_argument("--out", type=Path, default=ROOT / "demo-results")
    ap.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    args = ap.parse_args()

    t_all = time.perf_counter()
    print("fetching the Python FAQ (Debian package python3.11-doc) ...")
    faq = load_python_faq()
    print(f"  {faq.describe()}")
    shutil.rmtree(args.db, ignore_errors=True)
    db = pv.connect(args.db)
    print(f"embedding {len(faq.corpus)} answers with all-MiniLM-L6-v2 ({args.backend}): "
          "dense 384-d + token vectors 128-d")
    t = time.perf_counter()
    coll = build_text_collection(db, "python-faq", faq, backend=args.backend, token_dim=128,
                                 batch=64)
    info = coll.info()
    print(f"  indexed {info['count']} items in {time.perf_counter() - t:.1f} s -> {args.db} "
          f"({info['bytes_on_disk'] / 2**20:.1f} MiB on disk)")

    for q in QUESTIONS:
        print(f"\n  Q: {q}")
        print("   dense:")
        show(coll, q, "dense")
        print("   multi-vector (MaxSim):")
        show(coll, q, "tokens")
    q = "how do I generate random numbers"
    print(f"\n  Q: {q}   filter: page == 'library'")
    show(coll, q, "tokens", filter={"page": "library"})

    print(f"\nevaluating on all {len(faq.queries)} FAQ questions ...")
    texts = [x["text"] for x in faq.queries]
    results = [search_field(coll, "dense", DENSE_LABEL, texts, 100, text=True),
               search_field(coll, "tokens", token_label(128), texts, 100, text=True)]
    rows = field_rows(faq, results)
    files = write_eval_report(args.out, "python-faq", {"dataset": faq.describe(),
                                                        "backend": args.backend, "rows": rows})
    print()
    print(textwrap.indent(files.markdown.read_text().split("\n![")[0].strip(), "  "))
    print(f"\n  report: {files.json}, {files.markdown}" + "".join(f", {p}" for p in files.plots))
    print(f"done in {time.perf_counter() - t_all:.0f} s")
    db.close()


if __name__ == "__main__":
    main()
