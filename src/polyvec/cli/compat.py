"""``polyvec compat``: the compatibility report of a new model version against a field's index
(JSON + Markdown + PNG). Both model versions must be registered on the field
(``Collection.register_model``) and have built-in embedders (see ``polyvec.embed.registry``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import MissingExtra
from .io import CliError
from .output import emit_json

__all__ = ["add_parser", "run_compat"]


def add_parser(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("compat", parents=common,
                       help="how well a new model's queries work on a field's old index")
    p.add_argument("name", help="collection")
    p.add_argument("field", help="dense vector field")
    p.add_argument("--new", default="v2", help="new model version (default v2)")
    p.add_argument("--old", default="v1", help="old model version = the field's (default v1)")
    p.add_argument("--queries", required=True, metavar="FILE.jsonl",
                   help='lines of {"text": ..., "relevant": [ids]}')
    p.add_argument("--relevance", metavar="FILE.jsonl",
                   help='training pairs for the supervised adapter: {"text": ..., "id": ...}')
    p.add_argument("--sample-sizes", default="250,1000,4000", help="paired-item counts")
    p.add_argument("--text-key", default="text", help="payload key holding items' texts")
    p.add_argument("--out", type=Path, default=Path("compat-results"), help="report folder")


def _jsonl(path: str) -> list[dict]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise CliError(f"{path}: cannot read JSON lines ({e})") from None


def run_compat(args: argparse.Namespace) -> int:
    import polyvec

    rows = _jsonl(args.queries)
    if not rows or any("text" not in r or "relevant" not in r for r in rows):
        raise CliError(f"{args.queries}: expected lines with 'text' and 'relevant'")
    try:
        sizes = tuple(int(s) for s in args.sample_sizes.split(","))
    except ValueError:
        raise CliError(f"--sample-sizes: expected ints separated by commas, got "
                       f"{args.sample_sizes!r}") from None
    relevance = None
    if args.relevance:
        relevance = [(r["text"], r["id"]) for r in _jsonl(args.relevance)]
    with polyvec.connect(args.db, create=False) as db:
        coll = db.get_collection(args.name)
        rep = coll.compatibility_report(args.field, args.new, args.old,
                                        queries=[r["text"] for r in rows],
                                        qrels=[set(r["relevant"]) for r in rows],
                                        sample_sizes=sizes, relevance=relevance,
                                        text_key=args.text_key)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"compat-{args.name}-{args.field}-{args.new}-{args.old}"
    written = [f"{stem}.json", f"{stem}.md"]
    try:
        written.append(str(rep.plot(stem.with_suffix(".png"))))
    except MissingExtra as e:  # matplotlib is the [eval] extra: the report stands without it
        rep.notes.append(f"plot not drawn: {e}")
    stem.with_suffix(".json").write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
    stem.with_suffix(".md").write_text(rep.to_markdown())
    if args.json:
        emit_json(rep.to_dict())
    else:
        print(rep.to_markdown())
        print(f"written: {', '.join(written)}")
    return 0
