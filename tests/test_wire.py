"""The JSON forms of HTTP (polyvec.wire): arrays round-trip bit for bit, malformed ones get
typed errors, results keep their empty slots, and every typed error comes back as its class
with its message and fields."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

from polyvec import errors, wire
from polyvec.server import auth, metrics
from polyvec.types import SearchResult


def test_doctests() -> None:
    for mod in (wire, auth, metrics):
        assert doctest.testmod(mod).failed == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_arrays_round_trip_exactly(dtype: type) -> None:
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(dtype)
    x[0, 0] = np.nan  # bits, not values: the server's checks judge NaN
    back = wire.decode_array(json.loads(json.dumps(wire.encode_vectors(x))), "v")
    assert back.dtype == dtype and back.tobytes() == x.tobytes()
    sets = [x[:2].astype(np.float32), x[2:].astype(np.float32)]
    got = wire.decode_vectors(wire.encode_vectors(sets), "t")
    assert [g.tobytes() for g in got] == [s.tobytes() for s in sets]
    assert wire.decode_vectors([[1.0, 2.0]], "v") == [[1.0, 2.0]]  # lists pass as they are


@pytest.mark.parametrize(("obj", "error", "match"), [
    ({"b64": "AAAA", "dtype": "f64", "shape": [1]}, errors.InvalidArgument, "dtype"),
    ({"b64": "AAAA", "dtype": "f32", "shape": [1, 1, 1]}, errors.InvalidArgument, "shape"),
    ({"b64": "AAAA", "dtype": "f32", "shape": [-1]}, errors.InvalidArgument, "shape"),
    ({"b64": "AAAA", "dtype": "f32", "shape": [True]}, errors.InvalidArgument, "shape"),
    ({"b64": "AAAA", "dtype": "f32", "shape": [2]}, errors.InvalidVector, "needs 8 bytes"),
    ({"b64": "A!A=", "dtype": "f32", "shape": [1]}, errors.InvalidArgument, "base64"),
    ({"b64": 3, "dtype": "f32", "shape": [1]}, errors.InvalidArgument, "base64"),
    ({"b64": "AAAA", "dtype": "f32"}, errors.InvalidArgument, "keys"),
])
def test_malformed_arrays_get_typed_errors(obj: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        wire.decode_array(obj, "v")


def test_results_keep_shape_and_empty_slots() -> None:
    ids = np.array([["a", 3, None], [1, None, None]], dtype=object)
    scores = np.array([[0.5, -1.25, -np.inf], [1 / 3, -np.inf, -np.inf]], np.float32)
    res = SearchResult(ids, scores, {"strategy": "exact"})
    text = json.dumps(wire.result_to_json(res), allow_nan=False)  # strict JSON
    back = wire.result_from_json(json.loads(text))
    assert back.ids.tolist() == ids.tolist() and back.ids.dtype == object
    assert back.scores.dtype == np.float32 and back.scores.tobytes() == scores.tobytes()
    one = wire.result_from_json(wire.result_to_json(res[0]))
    assert one.ids.shape == (3,) and one.ids.tolist() == ["a", 3, None]


@pytest.mark.parametrize("exc", [
    errors.DimensionMismatch("query: expected shape (4,), got (3,)"),
    errors.UnknownField("no field 'x'"),
    errors.FilterError("unknown operator '$bogus'", "g.$bogus"),
    errors.CorruptFile("/db/c/seg.npy", "bad header"),
    errors.ReadOnly("/db/c", "the folder is read-only"),
    errors.NotADatabase("/nope", "no such folder"),
    errors.CollectionDropped("collection 'c' was dropped"),
])
def test_typed_errors_come_back_as_themselves(exc: errors.PolyvecError) -> None:
    body = json.loads(json.dumps(wire.error_body(exc)))
    with pytest.raises(type(exc)) as info:
        wire.raise_error(wire.status_of(exc), body)
    got = info.value
    assert type(got) is type(exc) and str(got) == str(exc)
    for attr in ("path", "filename", "reason"):
        assert getattr(got, attr, None) == getattr(exc, attr, None)


def test_statuses_and_untyped_answers() -> None:
    assert wire.status_of(errors.CollectionDropped("x")) == 404  # via UnknownCollection
    assert wire.status_of(errors.DuplicateId("x")) == 409
    assert wire.status_of(errors.InvalidId("x")) == 400
    assert wire.status_of(RuntimeError("x")) == 500
    assert wire.error_body(RuntimeError("boom"))["error"] == "ServerError"
    with pytest.raises(errors.PolyvecError, match="HTTP 502"):
        wire.raise_error(502, "<html>bad gateway</html>")
    with pytest.raises(errors.PolyvecError) as info:
        wire.raise_error(500, {"error": "SystemExit", "message": "no"})  # not a polyvec class
    assert type(info.value) is errors.PolyvecError
