"""``polyvec add``: read the input files, check them whole, then write in batches."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from polyvec import BM25, Dense, Sparse, _progress
from polyvec.errors import (
    DimensionMismatch,
    DTypeMismatch,
    DuplicateId,
    InvalidId,
    InvalidPayload,
    PolyvecError,
)
from polyvec.fields import kind_of

from .io import (
    AnySpec,
    CliError,
    Items,
    Tokens,
    read_dense,
    read_ids,
    read_payloads,
    read_records,
    read_tokens,
)

if TYPE_CHECKING:
    from polyvec.collection import Collection

__all__ = ["read_items", "check_items", "write_items"]


def read_items(args: argparse.Namespace, fields: Mapping[str, AnySpec]) -> Items:
    """Items from ``--jsonl``, or from ``--ids`` + ``--vectors`` (+ ``--payloads``)."""
    if args.jsonl is not None:
        if args.ids or args.vectors or args.payloads:
            raise CliError("--jsonl carries ids, vectors and payloads; do not combine it with "
                           "--ids/--vectors/--payloads")
        return read_records(args.jsonl, fields)
    texts = sorted(n for n, s in fields.items() if isinstance(s, Sparse | BM25))
    if texts:
        raise CliError(f"--vectors: the Sparse and BM25 fields {texts} are read from --jsonl "
                       "records only")
    if args.ids is None or not args.vectors:
        raise CliError("expected --ids FILE and --vectors FIELD=FILE ..., or --jsonl FILE")
    vectors: dict[str, np.ndarray | Tokens] = {}
    for text in args.vectors:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise CliError(f"--vectors {text!r}: expected FIELD=FILE")
        if name not in fields:
            raise CliError(f"--vectors {text!r}: unknown field {name!r}; this collection has "
                           f"{list(fields)}")
        if name in vectors:
            raise CliError(f"--vectors: field {name!r} given twice")
        vectors[name] = read_dense(path) if isinstance(fields[name], Dense) else read_tokens(path)
    missing = [f for f in fields if f not in vectors]
    if missing:
        raise CliError(f"--vectors: expected every field {list(fields)}, missing {missing}")
    payloads = read_payloads(args.payloads) if args.payloads else None
    return Items(read_ids(args.ids, int_ids=args.int_ids), vectors, payloads)


def check_items(items: Items, fields: Mapping[str, AnySpec], coll: Collection, *,
                upsert: bool) -> None:
    """Checks that cover the whole input, so a bad file fails before the first batch is written."""
    n = len(items.ids)
    for i, key in enumerate(items.ids):
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise InvalidId(f"ids[{i}]: expected a str or int id, got {type(key).__name__} "
                            f"{key!r}")
    twice = [k for k, c in Counter(map(repr, items.ids)).items() if c > 1]
    if twice:
        raise DuplicateId(f"ids: expected unique ids, got {twice[0]} more than once")
    for name, spec in fields.items():
        data = items.vectors[name]
        if isinstance(spec, Sparse | BM25):  # the field's own check, over the whole input
            kind_of(spec).check_vectors(name, spec, data, n)
            continue
        if isinstance(data, Tokens):
            got, rows = data.tokens.shape, len(data)
            ok = data.tokens.ndim == 2 and got[1] == spec.dim and rows == n
            want = f"{n} token sets of shape (tokens, {spec.dim})"
            got_text = f"{rows} token sets, tokens of shape {got}"
            dtype = data.tokens.dtype
        else:
            ok = data.shape == (n, spec.dim)
            want, got_text, dtype = f"shape ({n}, {spec.dim})", f"shape {data.shape}", data.dtype
        if not ok:
            raise DimensionMismatch(f"vectors[{name!r}]: expected {want} (one per id), got "
                                    f"{got_text}")
        if dtype.kind != "f":
            raise DTypeMismatch(f"vectors[{name!r}]: expected a float16/32/64 array, got "
                                f"dtype {dtype}")
    if items.payloads is not None:
        if len(items.payloads) != n:
            raise CliError(f"payloads: expected {n} lines (one per id), got "
                           f"{len(items.payloads)}")
        bad = next((i for i, p in enumerate(items.payloads)
                    if p is not None and not isinstance(p, dict)), None)
        if bad is not None:
            raise InvalidPayload(f"payloads[{bad}]: expected a JSON object, got "
                                 f"{type(items.payloads[bad]).__name__}")
    if not upsert:  # `in coll` costs a catalog check per id; one pass over the ids is cheaper
        have: Any = set(coll) if len(coll) < 30 * n else coll
        taken = next((k for k in items.ids if k in have), None)
        if taken is not None:
            raise DuplicateId(f"id {taken!r} already exists; pass --upsert to replace it")


def _batch(items: Items, start: int, stop: int) -> tuple[list[Any], dict[str, Any], Any]:
    vectors = {name: d.rows(start, stop) if isinstance(d, Tokens) else
               d[start:stop] if isinstance(d, list) else np.asarray(d[start:stop])
               for name, d in items.vectors.items()}
    payloads = None if items.payloads is None else items.payloads[start:stop]
    return items.ids[start:stop], vectors, payloads


def write_items(coll: Collection, items: Items, *, upsert: bool, batch_size: int,
                progress: bool) -> int:
    """Write in batches of ``batch_size``; a tqdm bar on stderr when ``progress``."""
    n = len(items.ids)
    write = coll.upsert if upsert else coll.add
    bar = None
    if progress and n > batch_size:  # a bar on a terminal, else a line every few seconds
        bar = _progress.bar(n, f"add {coll.name}", unit="item")
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            try:
                write(*_batch(items, start, stop))
            except PolyvecError as e:
                if start == 0:
                    raise
                raise CliError(f"{e} (in items {start}..{stop - 1}; the {start} items before "
                               "them were written)") from e
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    return n
