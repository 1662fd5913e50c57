"""Item sidecars: a sealed segment's ids and indexed payload values, beside its vectors.

An open used to read every item row of the catalog (id, payload, checksum) to build the live
table: seconds and a Python object per item at a million items. A segment written now carries,
row-aligned with its ``seqs``:

- ``@ids``: the ids as int64, when every id of the segment is an int; otherwise ``@ids.offsets``
  and ``@ids.tokens``, the ids as JSON texts (``"a",7,``: each row's text ends with a comma, so
  the texts of any run of rows, bracketed, are one JSON array, parsed by one call);
- per indexed payload path i, the rows of its in-memory column (``filters.columns.Encoded``):
  ``@c<i>.kind`` (int8), ``@c<i>.num`` (float64), and ``@c<i>.offsets`` / ``@c<i>.tokens``, the
  JSON texts of the rows whose kind needs a value (strings, lists; empty for the others).

They are files of the segment like any other: in its manifest (sizes, CRC-32s checked before
use), carried through merges by the streaming writer (a ragged pair is merged like a token
field's), immutable. The catalog's ``items`` table stays the truth for payloads and for which
rows are alive; an open reads only what it needs of it (see ``Catalog``'s ``SealedItems``).
Segments written before sidecars existed, or merged from such, have none: their items are read
from the catalog as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .stream import ragged_rows

__all__ = ["IDS", "ColumnRows", "concat", "encode", "has_sidecars", "read_columns", "read_ids",
           "take"]

IDS = "@ids"
# one indexed path's rows, as ``filters.columns.Encoded`` holds them (storage does not import
# filters): each row's kind (int8) and number (float64), and the values of the rows at
# ``rows`` (int64, sorted) whose kind needs one
ColumnRows = tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]


def _col(i: int) -> str:
    return f"@c{i}"


def _ragged(texts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, tokens)``: row i's bytes are ``tokens[offsets[i]:offsets[i + 1]]``."""
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    return offsets, np.frombuffer(b"".join(texts), dtype=np.uint8).copy()


def _parse(offsets: np.ndarray, tokens: np.ndarray) -> list[Any]:
    """The JSON values of the non-empty rows (each text ends with a comma), parsed at once."""
    if len(offsets) < 2 or int(offsets[-1]) == int(offsets[0]):
        return []
    body = np.asarray(tokens[int(offsets[0]):int(offsets[-1])]).tobytes()
    return json.loads(b"[" + body[:-1] + b"]")


_quote = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) does to a str


def _text(value: Any) -> bytes:
    """The value's compact JSON text and a comma (a string, the usual column value, is quoted
    without the ``dumps`` machinery: a seal encodes one per row)."""
    if type(value) is str:
        return (_quote(value) + ",").encode()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b","


def encode(keys: Sequence[Any] | np.ndarray, columns: Sequence[ColumnRows] | None
           ) -> dict[str, np.ndarray]:
    """The sidecar arrays of rows with ``keys`` and, per indexed path, ``columns``."""
    out: dict[str, np.ndarray] = {}
    if isinstance(keys, np.ndarray) and keys.dtype == np.int64:
        out[IDS] = keys
    elif all(type(k) is int for k in keys):
        out[IDS] = np.fromiter(keys, dtype=np.int64, count=len(keys))
    else:
        out[f"{IDS}.offsets"], out[f"{IDS}.tokens"] = _ragged([_text(k) for k in keys])
    for i, (kinds, nums, rows, values) in enumerate(columns or ()):
        texts = [b""] * len(kinds)
        made: dict[str, bytes] = {}  # a string's text, made once (columns repeat their values)
        for r, v in zip(rows.tolist(), values, strict=True):
            if type(v) is str:
                t = made.get(v)
                texts[r] = made.setdefault(v, _text(v)) if t is None else t
            else:
                texts[r] = _text(v)
        name = _col(i)
        out[f"{name}.kind"], out[f"{name}.num"] = kinds, nums
        out[f"{name}.offsets"], out[f"{name}.tokens"] = _ragged(texts)
    return out


def has_sidecars(manifest: Mapping[str, Any], n_paths: int) -> bool:
    """Whether a segment's files (its manifest's names) hold the ids and the columns of
    ``n_paths`` indexed paths."""
    ids = f"{IDS}.npy" in manifest or f"{IDS}.offsets.npy" in manifest
    return ids and all(f"{_col(i)}.kind.npy" in manifest for i in range(n_paths))


def read_ids(files: Mapping[str, np.ndarray]) -> np.ndarray | list[Any]:
    """Every row's id: an int64 array, or a list of ints and strs."""
    if IDS in files:
        return np.asarray(files[IDS])
    return _parse(files[f"{IDS}.offsets"], files[f"{IDS}.tokens"])


def read_columns(files: Mapping[str, np.ndarray], n_paths: int) -> list[ColumnRows]:
    """The rows of every indexed path's column."""
    out = []
    for i in range(n_paths):
        name = _col(i)
        offsets = np.asarray(files[f"{name}.offsets"])
        rows = np.flatnonzero(np.diff(offsets) > 0).astype(np.int64)
        values = _parse(offsets, files[f"{name}.tokens"])
        out.append((np.asarray(files[f"{name}.kind"]), np.asarray(files[f"{name}.num"]), rows,
                    values))
    return out


def take(files: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The sidecar arrays of ``rows`` (sorted positions) of a segment's files."""
    out: dict[str, np.ndarray] = {}
    for key, arr in files.items():
        if not key.startswith("@") or key.endswith(".tokens"):
            continue
        if not key.endswith(".offsets"):
            out[key] = np.asarray(arr)[rows]
            continue
        name = key.removesuffix(".offsets")
        off, tok = np.asarray(arr), np.asarray(files[f"{name}.tokens"])
        idx, lengths = ragged_rows(off[rows], off[rows + 1])
        out[key] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out[f"{name}.tokens"] = tok[idx]
    return out


def concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The sidecar arrays of several runs of rows, one after the other; a sidecar that not
    every part has is left out (the merged segment's items are then read from the catalog)."""
    if not parts:
        return {}
    names = set(parts[0]).intersection(*parts[1:])
    out: dict[str, np.ndarray] = {}
    for key in sorted(names):
        if key.endswith(".tokens"):
            continue
        if not key.endswith(".offsets"):
            out[key] = np.concatenate([p[key] for p in parts])
            continue
        name = key.removesuffix(".offsets")
        offs = [np.asarray(p[key]) for p in parts]
        bases = np.cumsum([0] + [int(o[-1]) for o in offs[:-1]])
        out[key] = np.concatenate(
            [offs[0][:1]] + [o[1:] + b for o, b in zip(offs, bases, strict=True)])
        out[f"{name}.tokens"] = np.concatenate([p[f"{name}.tokens"] for p in parts])
    return out
