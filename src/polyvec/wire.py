"""The JSON forms of what crosses HTTP: vectors, search results, items and typed errors.

The server (:mod:`polyvec.server`) and the client (:mod:`polyvec.client`) both use these, so
each form has one writer and one reader. Vectors travel as JSON lists of numbers, or, for bulk
speed and exact round trips, as ``{"b64": ..., "dtype": "f32" | "f16", "shape": [...]}``: the
little-endian bytes of the array in base64. A token set (one item of a Multi field) is one such
array of shape ``(tokens, dim)``; a batch of token sets is a JSON list of them. A sparse vector
(one item of a Sparse field) is ``{"indices": [...], "values": [...]}``; a batch, a list of them.

Scores are JSON numbers: a float32 score widened to a double and back is the same float32. The
slots of a result that no item filled (id ``None``, score ``-inf``) are ``null`` in both lists.
An error is ``{"error": "<class name>", "message": ..., "details": ...}``; :func:`raise_error`
raises the same class on the client.

>>> x = np.arange(6, dtype=np.float32).reshape(2, 3)
>>> bool((decode_array(encode_array(x), "v") == x).all())
True
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from . import errors
from .errors import InvalidArgument, InvalidVector, PolyvecError
from .types import SearchResult, SparseVector

__all__ = ["STATUS", "decode_array", "jsonable", "decode_qrels", "decode_query",
           "decode_vectors", "encode_array", "encode_qrels", "encode_query", "encode_vectors",
           "error_body", "raise_error",
           "result_from_json", "result_to_json", "status_of"]

_DTYPES: dict[str, np.dtype[Any]] = {"f32": np.dtype("<f4"), "f16": np.dtype("<f2")}

# HTTP status of each typed error (the most specific class listed wins, see status_of)
STATUS: dict[type[BaseException], int] = {
    errors.PolyvecError: 400,
    errors.UnknownCollection: 404,
    errors.UnknownJob: 404,
    errors.UnknownReport: 404,
    errors.CollectionExists: 409,
    errors.DuplicateId: 409,
    errors.Locked: 409,
    errors.ReadOnly: 409,
    errors.CollectionClosed: 503,
    errors.MissingExtra: 501,
    errors.CorruptFile: 500,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.RequestTooLarge: 413,
}


def status_of(exc: BaseException) -> int:
    """The HTTP status of a typed error: that of the nearest class of its MRO in
    :data:`STATUS`; 500 for anything that is not a :class:`PolyvecError`."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON body of a typed error: its class name, message and the fields that rebuild
    it (:func:`raise_error`); ``ServerError`` for anything untyped."""
    if not isinstance(exc, PolyvecError):
        return {"error": "ServerError", "message": f"{type(exc).__name__}: {exc}",
                "details": None}
    details: dict[str, Any] | None = None
    if isinstance(exc, errors.FilterError):
        details = {"path": exc.path}
    elif isinstance(exc, errors.CorruptFile):
        details = {"filename": exc.filename, "reason": exc.reason}
    elif isinstance(exc, errors.ReadOnly | errors.NotADatabase):
        text, head = str(exc), f"{exc.filename}: "
        details = {"filename": exc.filename,
                   "reason": text[len(head):] if text.startswith(head) else text}
    return {"error": type(exc).__name__, "message": str(exc), "details": details}


def raise_error(status: int, body: Any) -> None:
    """Raise the typed error a server's answer ``(status, body)`` carries: the class of the
    same name in :mod:`polyvec.errors`, with the same message (:class:`PolyvecError` for a
    name it has not, or a body that is not an error's)."""
    cls: Any = None
    message = f"HTTP {status}: {str(body)[:500]}"
    details: dict[str, Any] = {}
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        cls = getattr(errors, body["error"], None)
        message = str(body.get("message", ""))
        got = body.get("details")
        details = got if isinstance(got, dict) else {}
    if not (isinstance(cls, type) and issubclass(cls, PolyvecError)):
        cls = PolyvecError
    exc: PolyvecError
    if issubclass(cls, errors.CorruptFile | errors.ReadOnly | errors.NotADatabase):
        exc = cls(str(details.get("filename", "")), str(details.get("reason", message)))
    else:
        exc = cls(message)
        if isinstance(exc, errors.FilterError):
            exc.path = str(details.get("path", ""))
    exc.status = status  # type: ignore[attr-defined]
    raise exc


def jsonable(x: Any) -> Any:
    """Numpy values to plain Python; non-finite floats (the ``-inf`` of empty slots, a NaN
    in an info dict) to ``None``; objects with ``to_dict`` (model specs, reports) as their
    dicts: strict JSON."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "to_dict") and callable(x.to_dict):  # specs, reports
        return jsonable(x.to_dict())
    return x


# -- vectors ------------------------------------------------------------------------------------
def encode_array(x: np.ndarray, dtype: str = "f32") -> dict[str, Any]:
    """``x`` as ``{"b64", "dtype", "shape"}`` (float32 unless ``dtype="f16"``)."""
    a = np.ascontiguousarray(x, dtype=_DTYPES[dtype])
    return {"b64": base64.b64encode(a.tobytes()).decode("ascii"), "dtype": dtype,
            "shape": list(a.shape)}


def decode_array(obj: Any, what: str) -> Any:
    """An encoded array as numpy, or ``obj`` unchanged when it is not one (JSON lists go to
    the collection as they are: it checks them as it checks any Python input)."""
    if not isinstance(obj, dict):
        return obj
    if set(obj) != {"b64", "dtype", "shape"}:
        raise InvalidArgument(f"{what}: expected a list of numbers, {{'b64', 'dtype', "
                              f"'shape'}} or {{'indices', 'values'}}, got an object with keys "
                              f"{sorted(map(str, obj))}")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["b64"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise InvalidArgument(f"{what}.dtype: expected one of {list(_DTYPES)}, got {dtype!r}")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(type(s) is int and s >= 0 for s in shape)):
        raise InvalidArgument(f"{what}.shape: expected 1 or 2 ints >= 0, got {shape!r}")
    if not isinstance(data, str):
        raise InvalidArgument(f"{what}.b64: expected a base64 string, got "
                              f"{type(data).__name__}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as e:
        raise InvalidArgument(f"{what}.b64: not base64 ({e})") from None
    width = _DTYPES[dtype].itemsize
    if len(raw) != math.prod(shape) * width:
        raise InvalidVector(f"{what}: shape {shape} of {dtype} needs "
                            f"{math.prod(shape) * width} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(shape)


def _sparse(x: Any) -> dict[str, Any] | None:
    """A sparse vector's JSON form (a SparseVector, an ``{int: weight}`` dict, an
    ``(integer indices, values)`` tuple), or ``None`` when ``x`` is not one of these."""
    idx: Any
    val: Any
    if isinstance(x, SparseVector):
        idx, val = x
    elif isinstance(x, dict) and all(isinstance(k, int | np.integer) and not isinstance(k, bool)
                                     for k in x):
        idx, val = list(x), list(x.values())
    elif isinstance(x, tuple) and len(x) == 2 and _integers(x[0]):
        idx, val = x
    else:
        return None
    return {"indices": np.asarray(idx).tolist(), "values": np.asarray(val).tolist()}


def _integers(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim == 1 and x.dtype.kind in "iu"
    return isinstance(x, list | tuple) and all(
        isinstance(i, int | np.integer) and not isinstance(i, bool) for i in x)


def encode_vectors(x: Any) -> Any:
    """One field's vectors (or one query) for the wire: an array encoded, a list of token
    sets each encoded, sparse vectors (one, a list, a scipy.sparse matrix) in their JSON form,
    anything else as it is (the server checks it)."""
    one = _sparse(x)
    if one is not None:
        return one
    if hasattr(x, "tocsr") and hasattr(x, "shape"):  # scipy.sparse: one vector a row
        m = x.tocsr()
        return [{"indices": m.indices[a:b].tolist(), "values": m.data[a:b].tolist()}
                for a, b in zip(m.indptr[:-1], m.indptr[1:], strict=True)]
    if isinstance(x, list | tuple) and x and all(_sparse(t) is not None for t in x):
        return [_sparse(t) for t in x]
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim in (1, 2):
        return encode_array(x, "f16" if x.dtype == np.float16 else "f32")
    if isinstance(x, list | tuple) and x and all(isinstance(t, np.ndarray) and
                                                 t.dtype.kind == "f" and t.ndim == 2
                                                 for t in x):
        return [encode_vectors(t) for t in x]
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim == 3:
        return [encode_vectors(t) for t in x]
    return x.tolist() if isinstance(x, np.ndarray) else x


def encode_query(x: Any) -> Any:
    """A search's query for the wire: :func:`encode_vectors`, or for a hybrid query (a dict of
    field -> query) each field's query so."""
    if isinstance(x, dict) and any(isinstance(f, str) for f in x):
        return {str(f): encode_vectors(q) for f, q in x.items()}
    return encode_vectors(x)


