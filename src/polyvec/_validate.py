"""Input checks at the API boundary. Each failure raises a typed error saying expected vs got.

After these checks the layers below may assume clean input: finite float vectors of the right
shape (L2-normalized for cosine), unique int/str ids, JSON-object payloads.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

import numpy as np

from . import limits
from ._kernels._numba import entry_point, lazy_njit, register_warmer, resolve_backend
from .errors import (
    DimensionMismatch,
    DTypeMismatch,
    DuplicateId,
    InvalidArgument,
    InvalidId,
    InvalidPayload,
    InvalidVector,
)
from .spec import Dense, FieldSpec, Multi

__all__ = [
    "check_ids",
    "check_payloads",
    "check_field_vectors",
    "check_query",
    "check_k",
    "storage_dtype",
]

Key = int | str
_INT64 = (-(2**63), 2**63 - 1)


def storage_dtype(spec: FieldSpec) -> np.dtype:
    return np.dtype({"f16": np.float16, "u8": np.uint8}.get(spec.dtype, np.float32))


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidArgument(f"k: expected an int >= 1, got {k!r}")
    return int(k)


def cap_k(k: int, live: int, nq: int) -> int:
    """``k`` capped at the number of live items (at least 1), then checked against
    :data:`polyvec.limits.MAX_RESULT_SLOTS` for a batch of ``nq`` queries."""
    k = min(k, max(live, 1))
    if nq * k > limits.MAX_RESULT_SLOTS:
        raise InvalidArgument(
            f"k: expected nq × k <= polyvec.limits.MAX_RESULT_SLOTS = "
            f"{limits.MAX_RESULT_SLOTS:,} (about {limits.RESULT_SLOT_BYTES} bytes each), got "
            f"{nq:,} × {k:,} = {nq * k:,}; search in smaller batches or with a smaller k")
    return k


def check_min_score(x: object) -> float:
    """A score threshold: a real number (a numpy scalar too), not NaN (it would drop every
    hit without saying so)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or math.isnan(x):
        raise InvalidArgument(f"min_score: expected a number (not NaN), got {x!r}")
    return float(x)


def check_ids(ids: object, *, ordered: bool = True) -> list[Key]:
    """The ids as a list (numpy ints and strs as Python's), each checked; ``ordered``: they
    pair with vectors, payloads or results by position, so a set's order will not do."""
    if isinstance(ids, str | bytes | int) or ids is None:
        raise InvalidId(f"ids: expected a sequence of str/int ids, got {type(ids).__name__}")
    if isinstance(ids, Mapping) or (ordered and isinstance(ids, Set)):
        raise InvalidId(f"ids: expected an ordered sequence (list, tuple, array) of ids, got "
                        f"{type(ids).__name__} (ids pair with vectors, payloads or results "
                        "by position)")
    # the common case, checked in bulk: a list of plain ints (no bool), in range, distinct
    if (type(ids) is list and ids and all(type(i) is int for i in ids)
            and _INT64[0] <= min(ids) and max(ids) <= _INT64[1] and len(set(ids)) == len(ids)):
        return list(ids)
    return _check_ids_one_by_one(ids)


def _check_ids_one_by_one(ids: Any) -> list[Key]:
    out: list[Key] = []
    seen: set[Key] = set()
    for i in ids:
        if isinstance(i, bool | np.bool_):
            raise InvalidId(f"id: expected str or int, got bool {i!r}")
        if isinstance(i, np.integer):
            i = int(i)
        elif isinstance(i, np.str_):
            i = str(i)
        if isinstance(i, int):
            if not _INT64[0] <= i <= _INT64[1]:
                raise InvalidId(f"id: expected an int in the int64 range, got {i}")
        elif not isinstance(i, str):
            raise InvalidId(f"id: expected str or int, got {type(i).__name__} {i!r}")
        elif not i.isascii():
            try:
                i.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidId(f"id: expected valid Unicode text, got {i!r} (a lone "
                                "surrogate)") from None
        if i in seen:
            raise DuplicateId(f"id {i!r} occurs twice in this batch")
        seen.add(i)
        out.append(i)
    return out


