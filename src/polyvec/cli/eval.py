"""``polyvec eval``: retrieval quality of polyvec on a dataset, as JSON + Markdown + PNG."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .output import emit_json

__all__ = ["add_parser", "run_eval"]


def add_parser(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval", parents=common,
        help="evaluate retrieval on a dataset (python-faq, debian-minilm, fashion-mnist, a BEIR "
             "folder or an ann-benchmarks .hdf5 file)")
    p.add_argument("dataset", help="dataset name or path")
    p.add_argument("--out", type=Path, default=Path("eval-results"), help="report folder")
    p.add_argument("--text", action="store_true",
                   help="embed the texts with MiniLM (dense + token vectors) even when the set "
                        "ships vectors")
    p.add_argument("--mv-subset", action="store_true",
                   help="debian-minilm: the 10,000-document multi-vector subset, queries 0-999")
    p.add_argument("--queries", type=int, default=None, help="evaluate the first N queries")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--token-dim", type=int, default=128,
                   help="project token vectors to this dim (0: keep 384)")
    p.add_argument("--fields", default="dense,tokens", help="text sets: dense,tokens")


def run_eval(args: argparse.Namespace) -> int:
    from polyvec.eval.datasets import load
    from polyvec.eval.runner import evaluate_text, evaluate_vectors, write_eval_report

    kw = {"mv_subset": True} if args.mv_subset else {}
    data = load(args.dataset, **kw)
    if args.queries:
        data = data.head(args.queries)
    name = data.name
    with tempfile.TemporaryDirectory(prefix="polyvec-eval-") as tmp:
        if data.base is None or args.text:
            fields = tuple(f.strip() for f in args.fields.split(",") if f.strip())
            report = evaluate_text(data, Path(tmp), backend=args.backend,
                                   token_dim=args.token_dim or None, fields=fields,
                                   progress=not args.json)
        else:
            report = evaluate_vectors(data, Path(tmp))
    files = write_eval_report(args.out, name, report)
    if args.json:
        emit_json({"report": report, "files": [str(files.json), str(files.markdown),
                                               *map(str, files.plots)]})
    else:
        print(files.markdown.read_text())
        print(f"written: {files.json}, {files.markdown}" +
              "".join(f", {p}" for p in files.plots))
    return 0
