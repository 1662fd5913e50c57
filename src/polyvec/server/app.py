"""The HTTP API: a thin FastAPI app over one database folder (``polyvec serve``).

Each route checks the request's key, calls the embedded API and answers its result as JSON
(:mod:`polyvec.wire`); a typed error becomes its HTTP status with the body
``{"error", "message", "details"}``, and a rejected request changes nothing (the embedded
call validates before it writes). Routes are plain ``def`` functions, which FastAPI runs on
its thread pool, so writes take turns on the collection's lock, in this process and across
workers; searches, the hot route, run on the event loop or a search executor (see
:meth:`ServerState.timed`), in parallel on the collection's snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .. import wire
from ..collection import DEFAULT_SEGMENT_ROWS, Collection, bind_args
from ..db import Database, connect
from ..errors import (
    CollectionClosed,
    Forbidden,
    InvalidArgument,
    MissingExtra,
    PolyvecError,
    RequestTooLarge,
    Unauthorized,
    UnknownCollection,
    UnknownReport,
)
from ..spec import ModelSpec, field_from_dict
from ..types import SearchResult
from .auth import ApiKey, KeyStore
from .jobs import KINDS, Jobs
from .metrics import Metrics

__all__ = ["DEFAULT_MAX_BODY", "ServerState", "create_app", "from_env"]

DEFAULT_MAX_BODY = 256 * 2**20  # bytes of one request body (--max-body)
_REPORT_TYPES = {".png": "image/png", ".md": "text/markdown; charset=utf-8",
                 ".json": "application/json"}
_REPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,200}$")  # a file of that folder
INLINE_S = 0.002  # a search this fast runs on the event loop (see ServerState.timed)
ALONE_S = 0.025  # one this fast too, while it is the worker's only request
_log = logging.getLogger("polyvec.server")
STATIC = Path(__file__).parent / "static"  # the dashboard's assets, shipped in the package


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error answer: the typed error's class name, its message, the fields that
    rebuild it (see :mod:`polyvec.wire`)."""

    error: str
    message: str
    details: dict[str, Any] | None = None


# every route may answer these (the probes aside); documented so clients and fuzzers know
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in [
        (400, "invalid input (a typed error: DimensionMismatch, FilterError, ...)"),
        (401, "missing, unknown or revoked API key"), (403, "the key's scope does not cover it"),
        (404, "unknown collection"), (409, "conflict: existing id or collection, a lock"),
        (413, "request body over --max-body"), (500, "a damaged file (CorruptFile)"),
        (501, "a missing extra (MissingExtra)"), (503, "the server is shutting down")]}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$"


class CreateCollection(_Body):
    name: str = Field(pattern=_NAME)
    vectors: dict[str, dict[str, Any]]
    indexed: list[str] = []
    segment_rows: int | None = None
    exist_ok: StrictBool = False


class Write(_Body):
    ids: list[Any]
    vectors: Any = None
    payloads: list[Any] | None = None


class Ids(_Body):
    ids: list[Any]


class Contains(_Body):
    id: Any


class Search(_Body):
    query: Any
    k: Any = 10
    field: Any = None
    filter: Any = None
    target_recall: Any = None
    ef: Any = None
    nprobe: Any = None
    oversample: Any = None
    candidates: Any = None
    rerank_depth: Any = None
    model: Any = None
    fusion: Any = None
    weights: Any = None
    min_score: Any = None
    min_relevance: Any = None


_SEARCH = frozenset(Search.model_fields)  # the keys of a search body
_SEARCH_PATH = re.compile(rf"^/v1/collections/({_NAME[1:-1]})/search$")


class SearchText(_Body):
    query: Any
    k: Any = 10
    field: Any = None
    filter: Any = None
    model: Any = None
    fields: Any = None
    fusion: Any = None
    weights: Any = None
    min_score: Any = None
    min_relevance: Any = None


class FitFusion(_Body):
    queries: Any
    qrels: Any
    fusion: Any = "weighted"
    k: Any = 10
    step: Any = 0.1
    filter: Any = None


class CalibrateRelevance(_Body):
    queries: Any
    qrels: Any
    field: Any = None
    method: Any = "isotonic"
    k: Any = 10
    filter: Any = None


class AddTexts(_Body):
    texts: Any
    ids: Any
    payloads: Any = None
    vectors: Any = None
    upsert: StrictBool = False


class Select(_Body):
    filter: Any = None


