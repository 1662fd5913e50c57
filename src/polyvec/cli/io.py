"""Reading the CLI's input files and arguments into what the public API takes.

Every problem with an input is raised as :class:`CliError` (or a :mod:`polyvec.errors` type, or
``FileNotFoundError``) whose message names the file, and the line where there is one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyvec import BM25, Dense, Multi, Sparse

__all__ = [
    "CliError",
    "Tokens",
    "Items",
    "parse_field_spec",
    "parse_id",
    "read_ids",
    "read_dense",
    "read_tokens",
    "read_payloads",
    "read_records",
    "parse_text_field_spec",
    "parse_query",
    "read_query",
    "parse_filter_json",
]

Key = int | str
FieldSpec = Dense | Multi
AnySpec = Dense | Multi | Sparse | BM25
_INT = re.compile(r"-?\d+")
_KINDS: dict[str, type[Dense] | type[Multi]] = {"dense": Dense, "multi": Multi}


class CliError(Exception):
    """A bad command-line argument or input file."""


@dataclass(frozen=True)
class Tokens:
    """Token sets of n items: set ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``."""

    tokens: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self, start: int, stop: int) -> list[np.ndarray]:
        off = self.offsets
        return [self.tokens[int(off[i]):int(off[i + 1])] for i in range(start, stop)]

    @classmethod
    def from_list(cls, sets: list[np.ndarray], dim: int) -> Tokens:
        offsets = np.zeros(len(sets) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in sets])
        tokens = np.concatenate(sets) if sets else np.zeros((0, dim), dtype=np.float32)
        return cls(tokens, offsets)


@dataclass(frozen=True)
class Items:
    """What ``add`` writes: ids, every field's vectors, and optional payloads."""

    ids: list[Key]
    vectors: dict[str, Any]  # an array, Tokens, or a list (texts, sparse vectors)
    payloads: list[Any] | None


def parse_field_spec(text: str, kind: str) -> tuple[str, FieldSpec]:
    """``FIELD:DIM[:METRIC[:DTYPE]]`` -> ``(name, Dense | Multi)``."""
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4 or not parts[0]:
        raise CliError(f"--{kind} {text!r}: expected FIELD:DIM[:METRIC[:DTYPE]]")
    name, dim, *rest = parts
    if not dim.isdigit():
        raise CliError(f"--{kind} {text!r}: expected DIM to be a positive int, got {dim!r}")
    try:
        return name, _KINDS[kind](int(dim), *rest)
    except ValueError as e:  # Dense/Multi reject a bad dim, metric or dtype
        raise CliError(f"--{kind} {text!r}: {e}") from None


def parse_text_field_spec(text: str, kind: str) -> tuple[str, Sparse | BM25]:
    """``FIELD[:DIM[:DTYPE[:MAX_WEIGHT]]]`` -> ``(name, Sparse)`` (``MAX_WEIGHT``: dtype u8's);
    ``FIELD[:KEY=VALUE,...]`` -> ``(name,
    BM25)`` (keys k1, b, stemmer, stopwords (english|none), split_identifiers, min_length)."""
    name, _, rest = text.partition(":")
    if not name:
        raise CliError(f"--{kind} {text!r}: expected a field name first")
    try:
        if kind == "sparse":
            parts = rest.split(":") if rest else []
            if len(parts) > 3 or (parts and not parts[0].isdigit()):
                raise CliError(f"--sparse {text!r}: expected FIELD[:DIM[:DTYPE[:MAX_WEIGHT]]]")
            return name, Sparse(int(parts[0]) if parts else Sparse().dim,
                                parts[1] if len(parts) > 1 else "f32",
                                float(parts[2]) if len(parts) > 2 else None)
        options: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise CliError(f"--bm25 {text!r}: expected FIELD[:KEY=VALUE,...], got {item!r}")
            options[key] = value
        analyzer: dict[str, Any] = {}
        if "stemmer" in options:
            analyzer["stemmer"] = options.pop("stemmer")
        if "stopwords" in options:
            sw = options.pop("stopwords")
            analyzer["stopwords"] = None if sw == "none" else sw
        if "split_identifiers" in options:
            analyzer["split_identifiers"] = options.pop("split_identifiers") in ("true", "1")
        if "min_length" in options:
            analyzer["min_length"] = int(options.pop("min_length"))
        numbers = {k: float(options.pop(k)) for k in ("k1", "b") if k in options}
        if options:
            raise CliError(f"--bm25 {text!r}: unknown options {sorted(options)}; expected k1, "
                           "b, stemmer, stopwords, split_identifiers, min_length")
        return name, BM25(analyzer, **numbers)
    except ValueError as e:  # (polyvec's InvalidArgument is a ValueError)
        raise CliError(f"--{kind} {text!r}: {e}") from None


