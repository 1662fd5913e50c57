"""``pv.Client``: a polyvec server reached over HTTP, with the embedded API.

The client's database and collections have the methods, arguments and return types of
:class:`~polyvec.Database` and :class:`~polyvec.Collection` (``SearchResult`` with numpy arrays,
``Item`` objects, the same typed exceptions, raised from the server's error body). Arrays
travel as base64 float32 (float16 where the array is float16), so vectors and scores come
back bit for bit. Standard library only: one keep-alive HTTP connection per thread.

>>> client = Client("http://127.0.0.1:8000")  # doctest: +SKIP
>>> docs = client.get_collection("docs")  # doctest: +SKIP
>>> docs.search(query_vector, k=5).ids  # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import wire
from .collection import Item
from .errors import FilterError, InvalidArgument, InvalidId, InvalidPayload, PolyvecError
from .spec import CollectionSchema, FieldSpec, ModelSpec
from .types import SearchResult, SparseVector

__all__ = ["Client", "Job", "RemoteCollection"]


class _Http:
    """JSON requests to one server; a keep-alive connection per thread."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument(f"url: expected http(s)://host[:port], got {url!r}")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []  # every thread's, for close()
        self._mutex = threading.Lock()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else \
                http.client.HTTPConnection
            conn = self._local.conn = cls(self.host, self.port, timeout=self.timeout)
            with self._mutex:
                self._all.append(conn)
        return conn

    def call(self, method: str, path: str, body: Any = None, *,
             chunks: Iterator[bytes] | None = None) -> Any:
        """The JSON answer of ``method path`` with the JSON ``body`` (or a body streamed from
        ``chunks``, chunked); a typed error for an error answer. A kept-alive connection the
        server closed meanwhile is opened again once (the request never reached it; a
        stream is not retried)."""
        try:
            data = None if body is None else json.dumps(body, allow_nan=True).encode()
        except (TypeError, ValueError) as e:  # a set, bytes, an object: JSON cannot carry it
            raise _unsendable(body, e) from None
        headers = self.headers
        if chunks is not None:
            headers = {**headers, "Content-Type": "application/x-ndjson"}
        for attempt in (0, 1):
            conn = self._conn()
            reused = conn.sock is not None and chunks is None
            try:
                conn.request(method, self.base + path, body=chunks if chunks is not None
                             else data, headers=headers, encode_chunked=chunks is not None)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except BaseException as e:  # (a streamed body's own error, a Ctrl-C too)
                self._drop(conn)  # half-used: the thread's next call opens a new one
                stale = isinstance(e, http.client.RemoteDisconnected | BrokenPipeError
                                   | ConnectionResetError)
                if not (stale and reused) or attempt:
                    raise
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = raw.decode("utf-8", "replace")
        if resp.status >= 400:
            wire.raise_error(resp.status, answer)
        return answer

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._mutex:
            if conn in self._all:  # (close() may have taken it already)
                self._all.remove(conn)

    def close(self) -> None:
        """Close every thread's connection (a thread's next call opens a new one)."""
        with self._mutex:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


# the typed error of each argument the embedded API checks for values JSON cannot carry
_UNSENDABLE: dict[str, type[PolyvecError]] = {
    "ids": InvalidId, "id": InvalidId, "payloads": InvalidPayload, "filter": FilterError}


def _unsendable(body: Mapping[str, Any], e: Exception) -> PolyvecError:
    """The typed error for a ``body`` holding a value JSON cannot carry (a set, bytes, an
    object): of the class the embedded call raises for that argument (an id: InvalidId, a
    payload: InvalidPayload, a filter: FilterError; InvalidArgument otherwise), naming
    where the value is."""
    for name, value in body.items():
        found = _first_unsendable(value, name)
        if found is not None:
            where, bad = found
            cls = _UNSENDABLE.get(name, InvalidArgument)
            message = (f"expected JSON values (dict, list, str, int, float, bool, None), got "
                       f"{type(bad).__name__}")
            if cls is FilterError:  # its path: within the filter, as the parser names one
                return FilterError(message, where.removeprefix("filter").lstrip("."))
            return cls(f"{where}: {message}")
    return InvalidArgument(f"request body: {e}")