class CreateIndex(_Body):
    field: str
    spec: str
    sample_queries: Any = None


class StartJob(_Body):
    kind: str = Field(description=" | ".join(KINDS))
    args: dict[str, Any] = Field(default={}, description="the method's keyword arguments")


class RegisterModel(_Body):
    field: str
    model: dict[str, Any] = Field(description="a ModelSpec's fields")
    name: str = "v2"
    current: str = "v1"


class FitMapping(_Body):
    field: str
    from_model: str = "v2"
    to_model: str = "v1"
    args: dict[str, Any] = {}


class Compatibility(_Body):
    field: str
    new_model: str = "v2"
    old_model: str = "v1"
    args: dict[str, Any] = {}


class Merge(_Body):
    force: StrictBool = False


class ServerState:
    """One worker's database handle, keys and counters."""

    def __init__(self, db_path: Path, keys: KeyStore | None, max_body: int,
                 workers: int = 1, reports: Path | None = None) -> None:
        self.db: Database = connect(db_path, create=False)
        # the folder as spelled here and resolved: redacted from error answers (_error)
        self.roots = tuple(sorted({str(self.db.path), str(Path(db_path).resolve())},
                                  key=len, reverse=True))
        self.reports = Path(db_path) / "reports" if reports is None else Path(reports)
        self.keys = keys
        self.max_body = max_body
        self.mutex = threading.Lock()  # the handle cache of Database is not thread-safe
        self.closing = False
        self._embedders: dict[ModelSpec, Any] = {}  # one loaded model per spec
        # the models whose embedders each handle has attached, per field
        self._attached: weakref.WeakKeyDictionary[Collection, dict[str, ModelSpec]] = \
            weakref.WeakKeyDictionary()
        self.last_search: dict[str, float] = {}  # seconds, per collection (see timed)
        # the searches too slow for the event loop (see timed) run here, one per CPU share:
        # more only contend (32 clients' exact scans at once, BLAS, ran 11x slower in all
        # than one per CPU; the workers share the CPUs); its hand-off costs ~0.1 ms where
        # the server's general thread pool's costs ~0.4
        self.searchers = ThreadPoolExecutor(max(1, (os.cpu_count() or 2) // workers),
                                            thread_name_prefix="polyvec-search")
        self.metrics = Metrics()
        self.jobs = Jobs(db_path)
        self.in_flight = 0  # requests this worker is answering (counted by _Guard)

    async def admit(self, headers: Mapping[str, str], scope: str,
                    name: str | None) -> ApiKey | None:
        """The key of a request (its ``headers``) admitted for ``scope`` on collection
        ``name``; :class:`Unauthorized` or :class:`Forbidden` otherwise. On the event loop:
        a key that passed before costs a dict lookup; a new one's scrypt runs on the thread
        pool (a thread hop is ~0.4 ms here)."""
        if self.keys is None:
            return None
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("api-key")
        key = self.keys.known(token)
        if key is None:
            key = await run_in_threadpool(self.keys.check, token)
        if key is None:
            raise Unauthorized("missing, unknown or revoked API key (send it as "
                               "'Authorization: Bearer <key>' or an 'api-key' header)")
        if not key.allows(scope, name):
            where = f" on collection {name!r}" if name else ""
            raise Forbidden(f"API key {key.id} (scope {key.scope!r}, collections "
                            f"{list(key.collections) if key.collections else 'all'}) "
                            f"may not {scope}{where}")
        return key

    async def search(self, name: str, body: Mapping[str, Any]) -> SearchResult:
        """``POST /v1/collections/{name}/search`` with a checked ``body`` (keys of
        :class:`Search`), for the route and for :class:`_Guard`'s fast path alike."""
        def run() -> SearchResult:
            get = body.get
            return self.collection(name).search(
                wire.decode_query(body["query"], "query"), get("k", 10), field=get("field"),
                filter=get("filter"), target_recall=get("target_recall"), ef=get("ef"),
                nprobe=get("nprobe"), oversample=get("oversample"),
                candidates=get("candidates"), rerank_depth=get("rerank_depth"),
                model=get("model"), fusion=get("fusion"), weights=get("weights"),
                min_score=get("min_score"), min_relevance=get("min_relevance"))

        return await self.timed(name, run)

    async def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` (a search of collection ``name``) on the event loop when the last one
        took under ``INLINE_S`` (or ``ALONE_S`` while no other request is in flight), else
        on the search executor: a thread hop costs ~0.4 ms here, most of a fast search's
        answer, while a slow search must not hold the loop (one slow search may, then the
        collection's searches move to the executor until one is fast again)."""
        def measured() -> Any:
            t = time.thread_time()  # CPU time: a search preempted under load is not slow
            try:
                return fn()
            finally:
                self.last_search[name] = time.thread_time() - t

        last = self.last_search.get(name, 0.0)
        if (last < INLINE_S or (last < ALONE_S and self.in_flight == 1)) \
                and not self.mutex.locked():
            # (a locked mutex: a handle opening or a model loading; the loop must not wait)
            return measured()

        return await asyncio.get_running_loop().run_in_executor(self.searchers, measured)

    def collection(self, name: str) -> Collection:
        """The handle of collection ``name``; an unknown one's error names only it (the
        embedded message also lists the others, which a key scoped to some must not see)."""
        with self.mutex:
            try:
                return self.db.get_collection(name)
            except UnknownCollection:
                raise UnknownCollection(f"no collection {name!r}") from None

    def attach_embedders(self, c: Collection) -> None:
        """Attach to each field of ``c`` that records a model the embedder of that model
        (loaded once per worker from the installed model packages; :class:`MissingExtra`
        names what to install). Checked on each text call: a backfill (a job's process,
        another worker) may have switched a field to a new model since, whose embedder then
        replaces the old one."""
        from ..embed.registry import embedder_for

        models = {f: m for f in c.schema.fields if (m := c.model_of(f)) is not None}
        if self._attached.get(c) == models:
            return
        for model in models.values():  # loaded outside the mutex (seconds): see timed
            if model not in self._embedders:
                try:
                    self._embedders.setdefault(model, embedder_for(model))
                except MissingExtra:  # not one this server can build: the call that needs
                    self._embedders.setdefault(model, None)  # it says so, as embedded
        with self.mutex:
            for fname, model in models.items():
                if self._embedders[model] is not None:
                    c.use_embedder(fname, self._embedders[model])
            self._attached[c] = models


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return super().render(wire.jsonable(content))


def _error(exc: BaseException, roots: tuple[str, ...] = ()) -> JSONResponse:
    """The error answer of ``exc``; each of ``roots`` (the database folder's spellings) in
    its message and details reads ``<db>``: a client is not told where the server keeps it."""
    def redact(v: Any) -> Any:
        if isinstance(v, str):
            for root in roots:
                v = v.replace(root, "<db>")
        return {d: redact(w) for d, w in v.items()} if isinstance(v, dict) else v

    return _Json(redact(wire.error_body(exc)), status_code=wire.status_of(exc))


class _Guard:
    """ASGI middleware (a plain one: Starlette's ``BaseHTTPMiddleware`` costs ~0.3 ms a
    request): a request while shutting down gets 503; a body over the limit gets 413, by its
    ``Content-Length`` before it is read, or counted as it streams in (a chunked body has no
    length), before the route has seen all of it.

    It also answers the hot route itself: a search whose body is a JSON object of
    :class:`Search`'s keys runs here, with the route's key check and the same call, skipping
    FastAPI's routing, dependencies and body model (~0.25 ms of a ~1 ms answer). Any other
    body (not JSON, an unknown key, another content type) goes on to the route, which
    answers it as the schema says."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state, limit = self.state, self.state.max_body
        if state.closing:
            await _error(CollectionClosed("the server is shutting down"))(scope, receive, send)
            return
        headers = Headers(scope=scope)
        size = headers.get("content-length")
        too_large = RequestTooLarge(
            f"request body: over the server's limit of {limit} bytes (start it with a larger "
            "--max-body, or send the items in smaller batches)")
        if scope["path"].endswith("/bulk"):  # streamed: each line is limited there instead
            limit = 1 << 62
        if size is not None and (not size.isdigit() or int(size) > limit):
            await _error(too_large)(scope, receive, send)
            return
        seen, status, route, t = 0, 500, None, time.perf_counter()
        state.in_flight += 1  # (on the event loop: no lock)

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large  # the routes' handler answers it: 413
            return message

        async def sent(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            fast = scope["method"] == "POST" and _SEARCH_PATH.match(scope["path"])
            if fast and headers.get("content-type") == "application/json":
                route = "/v1/collections/{name}/search"
                chunks, more = [], True
                while more:
                    try:
                        message = await counted()
                    except RequestTooLarge as e:
                        await _error(e)(scope, receive, sent)
                        return
                    chunks.append(message.get("body", b""))
                    more = message.get("more_body", False)
                body = b"".join(chunks)
                answer = await self.fast_search(fast[1], headers, body)
                if answer is not None:
                    await answer(scope, receive, sent)
                    return
                route = None
                replayed = [{"type": "http.request", "body": body, "more_body": False}]

                async def replay() -> Any:  # the body read here, then the connection's
                    return replayed.pop() if replayed else await receive()

                await self.app(scope, replay, sent)
                return
            await self.app(scope, counted, sent)
        finally:
            state.in_flight -= 1
            if route is None:
                route = getattr(scope.get("route"), "path", "unmatched")
            state.metrics.observe(scope["method"], route, status, time.perf_counter() - t)

    async def fast_search(self, name: str, headers: Headers, body: bytes) -> Response | None:
        """The answer to a search of collection ``name`` with ``body``; ``None`` when the
        body is not a JSON object of :class:`Search`'s keys with a query (the route
        answers that one)."""
        try:
            fields = json.loads(body)
        except (ValueError, RecursionError):  # (nested too deeply: the route says so)
            return None
        if not (isinstance(fields, dict) and "query" in fields and fields.keys() <= _SEARCH):
            return None
        try:
            await self.state.admit(headers, "read", name)
            return _Json(wire.result_to_json(await self.state.search(name, fields)))
        except Exception as e:
            if not isinstance(e, PolyvecError):  # a bug: logged, as the route's would be
                _log.exception("search of %r", name)
            return _error(e, self.state.roots)


def create_app(db_path: str | os.PathLike[str], *, keys: KeyStore | None = None,
               max_body: int = DEFAULT_MAX_BODY, workers: int = 1,
               reports: str | os.PathLike[str] | None = None) -> FastAPI:
    """The API over the database folder ``db_path``; with ``keys``, every route but the
    probes requires a key of the route's scope (see :mod:`.auth`). ``reports``: the folder
    of evaluation reports the dashboard shows (default ``<db>/reports``; ``polyvec eval
    --out`` writes them)."""
    state = ServerState(Path(db_path), keys, max_body, workers,
                        None if reports is None else Path(reports))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.closing = True  # requests from now on get 503; the handles close
        state.searchers.shutdown(wait=True)
        with state.mutex:
            state.db.close()

    app = FastAPI(title="polyvec", version="1", docs_url=None, redoc_url=None,
                  default_response_class=_Json, lifespan=lifespan, responses=_ERRORS)

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, without the 422 it documents for body errors (they are 400)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for ops in schema["paths"].values():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.polyvec = state

    @app.exception_handler(PolyvecError)
    def _typed(request: Request, exc: PolyvecError) -> JSONResponse:
        return _error(exc, state.roots)

    @app.exception_handler(Exception)
    def _untyped(request: Request, exc: Exception) -> JSONResponse:
        return _error(exc, state.roots)  # a bug: a 500 with a JSON body (and a logged traceback)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(InvalidArgument(f"request body: {where}: {first.get('msg', 'invalid')}"))

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's body decoding
            return _error(InvalidArgument(f"request body: {exc.detail} ({exc.__cause__})"))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every route of the path, not only the first one tried
            headers["Allow"] = ", ".join(sorted({
                m for r in app.routes if isinstance(r, APIRoute)
                and r.matches(request.scope)[0] is not Match.NONE for m in r.methods or ()}))
        return _Json({"error": "NotFound" if exc.status_code == 404 else "HTTPError",
                      "message": str(exc.detail), "details": None},
                     status_code=exc.status_code, headers=headers)

    app.add_middleware(_Guard, state=state)

    def need(scope: str) -> Any:
        """A dependency that admits the request's key for ``scope`` on the route's
        collection (its ``name``), before the body is read or checked."""
        async def check(request: Request) -> ApiKey | None:
            return await state.admit(request.headers, scope, request.path_params.get("name"))
        return Depends(check)

    read, write, admin = need("read"), need("write"), need("admin")
    coll = state.collection

    # -- the dashboard (public assets: every datum it shows comes through the API) ---------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> Response:
        return FileResponse(STATIC / "index.html")

    # -- probes ---------------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if state.closing:
            return _Json({"status": "closing"}, status_code=503)
        state.db.list_collections()
        return _Json({"status": "ready"})

    @app.get("/metrics", response_class=Response)
    def metrics(key: ApiKey | None = read) -> Response:
        """Prometheus text: this worker's requests and latencies, each visible collection's
        items, segments, growing rows, bytes and index state."""
        infos = []
        for name in state.db.list_collections():
            if key is None or key.allows("read", name):
                with contextlib.suppress(PolyvecError):  # dropped meanwhile: not listed
                    infos.append((name, coll(name).info()))
        return Response(state.metrics.render(infos),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- collections ----------------------------------------------------------------------------
    @app.get("/v1/collections")
    def list_collections(key: ApiKey | None = read) -> dict[str, Any]:
        names = state.db.list_collections()
        if key is not None and key.collections is not None:
            names = [n for n in names if n in key.collections]
        return {"collections": names}

    @app.post("/v1/collections")
    def create_collection(body: CreateCollection, key: ApiKey | None = admin
                          ) -> dict[str, Any]:
        if key is not None and not key.allows("admin", body.name):
            raise Forbidden(f"API key {key.id} may not create collection {body.name!r} (it "
                            f"covers {list(key.collections or [])})")
        vectors = {}
        for fname, spec in body.vectors.items():
            try:
                vectors[fname] = field_from_dict(spec)
            except TypeError as e:
                raise InvalidArgument(f"vectors[{fname!r}]: {e}") from None
        with state.mutex:
            c = state.db.create_collection(
                body.name, vectors, indexed=body.indexed, exist_ok=body.exist_ok,
                segment_rows=DEFAULT_SEGMENT_ROWS if body.segment_rows is None
                else body.segment_rows)
        return c.info()

    @app.get("/v1/collections/{name}")
    def info(name: str, key: ApiKey | None = read) -> dict[str, Any]:
        return coll(name).info()

    @app.delete("/v1/collections/{name}")
    def drop_collection(name: str, key: ApiKey | None = admin) -> dict[str, Any]:
        with state.mutex:
            state.db.drop_collection(name)
        return {"dropped": name}

    # -- items ----------------------------------------------------------------------------------
    def vectors_of(raw: Any) -> Any:
        if isinstance(raw, dict) and set(raw) != {"b64", "dtype", "shape"}:
            return {f: wire.decode_vectors(v, f"vectors[{f!r}]") for f, v in raw.items()}
        return wire.decode_vectors(raw, "vectors")

    @app.post("/v1/collections/{name}/add")
    def add(name: str, body: Write, key: ApiKey | None = write) -> dict[str, Any]:
        coll(name).add(body.ids, vectors_of(body.vectors), body.payloads)
        return {"written": len(body.ids)}

    @app.post("/v1/collections/{name}/upsert")
    def upsert(name: str, body: Write, key: ApiKey | None = write) -> dict[str, Any]:
        coll(name).upsert(body.ids, vectors_of(body.vectors), body.payloads)
        return {"written": len(body.ids)}

    @app.post("/v1/collections/{name}/delete")
    def delete(name: str, body: Ids, key: ApiKey | None = write) -> dict[str, Any]:
        return {"deleted": coll(name).delete(body.ids)}

    @app.post("/v1/collections/{name}/get")
    def get(name: str, body: Ids, key: ApiKey | None = read) -> dict[str, Any]:
        items = coll(name).get(body.ids)
        return {"items": [None if it is None else {
            "id": it.id, "payload": it.payload,
            "vectors": {f: wire.encode_vectors(v) for f, v in it.vectors.items()}}
            for it in items]}

    @app.post("/v1/collections/{name}/contains")
    def contains(name: str, body: Contains, key: ApiKey | None = read) -> dict[str, Any]:
        return {"contains": body.id in coll(name)}

    @app.get("/v1/collections/{name}/count")
    def count(name: str, key: ApiKey | None = read) -> dict[str, Any]:
        return {"count": len(coll(name))}

    @app.get("/v1/collections/{name}/ids")
    def ids(name: str, offset: int = Query(0, ge=0, le=2**62),
            limit: int | None = Query(None, ge=0, le=2**62),
            key: ApiKey | None = read) -> dict[str, Any]:
        """The live ids in insertion order, from ``offset``, at most ``limit`` of them."""
        it = iter(coll(name))
        stop = None if limit is None else offset + limit
        return {"ids": list(itertools.islice(it, offset, stop))}

    @app.post("/v1/collections/{name}/find")
    def find(name: str, body: Select, key: ApiKey | None = read) -> dict[str, Any]:
        return {"ids": coll(name).find(body.filter)}

    @app.post("/v1/collections/{name}/select")
    def select(name: str, body: Select, key: ApiKey | None = read) -> dict[str, Any]:
        return {"seqs": coll(name).select(body.filter).tolist()}

    @app.post("/v1/collections/{name}/bulk", openapi_extra={"requestBody": {
        "description": "NDJSON lines (sent as application/x-ndjson or text/plain)",
        "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def bulk(name: str, request: Request, upsert: bool = False,
                   batch: int = Query(1000, ge=1, le=100_000),
                   key: ApiKey | None = write) -> dict[str, Any]:
        """A stream of NDJSON lines ``{"id", "vectors": {field: ...}, "payload"}``, committed
        every ``batch`` lines as one durable ``add`` (``upsert``): an upload of any size,
        without the ``--max-body`` cliff (each line is held to it). A bad line raises its
        typed error, whose ``details`` say how many items were committed before it."""
        c = await run_in_threadpool(coll, name)
        done, batches, line_no, first_line, tail = 0, 0, 0, 1, b""
        pending: list[dict[str, Any]] = []

        async def commit() -> None:
            nonlocal done, batches, pending, first_line
            if not pending:
                return
            ids: list[Any] = [item.get("id") for item in pending]
            fields = {f for item in pending for f in (item.get("vectors") or {})}
            vectors = {f: [wire.decode_vectors((item.get("vectors") or {}).get(f),
                                               f"vectors[{f!r}]") for item in pending]
                       for f in fields}
            payloads = [item.get("payload") for item in pending]
            write_ = c.upsert if upsert else c.add
            await run_in_threadpool(write_, ids, vectors or None, payloads)
            done, batches, pending = done + len(ids), batches + 1, []
            first_line = line_no + 1

        def bad(exc: PolyvecError, where: str | None = None) -> PolyvecError:
            exc.args = (f"{where or f'line {line_no}'}: {exc} ({done} items committed "
                        f"before it, in {batches} batches)", *exc.args[1:])
            return exc

        def batch_lines() -> str:
            return f"the batch of lines {first_line}-{line_no}"

        async def take(raw: bytes) -> None:
            nonlocal line_no
            line_no += 1
            if not raw.strip():
                return
            try:
                item = json.loads(raw)
            except (ValueError, RecursionError) as e:  # (RecursionError: nested too deeply)
                raise bad(InvalidArgument(f"not JSON ({e})")) from None
            if not isinstance(item, dict) or not set(item) <= {"id", "vectors", "payload"}:
                raise bad(InvalidArgument('expected an object with "id", "vectors" and '
                                          f'"payload", got {raw[:80]!r}'))
            pending.append(item)
            if len(pending) >= batch:
                try:
                    await commit()
                except PolyvecError as e:
                    raise bad(e, batch_lines()) from None

        async for chunk in request.stream():
            tail += chunk
            *lines, tail = tail.split(b"\n")
            if len(tail) > state.max_body:
                raise RequestTooLarge(f"line {line_no + len(lines) + 1}: over "
                                      f"{state.max_body} bytes (--max-body)")
            for raw in lines:
                await take(raw)
        await take(tail)  # a last line without its newline
        try:
            await commit()
        except PolyvecError as e:
            raise bad(e, batch_lines()) from None
        return {"written": done, "batches": batches}

    # -- search ---------------------------------------------------------------------------------
    @app.post("/v1/collections/{name}/search")
    async def search(name: str, body: Search, key: ApiKey | None = read) -> Response:
        """(A well-formed JSON body is answered by :class:`_Guard` before it gets here.)"""
        return _Json(wire.result_to_json(await state.search(name, body.model_dump())))

    @app.post("/v1/collections/{name}/search_text")
    def search_text(name: str, body: SearchText, key: ApiKey | None = read) -> dict[str, Any]:
        c = coll(name)
        state.attach_embedders(c)
        hybrid = {f: getattr(body, f) for f in ("fusion", "weights", "min_score",
                                                "min_relevance") if getattr(body, f) is not None}
        return wire.result_to_json(c.search_text(body.query, body.k, field=body.field,
                                                 filter=body.filter, model=body.model,
                                                 fields=body.fields, **hybrid))

    def labelled(body: FitFusion | CalibrateRelevance) -> tuple[Any, Any]:
        queries = body.queries
        if isinstance(queries, list):
            queries = [wire.decode_query(q, f"queries[{i}]") for i, q in enumerate(queries)]
        return queries, wire.decode_qrels(body.qrels)

    @app.post("/v1/collections/{name}/fit_fusion")
    def fit_fusion(name: str, body: FitFusion, key: ApiKey | None = read) -> dict[str, Any]:
        return wire.jsonable(coll(name).fit_fusion(
            *labelled(body), fusion=body.fusion, k=body.k, step=body.step, filter=body.filter))

    @app.post("/v1/collections/{name}/calibrate_relevance")
    def calibrate_relevance(name: str, body: CalibrateRelevance,
                            key: ApiKey | None = write) -> dict[str, Any]:
        return wire.jsonable(coll(name).calibrate_relevance(
            *labelled(body), field=body.field, method=body.method, k=body.k,
            filter=body.filter))

    @app.post("/v1/collections/{name}/add_texts")
    def add_texts(name: str, body: AddTexts, key: ApiKey | None = write) -> dict[str, Any]:
        c = coll(name)
        state.attach_embedders(c)
        vecs = None if body.vectors is None else vectors_of(body.vectors)
        c.add_texts(body.texts, body.ids, body.payloads, vectors=vecs, upsert=body.upsert)
        return {"written": len(body.ids) if isinstance(body.ids, list) else None}

    # -- indexes and maintenance ----------------------------------------------------------------
    @app.get("/v1/collections/{name}/indexes")
    def index_info(name: str, key: ApiKey | None = read) -> dict[str, Any]:
        return coll(name).index_info()

    @app.post("/v1/collections/{name}/indexes")
    def create_index(name: str, body: CreateIndex, key: ApiKey | None = write) -> dict[str, Any]:
        c = coll(name)
        sample = None if body.sample_queries is None else \
            wire.decode_vectors(body.sample_queries, "sample_queries")
        if sample is not None and not isinstance(sample, np.ndarray):
            try:
                sample = np.asarray(sample, dtype=np.float32)
            except (TypeError, ValueError):
                raise InvalidArgument("sample_queries: expected an (n, dim) array of numbers, "
                                      f"got {str(sample)[:80]}") from None
        c.create_index(body.field, body.spec, sample_queries=sample)
        return c.index_info()

    # -- evaluation reports (polyvec eval --out: Markdown, JSON and plots) -----------------------
    @app.get("/v1/reports")
    def list_reports(key: ApiKey | None = read) -> dict[str, Any]:
        folder = state.reports
        files = sorted(p for p in folder.iterdir() if p.is_file() and
                       p.suffix in _REPORT_TYPES) if folder.is_dir() else []
        return {"reports": [{"name": p.name, "type": _REPORT_TYPES[p.suffix],
                             "bytes": p.stat().st_size} for p in files]}

    @app.get("/v1/reports/{report}", response_class=Response)
    def get_report(report: str, key: ApiKey | None = read) -> Response:
        path = state.reports / report
        if not _REPORT_NAME.match(report) or path.suffix not in _REPORT_TYPES or \
                not path.is_file():
            raise UnknownReport(f"no report {report!r} (see GET /v1/reports)")
        return FileResponse(path, media_type=_REPORT_TYPES[path.suffix])

    # -- model upgrades -------------------------------------------------------------------------
    @app.get("/v1/collections/{name}/models")
    def model_versions(name: str, field: str | None = None,
                       key: ApiKey | None = read) -> dict[str, Any]:
        return dict(wire.jsonable(coll(name).model_versions(field)))

    @app.post("/v1/collections/{name}/models")
    def register_model(name: str, body: RegisterModel,
                       key: ApiKey | None = write) -> dict[str, Any]:
        try:
            spec = ModelSpec.from_dict(body.model)
        except TypeError as e:
            raise InvalidArgument(f"model: expected a ModelSpec's fields, got {e}") from None
        return dict(wire.jsonable(coll(name).register_model(body.field, spec, body.name,
                                                            current=body.current)))

    @app.post("/v1/collections/{name}/mappings")
    def fit_mapping(name: str, body: FitMapping, key: ApiKey | None = write) -> dict[str, Any]:
        c = coll(name)
        state.attach_embedders(c)
        return dict(wire.jsonable(c.fit_mapping(body.field, body.from_model, body.to_model,
                                                **body.args)))

    @app.post("/v1/collections/{name}/compatibility")
    def compatibility_report(name: str, body: Compatibility,
                             key: ApiKey | None = read) -> dict[str, Any]:
        c = coll(name)
        state.attach_embedders(c)
        return dict(wire.jsonable(c.compatibility_report(body.field, body.new_model,
                                                         body.old_model, **body.args)))

    @app.get("/v1/collections/{name}/backfill")
    def backfill_status(name: str, field: str | None = None,
                        key: ApiKey | None = read) -> dict[str, Any]:
        return {"backfill": wire.jsonable(coll(name).backfill_status(field))}

    # -- background jobs (any worker answers for any job: their state is in the folder) --------
    @app.post("/v1/collections/{name}/jobs")
    def start_job(name: str, body: StartJob, key: ApiKey | None = write) -> dict[str, Any]:
        """Run ``kind`` (create_index, compact, merge, flush) with ``args`` in a process of
        its own; poll ``GET /v1/jobs/{id}``, cancel with ``DELETE``."""
        c = coll(name)  # 404 before anything starts
        if body.kind in KINDS:  # its arguments checked here: a 400 now, not a failed job
            bind_args(getattr(c, body.kind), "args", **body.args)
        return state.jobs.start(name, body.kind, body.args)

    def job_of(job_id: str, key: ApiKey | None, scope: str) -> dict[str, Any]:
        record = state.jobs.get(job_id)
        if key is not None and not key.allows(scope, record["collection"]):
            raise Forbidden(f"API key {key.id} may not {scope} jobs of collection "
                            f"{record['collection']!r}")
        return record

    @app.get("/v1/jobs")
    def list_jobs(key: ApiKey | None = read) -> dict[str, Any]:
        return {"jobs": [j for j in state.jobs.list()
                         if key is None or key.allows("read", j["collection"])]}

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str, key: ApiKey | None = read) -> dict[str, Any]:
        return job_of(job_id, key, "read")

    @app.delete("/v1/jobs/{job_id}")
    def cancel_job(job_id: str, key: ApiKey | None = write) -> dict[str, Any]:
        job_of(job_id, key, "write")
        return state.jobs.cancel(job_id)

    @app.post("/v1/collections/{name}/flush")
    def flush(name: str, key: ApiKey | None = write) -> dict[str, Any]:
        coll(name).flush()
        return {"done": True}

    @app.post("/v1/collections/{name}/compact")
    def compact(name: str, key: ApiKey | None = write) -> dict[str, Any]:
        coll(name).compact()
        return {"done": True}

    @app.post("/v1/collections/{name}/merge")
    def merge(name: str, body: Merge | None = None,
              key: ApiKey | None = write) -> dict[str, Any]:
        coll(name).merge(force=body is not None and body.force)
        return {"done": True}

    @app.post("/v1/collections/{name}/verify")
    def verify(name: str, key: ApiKey | None = read) -> dict[str, Any]:
        coll(name).verify()
        return {"ok": True}

    @app.post("/v1/collections/{name}/wait_for_maintenance")
    def wait_for_maintenance(name: str, timeout: float | None = None,
                             key: ApiKey | None = read) -> dict[str, Any]:
        return {"done": coll(name).wait_for_maintenance(timeout)}

    return app


ENV_DB, ENV_KEYS, ENV_MAX_BODY = "POLYVEC_SERVE_DB", "POLYVEC_SERVE_KEYS", "POLYVEC_SERVE_MAX_BODY"
ENV_WORKERS, ENV_REPORTS = "POLYVEC_SERVE_WORKERS", "POLYVEC_SERVE_REPORTS"


def from_env() -> FastAPI:
    """The app of ``polyvec serve`` in a uvicorn worker process: its settings come from the
    environment the command set (``POLYVEC_SERVE_DB``, ``_KEYS``: a keys file or empty for
    none, ``_MAX_BODY``)."""
    keys = os.environ.get(ENV_KEYS) or None
    return create_app(os.environ[ENV_DB], keys=None if keys is None else KeyStore(Path(keys)),
                      max_body=int(os.environ.get(ENV_MAX_BODY, DEFAULT_MAX_BODY)),
                      workers=int(os.environ.get(ENV_WORKERS, 1)),
                      reports=os.environ.get(ENV_REPORTS) or None)
