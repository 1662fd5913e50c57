"""The ``polyvec`` command line: a thin shell over the public API.

Every command takes the database folder as ``--db PATH`` (default: ``$POLYVEC_DB``, else
``./polyvec-data``). User errors print one line ``error: <message>`` on stderr and exit 2.

>>> import tempfile
>>> main(["--db", tempfile.mkdtemp(), "create", "docs", "--dense", "dense:3"])  # doctest: +ELLIPSIS
created collection 'docs' in ...
0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser"]

DEFAULT_DB = "./polyvec-data"


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return n


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                   help=f"database folder (default: $POLYVEC_DB or {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print JSON on stdout, nothing else")
    return p


def _int_ids_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--int-ids", action="store_true",
                   help=f"read {what} as integers (default: strings, as written)")
    p.add_argument("--str-ids", action="store_true", help=argparse.SUPPRESS)  # the default now


def _ids_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="+", metavar="ID")
    _int_ids_arg(p, "ids")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyvec", description="polyvec vector database")
    parser.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                        help=f"database folder (default: $POLYVEC_DB or {DEFAULT_DB})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common()]
    many: dict[str, Any] = {"nargs": "+", "action": "extend"}

    p = sub.add_parser("create", parents=common, help="create a collection")
    p.add_argument("name")
    p.add_argument("--dense", metavar="FIELD:DIM[:METRIC[:DTYPE]]", **many,
                   help="a dense vector field (metric cosine|dot|l2, dtype f32|f16)")
    p.add_argument("--multi", metavar="FIELD:DIM[:METRIC]", **many,
                   help="a multi-vector (token set) field scored by MaxSim")
    p.add_argument("--sparse", metavar="FIELD[:DIM[:DTYPE[:MAX_WEIGHT]]]", **many,
                   help="a sparse vector field (indices, values), dot-product scored (dtype "
                   "f32|f16|u8; u8 stores weights in [0, MAX_WEIGHT] in 255 steps)")
    p.add_argument("--bm25", metavar="FIELD[:KEY=VALUE,...]", **many,
                   help="a BM25 text field (keys: k1, b, stemmer, stopwords=english|none, "
                   "split_identifiers=true|false, min_length)")
    p.add_argument("--indexed", metavar="PATH", **many, help="payload paths to index")
    p.add_argument("--segment-rows", type=_positive_int, metavar="N")

    p = sub.add_parser("add", parents=common, help="add items from files")
    p.add_argument("name")
    p.add_argument("--ids", metavar="FILE", help="ids: .npy, .txt or .jsonl (one per line)")
    p.add_argument("--vectors", metavar="FIELD=FILE", **many,
                   help="dense: (n, dim) .npy; multi: .npz with tokens (T, dim), offsets (n+1,)")
    p.add_argument("--payloads", metavar="FILE.jsonl", help="one JSON object per line")
    p.add_argument("--jsonl", metavar="FILE",
                   help='lines of {"id": ..., "vectors": {...}, "payload": {...}}')
    p.add_argument("--upsert", action="store_true", help="replace items that exist")
    p.add_argument("--batch-size", type=_positive_int, default=1000, metavar="N")
    _int_ids_arg(p, ".txt ids")

    p = sub.add_parser("search", parents=common, help="top-k search")
    p.add_argument("name")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", metavar="FILE", help=".npy (1-D one query, 2-D batch), .npz "
                   "token sets, or .json")
    q.add_argument("--query-json", metavar="JSON", help="a JSON list, e.g. '[0.1, 0.2]'; a "
                   "sparse vector {\"indices\": [...], \"values\": [...]}; or a hybrid query, "
                   "an object of field -> query")
    q.add_argument("--text", metavar="TEXT", help="a BM25 field's query text")
    p.add_argument("--fusion", choices=["rrf", "weighted", "dbsf"],
                   help="a hybrid query's fusion (default rrf)")
    p.add_argument("--weights", metavar="JSON", help="a hybrid query's field weights")
    p.add_argument("--field", help="vector field (needed when there are several)")
    p.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    p.add_argument("--filter", metavar="JSON", help='payload filter, e.g. \'{"lang": "en"}\'')
    p.add_argument("--with-payloads", action="store_true", help="add payloads to --json output")
    p.add_argument("--target-recall", type=float, help="with an index: calibrated recall target")
    p.add_argument("--ef", type=int, help="with an HNSW index: search breadth")
    p.add_argument("--nprobe", type=int, help="with an IVF index: cells probed")
    p.add_argument("--oversample", type=float, help="with a compressed index: rerank depth / k")

    p = sub.add_parser("index", parents=common,
                       help="build an ANN index on a dense field, e.g. HNSW32,SQ8,Refine")
    p.add_argument("name")
    p.add_argument("field")
    p.add_argument("spec", help="factory string: HNSW32,SQ8,Refine | IVF1024,PQ48,Refine | ...")
    p.add_argument("--sample-queries", metavar="FILE.npy",
                   help="real queries (n, dim) to calibrate recall targets on")

    p = sub.add_parser("get", parents=common, help="fetch items by id")
    p.add_argument("name")
    _ids_args(p)
    p.add_argument("--with-vectors", action="store_true")

    p = sub.add_parser("delete", parents=common, help="delete items by id")
    p.add_argument("name")
    _ids_args(p)

    p = sub.add_parser("info", parents=common, help="list collections, or describe one")
    p.add_argument("name", nargs="?")

    for name, text in [("compact", "rewrite segments without deleted rows"),
                       ("flush", "seal the growing segment")]:
        sub.add_parser(name, parents=common, help=text).add_argument("name")

    p = sub.add_parser("drop", parents=common, help="delete a collection and its data")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="confirm")

    from .eval import add_parser as add_eval_parser

    add_eval_parser(sub, common)
    from .compat import add_parser as add_compat_parser

    add_compat_parser(sub, common)
    from .serve import add_parser as add_serve_parser

    add_serve_parser(sub, common)
    return parser


def _message(e: BaseException) -> str:
    from polyvec.errors import PolyvecError

    if isinstance(e, OSError) and not isinstance(e, PolyvecError) and e.strerror:
        text = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for user errors)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or an argparse error (already printed)
        return e.code if isinstance(e.code, int) else 2
    args.db = getattr(args, "db", None) or os.environ.get("POLYVEC_DB") or DEFAULT_DB

    from polyvec.errors import PolyvecError

    from .commands import COMMANDS
    from .io import CliError

    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. `polyvec search ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (PolyvecError, CliError, OSError) as e:
        print(f"error: {_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
