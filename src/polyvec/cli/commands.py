"""The commands. Each takes the parsed arguments, prints its answer and returns the exit status."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import polyvec
from polyvec.errors import PolyvecError, PolyvecWarning

from .add import check_items, read_items, write_items
from .compat import run_compat
from .io import (
    CliError,
    parse_field_spec,
    parse_filter_json,
    parse_id,
    parse_query,
    parse_text_field_spec,
    read_query,
)
from .output import emit_json, info_lines, item_json, item_lines, result_json, search_table
from .serve import run_keys, run_serve

if TYPE_CHECKING:
    from polyvec.collection import Collection

__all__ = ["COMMANDS"]


def _open(args: argparse.Namespace, *, create: bool = False) -> polyvec.Database:
    """The database of ``--db``; only ``create`` may make a new folder."""
    path = Path(args.db)
    if not create and not path.is_dir():
        raise CliError(f"no database folder at {path} (pass --db PATH or set POLYVEC_DB; "
                       "`polyvec create` makes one)")
    return polyvec.connect(path, create=None if create else False)


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)


def create(args: argparse.Namespace) -> int:
    vectors: dict[str, Any] = {}
    parsers = {"dense": parse_field_spec, "multi": parse_field_spec,
               "sparse": parse_text_field_spec, "bm25": parse_text_field_spec}
    for kind, parse in parsers.items():
        for text in getattr(args, kind) or []:
            name, spec = parse(text, kind)
            if name in vectors:
                raise CliError(f"--{kind} {text!r}: field {name!r} is declared twice")
            vectors[name] = spec
    if not vectors:
        raise CliError("expected at least one vector field: --dense FIELD:DIM, --multi "
                       "FIELD:DIM, --sparse FIELD or --bm25 FIELD")
    options = {} if args.segment_rows is None else {"segment_rows": args.segment_rows}
    with _open(args, create=True) as db:
        try:
            coll = db.create_collection(args.name, vectors, indexed=args.indexed or [],
                                        **options)
        except ValueError as e:  # the schema's own checks raise plain ValueError
            if isinstance(e, PolyvecError):
                raise
            raise CliError(str(e)) from None
        info = coll.info()
    if args.json:
        emit_json(info)
    else:
        print(f"created collection {args.name!r} in {db.path}")
    return 0


def add(args: argparse.Namespace) -> int:
    with _open(args) as db:
        coll = db.get_collection(args.name)
        fields = coll.schema.fields
        items = read_items(args, fields)
        check_items(items, fields, coll, upsert=args.upsert)
        n = write_items(coll, items, upsert=args.upsert, batch_size=args.batch_size,
                        progress=not args.json)
        count = len(coll)
    if args.json:
        emit_json({"written": n, "upsert": args.upsert, "count": count})
    else:
        print(f"{'upserted' if args.upsert else 'added'} {n} items to {args.name!r} "
              f"(now {count})")
    return 0


def _payloads(coll: Collection, ids: np.ndarray) -> dict[Any, Any]:
    """Payloads of every hit, fetched in one bulk ``get``."""
    keys = list(dict.fromkeys(i for i in ids.ravel().tolist() if i is not None))
    items = coll.get(keys) if keys else []
    return {k: it.payload for k, it in zip(keys, items, strict=True) if it is not None}


def search(args: argparse.Namespace) -> int:
    if args.query is not None:
        query: Any = read_query(args.query)
    elif args.text is not None:
        query = args.text
    else:
        try:
            value = json.loads(args.query_json)
        except ValueError as e:
            raise CliError(f"--query-json: expected a JSON list ({e})") from None
        query = _json_query(value, "--query-json")
    hybrid: dict[str, Any] = {}
    if args.fusion is not None:
        hybrid["fusion"] = args.fusion
    if args.weights is not None:
        try:
            hybrid["weights"] = json.loads(args.weights)
        except ValueError as e:
            raise CliError(f"--weights: expected a JSON object ({e})") from None
    flt = parse_filter_json(args.filter)
    with _open(args) as db:
        coll = db.get_collection(args.name)
        res = coll.search(query, k=args.k, field=args.field, filter=flt,
                          target_recall=args.target_recall, ef=args.ef, nprobe=args.nprobe,
                          oversample=args.oversample, **hybrid)
        payloads = _payloads(coll, res.ids) if not args.json or args.with_payloads else None
    if args.json:
        emit_json(result_json(res.ids, res.scores, res.info, payloads))
    elif res.ids.ndim == 1:
        _print(search_table(res.ids, res.scores, payloads or {}))
    else:
        for i in range(len(res.ids)):
            print(f"{'' if i == 0 else chr(10)}query {i}:")
            _print(search_table(res.ids[i], res.scores[i], payloads or {}))
    return 0


def _json_query(value: Any, where: str) -> Any:
    """A ``--query-json`` value: a text (BM25), a sparse vector ``{"indices", "values"}``, a
    hybrid query (an object of field -> any of these or a vector), or numbers."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"indices", "values"}:
        return (value["indices"], value["values"])
    if isinstance(value, dict):
        return {f: _json_query(v, f"{where}[{f!r}]") for f, v in value.items()}
    return parse_query(value, where)