def decode_query(obj: Any, what: str) -> Any:
    """:func:`encode_query` undone."""
    if isinstance(obj, dict) and set(obj) not in ({"b64", "dtype", "shape"},
                                                  {"indices", "values"}):
        return {f: decode_vectors(q, f"{what}[{f!r}]") for f, q in obj.items()}
    return decode_vectors(obj, what)


def decode_vectors(obj: Any, what: str) -> Any:
    """:func:`encode_vectors` undone: one array, a list of token sets, one sparse vector or
    a list of them."""
    if isinstance(obj, list) and obj and all(isinstance(t, dict) for t in obj):
        return [decode_vectors(t, f"{what}[{i}]") for i, t in enumerate(obj)]
    if isinstance(obj, dict) and set(obj) == {"indices", "values"}:
        idx, val = obj["indices"], obj["values"]
        if not isinstance(idx, list) or not isinstance(val, list):
            raise InvalidVector(f"{what}: expected 'indices' and 'values' lists, got "
                                f"{type(idx).__name__} and {type(val).__name__}")
        return SparseVector(np.asarray(idx), np.asarray(val))  # (the collection checks them)
    return decode_array(obj, what)


def encode_qrels(qrels: Any) -> Any:
    """Judgments for the wire: a ``{id: grade}`` dict as ``{"graded": [[id, grade], ...]}``
    (JSON object keys are strings: an int id would come back a str); ids and lists as is."""
    if not isinstance(qrels, list | tuple):
        return qrels  # (the collection's check names what is wrong)
    return [{"graded": [[i, g] for i, g in r.items()]} if isinstance(r, dict) else
            list(r) if isinstance(r, tuple | set | frozenset) else r for r in qrels]