def _utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (no lone surrogates, which SQLite cannot store)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_json(value: Any, where: str, depth: int = 1) -> None:
    if depth > limits.MAX_PAYLOAD_DEPTH:
        raise InvalidPayload(f"{where}: expected nesting of at most polyvec.limits."
                             f"MAX_PAYLOAD_DEPTH = {limits.MAX_PAYLOAD_DEPTH} levels, got deeper")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if "\x00" in value:  # SQLite's JSON functions stop at NUL: the value would not round-trip
            raise InvalidPayload(f"{where}: expected a string without NUL characters")
        if not _utf8(value):
            raise InvalidPayload(f"{where}: expected valid Unicode text, got {value!r} (a lone "
                                 "surrogate)")
        return
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InvalidPayload(f"{where}: expected an int in the int64 range, got {value}")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPayload(f"{where}: expected a finite number, got {value!r}")
        return
    if isinstance(value, list):
        for j, v in enumerate(value):
            _check_json(v, f"{where}[{j}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or "\x00" in k or not _utf8(k):
                raise InvalidPayload(f"{where}: expected str keys without NUL or lone "
                                     f"surrogates, got "
                                     f"{type(k).__name__} {k!r}")
            _check_json(v, f"{where}.{k}", depth + 1)
        return
    raise InvalidPayload(
        f"{where}: expected JSON values (dict, list, str, int, float, bool, None), "
        f"got {type(value).__name__}")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
dumps = _ENCODER.encode  # json.dumps(p, ensure_ascii=False, separators=(",", ":")), made once


def _json_ok(value: Any, depth: int = 1) -> bool:
    """Whether ``value`` is plainly valid for :func:`_check_json` (no messages: the fast path;
    ``False`` sends the value through the full check, which raises or accepts)."""
    t = type(value)
    if t is str:
        return "\x00" not in value and _utf8(value)
    if t is int:
        return _INT64[0] <= value <= _INT64[1]
    if t is float:
        return math.isfinite(value)
    if value is None or t is bool:
        return True
    if depth > limits.MAX_PAYLOAD_DEPTH:
        return False
    if t is dict:
        return all(type(k) is str and "\x00" not in k and _utf8(k)
                   and _json_ok(v, depth + 1) for k, v in value.items())
    if t is list:
        return all(_json_ok(v, depth + 1) for v in value)
    return False


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _all_flat(objs: list[Any]) -> bool:
    """Whether every payload is a flat dict of valid scalars (str keys; str, int in the int64
    range, finite float, bool, None values), checked over the batch at once: the sets of key
    and value types, then the ints' range and the floats' finiteness (NUL characters are
    looked for in the dumped text)."""
    if not all(type(p) is dict for p in objs):
        return False
    if not {type(k) for p in objs for k in p} <= {str}:
        return False
    values = [v for p in objs for v in p.values()]
    types = set(map(type, values))
    if not types <= _SCALARS:
        return False
    if int in types:
        ints = [v for v in values if type(v) is int]
        if not (_INT64[0] <= min(ints) and max(ints) <= _INT64[1]):
            return False
    return float not in types or all(map(math.isfinite,
                                         (v for v in values if type(v) is float)))


def check_payloads(payloads: object, n: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Check the payloads once; returns their canonical JSON texts and the dicts (``None``
    entries as ``{}``).

    The usual batch, flat dicts of scalars, costs one type test per value and one ``dumps``
    for the whole batch (split into the items' texts); anything else goes item by item
    through the recursive check."""
    if payloads is None:
        return ["{}"] * n, [{} for _ in range(n)]
    if isinstance(payloads, Mapping | str | bytes) or not isinstance(payloads, Sequence):
        raise InvalidPayload(f"payloads: expected a list of {n} dicts, got "
                             f"{type(payloads).__name__}")
    if len(payloads) != n:
        raise InvalidPayload(f"payloads: expected {n} (one per id), got {len(payloads)}")
    objs = [{} if p is None else p for p in payloads]
    if n and _all_flat(objs):
        texts = _dumps_flat(objs)
        if texts is not None:
            return texts, objs
    texts = []
    for i, p in enumerate(objs):
        if not isinstance(p, dict):
            raise InvalidPayload(f"payloads[{i}]: expected a dict, got {type(p).__name__}")
        if not _json_ok(p):
            _check_json(p, f"payloads[{i}]")
        text = dumps(p)
        _check_size(text, i)
        texts.append(text)
    return texts, objs


def _check_size(text: str, i: int) -> None:
    if len(text) > limits.MAX_PAYLOAD_BYTES // 4 and (
            len(text.encode("utf-8", "surrogatepass")) > limits.MAX_PAYLOAD_BYTES):
        raise InvalidPayload(f"payloads[{i}]: expected at most polyvec.limits."
                             f"MAX_PAYLOAD_BYTES = {limits.MAX_PAYLOAD_BYTES:,} bytes of "
                             f"JSON, got {len(text.encode('utf-8', 'surrogatepass')):,}")


# Flat dicts dumped as one list with a control character as the item separator: JSON text
# escapes control characters inside strings, so "\x1e" occurs only between items (of the list
# and of each dict) and "}\x1e{" only between two payloads.
_BATCH_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=("\x1e", ":"))


def _dumps_flat(objs: list[dict[str, Any]]) -> list[str] | None:
    """``[dumps(p) for p in objs]`` for flat dicts of valid scalars, in one ``dumps``;
    ``None`` when a NUL character or a lone surrogate is in a key or value, or a payload is
    over the size limit (the caller's item-by-item check reports it)."""
    text = _BATCH_ENCODER.encode(objs)
    if "\\u0000" in text:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    texts = text[1:-1].replace("}\x1e{", "}\x1f{").replace("\x1e", ",").split("\x1f")
    if len(texts) != len(objs) or max(map(len, texts)) > limits.MAX_PAYLOAD_BYTES // 4:
        return None
    return texts


def _as_float_array(x: object, where: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except ValueError as e:  # ragged nested lists
            raise InvalidVector(f"{where}: expected a rectangular array, got ragged input ({e})"
                                ) from None
    if arr.dtype == object:
        raise InvalidVector(f"{where}: expected a rectangular float array, got ragged/object "
                            "input")
    if arr.dtype.kind != "f":
        raise DTypeMismatch(f"{where}: expected a float16/32/64 array, got dtype {arr.dtype}")
    return arr


def _norm_rows_numpy(arr: np.ndarray, cosine: bool) -> int:
    """In place: divide each row by its norm when ``cosine``. Returns -1; or the first row
    whose squared norm is NaN/inf (a NaN/inf value, or an overflow); or, under cosine,
    ``-2 - row`` for the first zero row. Nothing is changed unless it returns -1."""
    sq = np.einsum("ij,ij->i", arr, arr)
    bad = np.flatnonzero(~np.isfinite(sq))
    if len(bad):
        return int(bad[0])
    if cosine:
        zero = np.flatnonzero(sq == 0)
        if len(zero):
            return -2 - int(zero[0])
        arr /= np.sqrt(sq)[:, None]
    return -1


def _norm_rows_loop(arr, cosine):  # pragma: no cover - compiled; twin of _norm_rows_numpy
    sq = np.empty(arr.shape[0], np.float32)
    for i in range(arr.shape[0]):
        acc = np.float32(0.0)
        for j in range(arr.shape[1]):
            acc += arr[i, j] * arr[i, j]
        sq[i] = acc
    for i in range(arr.shape[0]):
        if not np.isfinite(sq[i]):
            return i
    if cosine:
        for i in range(arr.shape[0]):
            if sq[i] == 0:
                return -2 - i
        for i in range(arr.shape[0]):
            norm = np.float32(np.sqrt(sq[i]))
            for j in range(arr.shape[1]):
                arr[i, j] /= norm
    return -1


_norm_rows_numba = lazy_njit(fastmath=False)(_norm_rows_loop)


def norm_rows(arr: np.ndarray, cosine: bool, *, backend: str = "auto") -> int:
    """:func:`_norm_rows_numpy`'s contract, in one numba pass when numba is there (the
    numpy twin costs ~6 small array calls: most of a single query's check)."""
    if resolve_backend(backend, light=True) == "numba":
        return int(_norm_rows_numba(arr, cosine))
    return _norm_rows_numpy(arr, cosine)


@register_warmer
def _warm_norm_rows() -> None:
    _norm_rows_numba(np.ones((1, 4), np.float32), True)


def _finish(arr: np.ndarray, spec: FieldSpec, where: str, *, backend: str = "auto",
            stored: bool = False) -> np.ndarray:
    """Check finiteness, normalize for cosine (unless ``stored``: rows stored already, which
    normalizing again could change by an ulp), cast to the storage dtype."""
    arr = np.array(arr, dtype=np.float32, order="C")  # a copy: normalized in place
    cosine = spec.metric == "cosine" and not stored
    bad = norm_rows(arr, cosine, backend=backend)
    if bad != -1:  # NaN/inf; squares that overflow (or, under cosine, underflow) float32
        bad_rows = ~np.isfinite(arr).all(axis=1)
        if bad_rows.any():
            raise InvalidVector(f"{where}: expected finite values, got NaN/inf in row "
                                f"{int(np.flatnonzero(bad_rows)[0])}")
        peak = np.abs(arr).max(axis=1)
        if not cosine:
            row = int(np.flatnonzero(~np.isfinite(np.einsum("ij,ij->i", arr, arr)))[0])
            raise InvalidVector(f"{where}: expected values whose squared norm fits float32 "
                                f"(< 3.4e38), got row {row} with |x| up to {peak[row]:.3g}")
        if not peak.all():
            raise InvalidVector(f"{where}: expected non-zero vectors under cosine, got a zero "
                                f"vector in row {int(np.flatnonzero(peak == 0)[0])}")
        arr /= peak[:, None]  # scale first: the norm of the scaled row cannot overflow
        arr /= np.sqrt(np.einsum("ij,ij->i", arr, arr))[:, None]
    if spec.dtype == "f32":
        return arr  # finite float32 divided by a non-zero norm stays finite
    out = arr.astype(storage_dtype(spec))
    if not np.isfinite(out).all():
        raise InvalidVector(f"{where}: values overflow {spec.dtype} storage")
    return out


def _check_matrix(x: object, spec: FieldSpec, where: str, rows: int | None, *,
                  backend: str = "auto", stored: bool = False) -> np.ndarray:
    arr = _as_float_array(x, where)
    if arr.ndim != 2 or arr.shape[1] != spec.dim or (rows is not None and arr.shape[0] != rows):
        want = f"({rows if rows is not None else 'n'}, {spec.dim})"
        raise DimensionMismatch(f"{where}: expected shape {want}, got {arr.shape}")
    return _finish(arr, spec, where, backend=backend, stored=stored)


def check_dense_vectors(name: str, spec: FieldSpec, data: object, n: int, *,
                        stored: bool = False) -> np.ndarray:
    """A Dense field's input: an (n, dim) array. Checked with numpy: a batch amortizes its
    calls, and a process that only writes never starts numba (~1 s). ``stored``: rows as a
    collection stored them (not normalized again)."""
    return _check_matrix(data, spec, f"vectors[{name!r}]", n, backend="numpy", stored=stored)


def check_multi_vectors(name: str, spec: FieldSpec, data: object, n: int, *,
                        stored: bool = False) -> list[np.ndarray]:
    """A Multi field's input: a list of n (tokens_i, dim) arrays, tokens_i >= 1;
    ``stored``: token sets as a collection stored them (not normalized again)."""
    if isinstance(data, np.ndarray) and data.ndim == 3:
        data = list(data)
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise InvalidVector(f"vectors[{name!r}]: expected a list of {n} token arrays, got "
                            f"{type(data).__name__}")
    if len(data) != n:
        raise InvalidVector(f"vectors[{name!r}]: expected {n} token sets, got {len(data)}")
    out = []
    for i, t in enumerate(data):
        arr = _as_float_array(t, f"vectors[{name!r}][{i}]")
        if arr.ndim != 2 or arr.shape[1] != spec.dim:
            raise DimensionMismatch(f"vectors[{name!r}][{i}]: expected shape (tokens, "
                                    f"{spec.dim}), got {arr.shape}")
        if arr.shape[0] == 0:
            raise InvalidVector(f"vectors[{name!r}][{i}]: expected at least one token, got 0")
        out.append(_finish(arr, spec, f"vectors[{name!r}][{i}]", stored=stored))
    return out


@functools.cache
def _f32_twin(multi: bool, dim: int, metric: str) -> FieldSpec:
    """The float32 version of a field spec (queries are checked and scored in float32)."""
    return Multi(dim, metric, "f32") if multi else Dense(dim, metric, "f32")


def check_dense_query(spec: FieldSpec, q: object) -> tuple[np.ndarray, bool]:
    """Float32 queries (normalized for cosine), and whether the input was a single query:
    (dim,) -> single, (nq, dim) -> batch; returns an (nq, dim) array."""
    if (type(q) is np.ndarray and q.ndim == 1 and q.shape[0] == spec.dim
            and q.dtype.kind == "f"):  # one float vector: what the general path does, lean
        one = np.array(q, dtype=np.float32, ndmin=2)  # a copy: normalized in place
        if norm_rows(one, spec.metric == "cosine") == -1:
            return one, True  # (anything else: the general path raises the typed error)
    f32 = _f32_twin(False, spec.dim, spec.metric)
    arr = _as_float_array(q, "query")
    if arr.ndim == 1:
        if arr.shape != (spec.dim,):
            raise DimensionMismatch(f"query: expected shape ({spec.dim},), got {arr.shape}")
        return _check_matrix(arr[None, :], f32, "query", 1), True
    if arr.ndim == 2:
        return _check_matrix(arr, f32, "query", None), False
    raise DimensionMismatch(f"query: expected shape ({spec.dim},) or (nq, {spec.dim}), "
                            f"got {arr.shape}")


def dense_query_checker(spec: FieldSpec) -> Callable[[object], tuple[np.ndarray, bool]]:
    """:func:`check_dense_query` of ``spec`` as one callable: a single float vector takes
    the same copy and the same normalization kernel, found once numba's runtime is up (see
    :func:`norm_rows`) instead of on every call (its entry point: the arguments' types are
    fixed); anything else goes through :func:`check_dense_query` itself."""
    dim, cosine = spec.dim, spec.metric == "cosine"
    kernel: list[Any] = []

    def check(q: object) -> tuple[np.ndarray, bool]:
        if type(q) is np.ndarray and q.ndim == 1 and q.shape[0] == dim and q.dtype.kind == "f":
            if not kernel and resolve_backend("auto", light=True) == "numba":
                norm = _norm_rows_numba.compiled()  # type: ignore[attr-defined]
                probe = np.ones((1, dim), np.float32)
                norm(probe, cosine)  # compiled or loaded now, for the types it takes below
                kernel.append(entry_point(norm, (probe, cosine)))
            if kernel:
                one = np.array(q, dtype=np.float32, ndmin=2)  # a copy: normalized in place
                if kernel[0](one, cosine) == -1:
                    return one, True
        return check_dense_query(spec, q)

    return check


def check_multi_query(spec: FieldSpec, q: object) -> tuple[list[np.ndarray], bool]:
    """Float32 token sets: (m, dim) -> single, list of (m_i, dim) -> batch."""
    f32 = _f32_twin(True, spec.dim, spec.metric)
    if isinstance(q, np.ndarray) and q.ndim == 2:
        return check_multi_vectors("query", f32, [q], 1), True
    if isinstance(q, np.ndarray) and q.ndim == 3:
        q = list(q)
    if isinstance(q, Sequence) and not isinstance(q, str | bytes):
        if len(q) and not isinstance(q[0], np.ndarray) and np.ndim(q[0]) == 1:
            return check_multi_vectors("query", f32, [q], 1), True
        return check_multi_vectors("query", f32, q, len(q)), False
    raise InvalidVector(f"query: expected a (tokens, {spec.dim}) array or a list of them, got "
                        f"{type(q).__name__}")


def check_field_vectors(name: str, spec: FieldSpec, data: object, n: int
                        ) -> np.ndarray | list[np.ndarray]:
    """A field's input vectors, checked by its kind (see :mod:`polyvec.fields`)."""
    return _VECTOR_CHECKS[spec.kind](name, spec, data, n)


def check_query(spec: FieldSpec, q: object) -> tuple[list[np.ndarray] | np.ndarray, bool]:
    """A field's queries, checked by its kind (see :mod:`polyvec.fields`)."""
    return _QUERY_CHECKS[spec.kind](spec, q)


_VECTOR_CHECKS: dict[str, Any] = {"dense": check_dense_vectors, "multi": check_multi_vectors}
_QUERY_CHECKS: dict[str, Any] = {"dense": check_dense_query, "multi": check_multi_query}


# -- sparse vectors -----------------------------------------------------------------------------

def check_sparse_vectors(name: str, spec: FieldSpec, data: object, n: int, *,
                         stored: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """A Sparse field's input for ``n`` items: a scipy.sparse matrix of n rows, or a list of
    n sparse vectors (each a ``(indices, values)`` pair, a ``{index: value}`` dict or a
    :class:`~polyvec.types.SparseVector`); returned as ``(uint32 indices, sorted; values in
    the storage dtype)`` pairs. ``stored``: ``u8`` weights that were stored already (each
    its step times ``scale``, range-checked when first written) are rounded back to their
    step."""
    where = f"vectors[{name!r}]"
    u8 = spec.dtype == "u8"
    rows = _sparse_rows(data, spec.dim, np.dtype(np.float32) if u8 else storage_dtype(spec),
                        where)
    if rows is None:
        raise InvalidVector(f"{where}: expected a list of {n} sparse vectors ((indices, values) "
                            f"pairs or {{index: value}} dicts) or a scipy.sparse matrix, got "
                            f"{type(data).__name__}")
    if len(rows) != n:
        raise InvalidVector(f"{where}: expected {n} sparse vectors, got {len(rows)}")
    if not u8:
        return rows
    if stored:
        return [(i, _steps(v, spec)) for i, v in rows]
    return [(i, _quantized(v, spec, f"{where}[{r}]")) for r, (i, v) in enumerate(rows)]


def _quantized(values: np.ndarray, spec: Any, where: str) -> np.ndarray:
    """A ``u8`` Sparse field's weights as stored: ``round(weight / scale)``."""
    top = float(spec.max_weight)
    bad = (values < 0) | (values > top)
    if bad.any():
        raise InvalidVector(f"{where}: expected weights in [0, {top:g}] (dtype 'u8', "
                            f"max_weight {top:g}), got {float(values[bad][0]):g}")
    return np.rint(values / np.float32(spec.scale)).astype(np.uint8)


def _steps(values: np.ndarray, spec: Any) -> np.ndarray:
    """Stored ``u8`` weights (each its step times ``scale``) as their steps again."""
    return np.clip(np.rint(values / np.float32(spec.scale)), 0, 255).astype(np.uint8)


def check_sparse_query(spec: FieldSpec, q: object) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                            bool]:
    """Float32 sparse queries and whether the input was a single one: a sparse vector ->
    single; a list of them, or a scipy.sparse matrix -> a batch."""
    f32 = np.dtype(np.float32)
    one = _sparse_one(q, spec.dim, f32, "query")
    if one is not None:
        return [one], True
    rows = _sparse_rows(q, spec.dim, f32, "query")
    if rows is None or not rows:
        raise InvalidVector("query: expected a sparse vector ((indices, values), "
                            "{index: value} or SparseVector) or a non-empty list of them, got "
                            f"{type(q).__name__}")
    return rows, False


def _sparse_rows(data: object, dim: int, dtype: np.dtype, where: str
                 ) -> list[tuple[np.ndarray, np.ndarray]] | None:
    if hasattr(data, "tocsr") and hasattr(data, "shape"):  # scipy.sparse, any format
        m = data.tocsr()
        if len(m.shape) != 2:
            raise InvalidVector(f"{where}: expected a 2-D sparse matrix, got shape {m.shape}")
        if m.shape[1] > dim:
            raise DimensionMismatch(f"{where}: expected at most {dim} columns, got "
                                    f"{m.shape[1]}")
        m.sum_duplicates()
        return [_sparse_entries(m.indices[m.indptr[i]:m.indptr[i + 1]],
                                m.data[m.indptr[i]:m.indptr[i + 1]], dim, dtype,
                                f"{where}[{i}]")
                for i in range(m.shape[0])]
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        return None
    out = []
    for i, item in enumerate(data):
        one = _sparse_one(item, dim, dtype, f"{where}[{i}]")
        if one is None:
            raise InvalidVector(f"{where}[{i}]: expected a sparse vector ((indices, values) "
                                f"or {{index: value}}), got {type(item).__name__} {item!r:.60}")
        out.append(one)
    return out


def _sparse_one(x: object, dim: int, dtype: np.dtype, where: str
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """One sparse vector, checked, or ``None`` when ``x`` does not have the shape of one."""
    if isinstance(x, dict):
        return _sparse_entries(list(x.keys()), list(x.values()), dim, dtype, where)
    if isinstance(x, tuple | list) and len(x) == 2 and all(
            isinstance(p, np.ndarray) and p.ndim == 1
            or isinstance(p, list | tuple) and all(isinstance(e, int | float | np.number)
                                                   for e in p) for p in x):
        return _sparse_entries(x[0], x[1], dim, dtype, where)
    return None


def _sparse_entries(indices: Any, values: Any, dim: int, dtype: np.dtype, where: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    idx = np.asarray(indices)
    val = np.asarray(values)
    if idx.ndim != 1 or val.ndim != 1 or len(idx) != len(val):
        raise InvalidVector(f"{where}: expected indices and values of one length, got "
                            f"shapes {idx.shape} and {val.shape}")
    if len(idx) and (idx.dtype.kind not in "iu"):
        raise InvalidVector(f"{where}: expected integer indices, got dtype {idx.dtype}")
    if len(val) and (val.dtype.kind not in "iuf"):
        raise InvalidVector(f"{where}: expected numeric values, got dtype {val.dtype}")
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= dim):
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise InvalidVector(f"{where}: expected indices in [0, {dim}), got {bad}")
    order = np.argsort(idx, kind="stable")
    idx = idx[order].astype(np.uint32)
    if len(idx) > 1 and bool((idx[1:] == idx[:-1]).any()):
        dup = int(idx[1:][idx[1:] == idx[:-1]][0])
        raise InvalidVector(f"{where}: expected distinct indices, got {dup} twice")
    with np.errstate(over="ignore"):  # (a value past float16's range: refused just below)
        val = val[order].astype(dtype)
    if not np.isfinite(val).all():
        raise InvalidVector(f"{where}: expected finite values"
                            + (" (float16 range)" if dtype == np.float16 else "")
                            + f", got {val[~np.isfinite(val)][0]}")
    return idx, val