def _first_unsendable(value: Any, where: str) -> tuple[str, Any] | None:
    """The path and value of the first part of ``value`` JSON cannot carry, if any."""
    if value is None or isinstance(value, str | int | float):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{where}.{key!r}", key
            found = _first_unsendable(item, f"{where}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _first_unsendable(item, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    return where, value


def _quote(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidArgument(f"collection name: expected a str, got {type(name).__name__}")
    return urllib.parse.quote(name, safe="")


def _ids(ids: Any) -> Any:
    """Ids for JSON: numpy arrays and scalars as Python values (the server checks them)."""
    if isinstance(ids, np.ndarray):
        return ids.tolist()
    if isinstance(ids, Sequence) and not isinstance(ids, str | bytes):
        return [i.item() if isinstance(i, np.generic) else i for i in ids]
    return ids


def _listed(x: Any) -> Any:
    """A sequence as a JSON list; anything else (a str, a dict, ``None``) as it is, for the
    server to refuse as the embedded call would."""
    if isinstance(x, Sequence) and not isinstance(x, str | bytes):
        return list(x)
    return x


class Client:
    """A polyvec server as a :class:`~polyvec.Database`: ``Client("http://host:8000",
    api_key=...)``."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 300.0) -> None:
        self._http = _Http(url, api_key, timeout)
        self.url = url

    def list_collections(self) -> list[str]:
        return list(self._http.call("GET", "/v1/collections")["collections"])

    def create_collection(self, name: str, vectors: dict[str, FieldSpec], *,
                          indexed: list[str] | tuple[str, ...] = (),
                          segment_rows: int | None = None, embedders: Any = None,
                          exist_ok: bool = False) -> RemoteCollection:
        """As :meth:`polyvec.Database.create_collection`; ``embedders`` apply on the server
        (the fields' recorded models are loaded there), so they are not taken here."""
        if embedders:
            raise InvalidArgument("embedders: a client cannot send embedder objects; create "
                                  "the collection embedded, or add vectors")
        schema = CollectionSchema.build(vectors, indexed)
        body: dict[str, Any] = {"name": name, "vectors": schema.to_dict()["vectors"],
                                "indexed": list(schema.indexed), "exist_ok": exist_ok}
        if segment_rows is not None:
            body["segment_rows"] = segment_rows
        self._http.call("POST", "/v1/collections", body)
        return RemoteCollection(self._http, name)

    def job(self, job_id: str) -> Job:
        """A background job started by :meth:`RemoteCollection.start_job`, by its id."""
        return Job(self._http, job_id)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job's record the key may see, oldest first."""
        return list(self._http.call("GET", "/v1/jobs")["jobs"])

    def get_collection(self, name: str) -> RemoteCollection:
        self._http.call("GET", f"/v1/collections/{_quote(name)}/count")
        return RemoteCollection(self._http, name)

    __getitem__ = get_collection

    def drop_collection(self, name: str) -> None:
        self._http.call("DELETE", f"/v1/collections/{_quote(name)}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Job:
    """A background job on the server: its :meth:`status`, :meth:`wait` and :meth:`cancel`."""

    def __init__(self, http: _Http, job_id: str) -> None:
        self._http = http
        self.id = job_id

    def status(self) -> dict[str, Any]:
        """The job's record: ``status`` (starting, running, done, failed, cancelled), times,
        and ``error`` (a typed error's body) when it failed."""
        return dict(self._http.call("GET", f"/v1/jobs/{_quote(self.id)}"))

    def wait(self, timeout: float | None = None, *, poll: float = 0.2) -> dict[str, Any]:
        """Wait for the job to end; its record. A failed job raises its typed error; a
        timeout raises ``TimeoutError`` (the job goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.status()
            if record["status"] == "failed":
                wire.raise_error(500, record["error"])
            if record["status"] in ("done", "cancelled"):
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {record['status']} after {timeout} s")
            time.sleep(poll)

    def cancel(self) -> dict[str, Any]:
        """Stop the job (its process is killed; the collection stays as before it)."""
        return dict(self._http.call("DELETE", f"/v1/jobs/{_quote(self.id)}"))


class RemoteCollection:
    """A collection on a polyvec server, with :class:`~polyvec.Collection`'s methods."""

    def __init__(self, http: _Http, name: str) -> None:
        self._http = http
        self.name = name
        self._path = f"/v1/collections/{_quote(name)}"

    def _call(self, method: str, action: str, body: Any = None) -> Any:
        return self._http.call(method, f"{self._path}/{action}" if action else self._path,
                               body)

    @property
    def schema(self) -> CollectionSchema:
        return CollectionSchema.from_dict(self.info()["schema"])

    # -- writing --------------------------------------------------------------------------------
    def add(self, ids: Sequence[int | str], vectors: Mapping[str, Any] | Any = None,
            payloads: Sequence[dict[str, Any] | None] | None = None) -> None:
        self._call("POST", "add", self._write_body(ids, vectors, payloads))

    def upsert(self, ids: Sequence[int | str], vectors: Mapping[str, Any] | Any = None,
               payloads: Sequence[dict[str, Any] | None] | None = None) -> None:
        self._call("POST", "upsert", self._write_body(ids, vectors, payloads))

    @staticmethod
    def _write_body(ids: Any, vectors: Any, payloads: Any) -> dict[str, Any]:
        if isinstance(vectors, Mapping):
            vecs: Any = {f: wire.encode_vectors(v) for f, v in vectors.items()}
        else:
            vecs = wire.encode_vectors(vectors)
        return {"ids": _ids(ids), "vectors": vecs, "payloads": _listed(payloads)}

    def upload(self, items: Iterable[Mapping[str, Any]], *, upsert: bool = False,
               batch: int = 1000) -> dict[str, Any]:
        """Stream ``items`` (``{"id", "vectors": {field: array}, "payload"}`` each) to the
        server, which commits every ``batch`` of them as one durable add (or upsert): an
        upload of any size in one request, beyond ``--max-body``. Returns ``{"written",
        "batches"}``; a bad item raises its typed error, naming its line and how many items
        were committed before it (resume from there)."""
        def lines() -> Iterator[bytes]:
            for item in items:
                vecs = item.get("vectors") or {}
                line = {"id": _ids([item.get("id")])[0], "payload": item.get("payload"),
                        "vectors": {f: wire.encode_vectors(v) for f, v in vecs.items()}}
                try:
                    yield (json.dumps(line) + "\n").encode()
                except (TypeError, ValueError) as e:
                    raise _unsendable({"ids": [line["id"]], "payloads": [line["payload"]]},
                                      e) from None

        query = f"?upsert={'true' if upsert else 'false'}&batch={int(batch)}"
        return dict(self._http.call("POST", f"{self._path}/bulk{query}", chunks=lines()))

    def delete(self, ids: Sequence[int | str]) -> int:
        return int(self._call("POST", "delete", {"ids": _ids(ids)})["deleted"])

    def flush(self) -> None:
        self._call("POST", "flush")

    def compact(self) -> None:
        self._call("POST", "compact")

    def merge(self, *, force: bool = False) -> None:
        self._call("POST", "merge", {"force": force})

    def verify(self) -> None:
        self._call("POST", "verify")

    def wait_for_maintenance(self, timeout: float | None = None) -> bool:
        query = "" if timeout is None else f"?timeout={float(timeout)}"
        return bool(self._call("POST", f"wait_for_maintenance{query}")["done"])

    def create_index(self, field: str, spec: Any, *,
                     sample_queries: np.ndarray | None = None) -> None:
        """As :meth:`polyvec.Collection.create_index`; a spec object travels as its factory
        string (which round-trips exactly)."""
        if not isinstance(spec, str):
            from .factory import format_index, format_multi_index
            from .index_spec import IndexSpec, MultiIndexSpec

            if isinstance(spec, IndexSpec):
                spec = format_index(spec)
            elif isinstance(spec, MultiIndexSpec):
                spec = format_multi_index(spec)
            else:
                raise InvalidArgument(f"create_index: expected a factory string or an index "
                                      f"spec, got {type(spec).__name__}")
        self._call("POST", "indexes", {
            "field": field, "spec": spec,
            "sample_queries": None if sample_queries is None else
            wire.encode_vectors(np.asarray(sample_queries))})

    def index_info(self) -> dict[str, Any]:
        return dict(self._call("GET", "indexes"))

    # -- model upgrades ---------------------------------------------------------------------------
    def model_versions(self, field: str | None = None) -> dict[str, Any]:
        """As :meth:`polyvec.Collection.model_versions`, the specs as dicts."""
        query = "" if field is None else "?field=" + urllib.parse.quote(field)
        return dict(self._call("GET", f"models{query}"))

    def register_model(self, field: str, embedder_or_spec: Any, name: str = "v2", *,
                       current: str = "v1") -> ModelSpec:
        """As :meth:`polyvec.Collection.register_model`: the spec travels (an embedder's
        ``.spec``); the server builds the embedder from its installed model packages."""
        spec = embedder_or_spec if isinstance(embedder_or_spec, ModelSpec) else getattr(
            embedder_or_spec, "spec", None)
        if not isinstance(spec, ModelSpec):
            raise InvalidArgument(f"embedder_or_spec: expected a ModelSpec or an embedder with "
                                  f"a ModelSpec `.spec`, got {type(embedder_or_spec).__name__}")
        got = self._call("POST", "models", {"field": field, "model": spec.to_dict(),
                                            "name": name, "current": current})
        return ModelSpec.from_dict(got)

    def fit_mapping(self, field: str, from_model: str = "v2", to_model: str = "v1",
                    **kwargs: Any) -> dict[str, Any]:
        return dict(self._call("POST", "mappings", {"field": field, "from_model": from_model,
                                                    "to_model": to_model, "args": kwargs}))

    def compatibility_report(self, field: str, new_model: str = "v2", old_model: str = "v1",
                             **kwargs: Any) -> dict[str, Any]:
        """The report as a dict (embedded returns the report object; its ``to_dict``)."""
        return dict(self._call("POST", "compatibility", {"field": field,
                                                         "new_model": new_model,
                                                         "old_model": old_model,
                                                         "args": kwargs}))

    def backfill(self, field: str, model: str = "v2", **kwargs: Any) -> dict[str, Any]:
        """Re-embed ``field`` with model version ``model`` as a background job on the
        server, and wait for it; the job's record (see :meth:`start_job` to not wait)."""
        return self.start_job("backfill", field=field, model=model, **kwargs).wait()

    def backfill_status(self, field: str | None = None) -> dict[str, Any] | None:
        query = "" if field is None else "?field=" + urllib.parse.quote(field)
        got = self._call("GET", f"backfill{query}")["backfill"]
        return None if got is None else dict(got)

    def start_job(self, kind: str, **args: Any) -> Job:
        """Run ``kind`` (``"create_index"``, ``"compact"``, ``"merge"``, ``"flush"``) with
        ``args`` in the background on the server, e.g. ``start_job("create_index",
        field="dense", spec="HNSW32,SQ8,Refine")``; see :class:`Job`."""
        if "sample_queries" in args and args["sample_queries"] is not None:
            args["sample_queries"] = np.asarray(args["sample_queries"]).tolist()
        record = self._call("POST", "jobs", {"kind": kind, "args": args})
        return Job(self._http, record["id"])

    # -- reading --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._call("GET", "count")["count"])

    def __contains__(self, key: object) -> bool:
        if isinstance(key, np.generic):
            key = key.item()
        if isinstance(key, bool) or not isinstance(key, int | str):
            return False
        try:
            return bool(self._call("POST", "contains", {"id": key})["contains"])
        except PolyvecError:
            return False

    def __iter__(self) -> Iterator[int | str]:
        return iter(self._call("GET", "ids")["ids"])

    def get(self, ids: Sequence[int | str]) -> list[Item | None]:
        items = self._call("POST", "get", {"ids": _ids(ids)})["items"]
        return [None if it is None else
                Item(it["id"], it["payload"],
                     {f: _stored(wire.decode_vectors(v, f)) for f, v in it["vectors"].items()})
                for it in items]

    def find(self, filter: Mapping[str, Any] | None = None) -> list[int | str]:
        return list(self._call("POST", "find", {"filter": filter})["ids"])

    def select(self, filter: Mapping[str, Any] | None) -> np.ndarray:
        return np.asarray(self._call("POST", "select", {"filter": filter})["seqs"],
                          dtype=np.int64)

    def search(self, query: Any, k: int = 10, *, field: str | None = None,
               filter: Mapping[str, Any] | None = None, target_recall: float | None = None,
               ef: int | None = None, nprobe: int | None = None,
               oversample: float | None = None, candidates: int | None = None,
               rerank_depth: int | None = None, model: str | None = None,
               fusion: str | None = None, weights: Mapping[str, float] | None = None,
               min_score: Any = None, min_relevance: float | None = None) -> SearchResult:
        body = {"query": wire.encode_query(query), "k": k, "field": field, "filter": filter,
                "target_recall": target_recall, "ef": ef, "nprobe": nprobe,
                "oversample": oversample, "candidates": candidates,
                "rerank_depth": rerank_depth, "model": model}
        extra = {"fusion": fusion, "weights": weights, "min_score": min_score,
                 "min_relevance": min_relevance}
        body |= {n: x for n, x in extra.items() if x is not None}  # (sent only when given)
        return wire.result_from_json(self._call("POST", "search", body))

    def search_text(self, query: str | Sequence[str], k: int = 10, *, field: str | None = None,
                    filter: Mapping[str, Any] | None = None, embedder: Any = None,
                    model: str | None = None, fields: Sequence[str] | None = None,
                    **hybrid: Any) -> SearchResult:
        """As :meth:`polyvec.Collection.search_text`, embedded on the server by the field's
        recorded model (an ``embedder`` object cannot travel)."""
        if embedder is not None:
            raise InvalidArgument("embedder: a client cannot send an embedder object; the "
                                  "server embeds with the field's recorded model")
        unknown = sorted(set(hybrid) - {"fusion", "weights", "min_score", "min_relevance"})
        if unknown:
            raise InvalidArgument(f"search_text: unexpected arguments {unknown}; expected "
                                  "fusion, weights, min_score, min_relevance")
        body = {"query": query, "k": k, "field": field, "filter": filter, "model": model,
                "fields": fields, **hybrid}
        return wire.result_from_json(self._call("POST", "search_text", body))

    def fit_fusion(self, queries: Sequence[Mapping[str, Any]], qrels: Sequence[Any], *,
                   fusion: str = "weighted", k: int = 10, step: float = 0.1,
                   filter: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """As :meth:`polyvec.Collection.fit_fusion`."""
        body = _labelled(queries, qrels) | {"fusion": fusion, "k": k, "step": step,
                                             "filter": filter}
        return self._call("POST", "fit_fusion", body)

    def calibrate_relevance(self, queries: Sequence[Any], qrels: Sequence[Any], *,
                            field: str | None = None, method: str = "isotonic", k: int = 10,
                            filter: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """As :meth:`polyvec.Collection.calibrate_relevance`."""
        body = _labelled(queries, qrels) | {"field": field, "method": method, "k": k,
                                             "filter": filter}
        return self._call("POST", "calibrate_relevance", body)

    def add_texts(self, texts: Sequence[str], ids: Sequence[int | str],
                  payloads: Sequence[dict[str, Any] | None] | None = None, *,
                  vectors: Mapping[str, Any] | None = None, upsert: bool = False) -> None:
        body = {"texts": _listed(texts), "ids": _ids(ids), "payloads": _listed(payloads),
                "vectors": {f: wire.encode_vectors(v) for f, v in vectors.items()}
                if isinstance(vectors, Mapping) else vectors, "upsert": upsert}
        self._call("POST", "add_texts", body)

    def info(self) -> dict[str, Any]:
        return dict(self._call("GET", ""))

    def close(self) -> None:
        """Nothing to release per collection (the client holds the connections)."""


def _stored(v: Any) -> Any:
    """A decoded vector as the embedded ``get`` returns it (a SparseVector's uint32 indices
    and float32 values: JSON carried them as numbers)."""
    if isinstance(v, SparseVector):
        return SparseVector(v.indices.astype(np.uint32), v.values.astype(np.float32))
    return v


def _labelled(queries: Any, qrels: Any) -> dict[str, Any]:
    """Labelled queries for the wire (a malformed list travels as is: the server's
    collection names what is wrong)."""
    return {"queries": [wire.encode_query(q) for q in queries]
            if isinstance(queries, list | tuple) else queries, "qrels": wire.encode_qrels(qrels)}