def parse_id(text: str, int_ids: bool) -> Key:
    """A command-line or ``.txt`` id: the text as is, or with ``int_ids`` an int (every id
    must then look like one: a file's ids never come back of mixed types)."""
    if not int_ids:
        return text
    if not _INT.fullmatch(text):
        raise CliError(f"--int-ids: expected an integer id, got {text!r}")
    return int(text)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a text file."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield n, line


def _json_line(path: Path, n: int, line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as e:
        raise CliError(f"{path}:{n}: expected a JSON value, got {line[:40]!r} ({e})") from None


def _load_npy(path: Path, mmap: bool = True) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CliError(f"{path}: expected a .npy array file ({e})") from None


def read_ids(path: str | Path, *, int_ids: bool = False) -> list[Key]:
    """Ids from ``.npy`` (int or str array), ``.txt`` or ``.jsonl`` (one id per line)."""
    path = Path(path)
    if path.suffix == ".npy":
        arr = _load_npy(path)
        if arr.ndim != 1 or arr.dtype.kind not in "iuU":
            raise CliError(f"{path}: expected a 1-D int or str array of ids, got shape "
                           f"{arr.shape} dtype {arr.dtype}")
        return list(arr.tolist())
    if path.suffix == ".jsonl":
        return [_json_line(path, n, line) for n, line in _lines(path)]
    if path.suffix == ".txt":
        return [parse_id(line, int_ids) for _, line in _lines(path)]
    raise CliError(f"--ids {path}: expected a .npy, .txt or .jsonl file")


def read_dense(path: str | Path) -> np.ndarray:
    """A dense field's (n, dim) float array, memory-mapped."""
    path = Path(path)
    if path.suffix != ".npy":
        raise CliError(f"{path}: a dense field's vectors must be an (n, dim) .npy file")
    return _load_npy(path)


def read_tokens(path: str | Path) -> Tokens:
    """A multi field's token sets from a ``.npz`` with ``tokens`` (T, dim) and ``offsets``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise CliError(f"{path}: a multi field's token sets must be a .npz with arrays "
                       "'tokens' (T, dim) and 'offsets' (n+1,)")
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            if not {"tokens", "offsets"} <= set(z.files):
                raise CliError(f"{path}: expected arrays 'tokens' and 'offsets', got {z.files}")
            tokens, offsets = z["tokens"], z["offsets"]
    except (ValueError, OSError, EOFError) as e:
        raise CliError(f"{path}: expected a .npz archive ({e})") from None
    bad = (offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) < 1
           or offsets[0] != 0 or offsets[-1] != len(tokens)
           or not (np.diff(offsets) > 0).all())
    if bad:
        raise CliError(f"{path}: expected 'offsets' to be ints rising strictly from 0 to "
                       f"len(tokens)={len(tokens)} (every item has >= 1 token)")
    return Tokens(tokens, offsets.astype(np.int64))


def read_payloads(path: str | Path) -> list[Any]:
    """One JSON object (or null) per line."""
    path = Path(path)
    return [_json_line(path, n, line) for n, line in _lines(path)]


def _record_value(path: Path, n: int, name: str, spec: AnySpec, value: Any) -> Any:
    """A record's value of one field: a BM25 field's text, a Sparse field's vector (``{"indices",
    "values"}`` or ``{"index": weight}``), or an array (checked here) for the others."""
    if isinstance(spec, BM25):
        return value  # (the collection checks it is a text)
    if isinstance(spec, Sparse):
        if isinstance(value, dict) and set(value) == {"indices", "values"}:
            return (value["indices"], value["values"])
        if isinstance(value, dict) and all(_INT.fullmatch(k) for k in value):
            return {int(k): w for k, w in value.items()}
        raise CliError(f'{path}:{n}: vectors[{name!r}]: expected {{"indices": [...], "values": '
                       f'[...]}} or {{"index": weight, ...}}, got {str(value)[:40]!r}')
    return _record_vector(path, n, name, spec, value)


def _record_vector(path: Path, n: int, name: str, spec: FieldSpec, value: Any) -> np.ndarray:
    want = f"({spec.dim},)" if isinstance(spec, Dense) else f"(tokens, {spec.dim})"
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError):
        raise CliError(f"{path}:{n}: vectors[{name!r}]: expected numbers of shape {want}"
                       ) from None
    ok = arr.shape == (spec.dim,) if isinstance(spec, Dense) else (
        arr.ndim == 2 and arr.shape[1] == spec.dim)
    if not ok:
        raise CliError(f"{path}:{n}: vectors[{name!r}]: expected shape {want}, got {arr.shape}")
    return arr


def read_records(path: str | Path, fields: Mapping[str, AnySpec]) -> Items:
    """Items from a JSONL file of ``{"id": ..., "vectors": {...}, "payload": {...}}`` lines."""
    path = Path(path)
    ids: list[Key] = []
    rows: dict[str, list[Any]] = {name: [] for name in fields}
    payloads: list[Any] = []
    for n, line in _lines(path):
        rec = _json_line(path, n, line)
        if not isinstance(rec, dict) or "id" not in rec or not isinstance(
                rec.get("vectors"), dict):
            raise CliError(f'{path}:{n}: expected {{"id": ..., "vectors": {{...}}, '
                           f'"payload": {{...}}}}, got {line[:60]!r}')
        if set(rec["vectors"]) != set(fields):
            raise CliError(f"{path}:{n}: expected vectors for the fields {sorted(fields)}, got "
                           f"{sorted(rec['vectors'])}")
        ids.append(rec["id"])
        payloads.append(rec.get("payload"))
        for name, spec in fields.items():
            rows[name].append(_record_value(path, n, name, spec, rec["vectors"][name]))
    vectors: dict[str, Any] = {}
    for name, spec in fields.items():
        if isinstance(spec, Sparse | BM25):
            vectors[name] = rows[name]  # (checked by the field's kind before any write)
        elif isinstance(spec, Dense):
            vectors[name] = (np.stack(rows[name]) if rows[name]
                             else np.zeros((0, spec.dim), np.float32))
        else:
            vectors[name] = Tokens.from_list(rows[name], spec.dim)
    return Items(ids, vectors, payloads)


def parse_query(value: Any, where: str) -> np.ndarray | list[np.ndarray]:
    """A JSON query: a numeric (nested) list; a ragged list of token sets stays a list."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        pass
    if isinstance(value, list) and value and all(isinstance(t, list) for t in value):
        try:  # a batch of token sets of different lengths
            sets = [np.asarray(t, dtype=np.float64) for t in value]
            if all(s.ndim == 2 for s in sets):
                return sets
        except (ValueError, TypeError):
            pass
    raise CliError(f"{where}: expected a numeric list (1-D: one vector, 2-D: a batch or one "
                   "token set, 3-D: a batch of token sets)")


def read_query(path: str | Path) -> np.ndarray | list[np.ndarray]:
    """A query file: ``.npy`` (1-D, 2-D or 3-D), ``.npz`` token sets, or ``.json``."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.asarray(_load_npy(path, mmap=False))
    if path.suffix == ".npz":
        sets = read_tokens(path)
        return sets.rows(0, len(sets))
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(2, "No such file", str(path))
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise CliError(f"{path}: expected JSON ({e})") from None
        return parse_query(value, str(path))
    raise CliError(f"--query {path}: expected a .npy, .npz or .json file")


def parse_filter_json(text: str | None) -> Any:
    """The ``--filter`` argument: JSON text (the filter language itself is checked by polyvec)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise CliError(f"--filter: expected a JSON object, got {text[:60]!r} ({e})") from None