def get(args: argparse.Namespace) -> int:
    keys = [parse_id(t, args.int_ids) for t in args.ids]
    with _open(args) as db:
        items = db.get_collection(args.name).get(keys)
    if args.json:
        emit_json([item_json(it, args.with_vectors) for it in items])
    else:
        for key, it in zip(keys, items, strict=True):
            _print(item_lines(key, it, args.with_vectors))
    return 0


def delete(args: argparse.Namespace) -> int:
    keys = [parse_id(t, args.int_ids) for t in args.ids]
    with _open(args) as db:
        n = db.get_collection(args.name).delete(keys)
    if args.json:
        emit_json({"deleted": n})
    else:
        print(f"deleted {n} of {len(keys)} ids from {args.name!r}")
    return 0


def _collection_table(rows: list[dict[str, Any]]) -> list[str]:
    w = max(4, *(len(r["name"]) for r in rows))
    cells = [(r["name"], r["count"] if "error" not in r else f"error: {r['error']}")
             for r in rows]
    return [f"{'name':<{w}}  count"] + [f"{n:<{w}}  {c}" for n, c in cells]


def info(args: argparse.Namespace) -> int:
    with _open(args) as db:
        if args.name is not None:
            out: Any = db.get_collection(args.name).info()
            lines = info_lines(out)
        else:
            rows = []
            for name in db.list_collections():
                try:  # one damaged collection must not hide the others
                    rows.append({"name": name, "count": len(db.get_collection(name))})
                except PolyvecError as e:
                    rows.append({"name": name, "count": None, "error": str(e)})
            out = {"db": str(db.path), "collections": rows}
            lines = _collection_table(rows) if rows else [f"(no collections in {db.path})"]
    if args.json:
        emit_json(out)
    else:
        _print(lines)
    return 0


def _maintain(args: argparse.Namespace, method: str, verb: str) -> int:
    with _open(args) as db:
        coll = db.get_collection(args.name)
        getattr(coll, method)()
        out = coll.info()
    if args.json:
        emit_json(out)
    else:
        print(f"{verb} {args.name!r}: {out['count']} items, {len(out['segments'])} sealed "
              f"segments, {out['growing_rows']} growing rows")
    return 0


def compact(args: argparse.Namespace) -> int:
    return _maintain(args, "compact", "compacted")


def flush(args: argparse.Namespace) -> int:
    return _maintain(args, "flush", "flushed")


def drop(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError(f"drop deletes collection {args.name!r} and all its data; pass --yes "
                       "to confirm")
    with _open(args) as db:
        db.drop_collection(args.name)
    if args.json:
        emit_json({"dropped": args.name})
    else:
        print(f"dropped collection {args.name!r}")
    return 0


def index(args: argparse.Namespace) -> int:
    sample = None if args.sample_queries is None else np.asarray(read_query(args.sample_queries))
    with _open(args) as db, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PolyvecWarning)
        coll = db.get_collection(args.name)
        coll.create_index(args.field, args.spec, sample_queries=sample)
        info = coll.info()["indexes"][args.field]
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        emit_json(info)
    else:
        cal = info["calibration"] or {}
        print(f"indexed {args.name}.{args.field} with {info['spec']}: "
              f"{info['segments_indexed']} segment(s) indexed, {info['segments_exact']} exact; "
              f"{info['ram_bytes_per_vector'] or 0:.0f} B/vector in RAM; calibrated on "
              f"{info['calibrated_on']}")
        for t, p, r in zip(cal.get("targets", []), cal.get("params", []),
                           cal.get("recalls", []), strict=False):
            knobs = ", ".join(f"{k}={v}" for k, v in p.items() if v is not None)
            print(f"  target recall {t:.2f}: {knobs} (measured {r:.3f})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .eval import run_eval as run

    return run(args)


COMMANDS = {"create": create, "add": add, "search": search, "get": get, "delete": delete,
            "info": info, "compact": compact, "flush": flush, "drop": drop, "eval": run_eval,
            "index": index, "compat": run_compat, "serve": run_serve, "keys": run_keys}