def decode_qrels(obj: Any) -> Any:
    """:func:`encode_qrels` undone."""
    if not isinstance(obj, list):
        return obj
    out = []
    for i, r in enumerate(obj):
        if isinstance(r, dict):
            pairs = r.get("graded")
            if set(r) != {"graded"} or not isinstance(pairs, list) or not all(
                    isinstance(p, list) and len(p) == 2 for p in pairs):
                raise InvalidArgument(f"qrels[{i}]: expected an id, a list of ids or "
                                      "{'graded': [[id, grade], ...]}")
            r = {(p[0] if isinstance(p[0], int | str) else str(p[0])): p[1] for p in pairs}
        out.append(r)
    return out


# -- results ------------------------------------------------------------------------------------
def result_to_json(res: SearchResult) -> dict[str, Any]:
    """A search result as JSON: ids and scores as (nested) lists, ``null`` in empty slots."""
    finite = np.isfinite(res.scores)
    raw = res.scores.astype(np.float64).tolist()
    if res.ids.ndim == 1:
        scores: list[Any] = [s if ok else None for s, ok in zip(raw, finite, strict=True)]
    else:
        scores = [[s if ok else None for s, ok in zip(row, fin, strict=True)]
                  for row, fin in zip(raw, finite, strict=True)]
    return {"ids": res.ids.tolist(), "scores": scores, "info": res.info}


def result_from_json(d: dict[str, Any]) -> SearchResult:
    """:func:`result_to_json` undone: ids an object array, scores float32 (``-inf`` in the
    empty slots), as an embedded search returns them."""
    raw = d["ids"]
    batch = bool(raw) and isinstance(raw[0], list)
    ids = np.empty((len(raw), len(raw[0])) if batch else (len(raw),), dtype=object)
    for i, row in enumerate(raw if batch else [raw]):
        ids[i if batch else slice(None)] = row
    scores = np.array(d["scores"], dtype=object)
    scores[scores == None] = -np.inf  # noqa: E711 (elementwise)
    return SearchResult(ids, scores.astype(np.float32).reshape(ids.shape), d.get("info", {}))
