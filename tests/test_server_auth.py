"""API keys: every route of a real server refuses missing, wrong, revoked and out-of-scope
keys; keys are stored hashed; a wrong key's check costs the same whatever its prefix; a
server without keys binds to loopback only."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Server

import polyvec as pv
from polyvec.cli import main
from polyvec.client import Client
from polyvec.errors import Forbidden, InvalidArgument, Unauthorized, UnknownCollection
from polyvec.server.auth import KeyStore

# what each route needs, by (method, path template); a new route without a row here fails
# test_every_route_refuses_bad_keys, so none escapes the checks
SCOPE = {
    ("GET", "/v1/collections"): "read",
    ("POST", "/v1/collections"): "admin",
    ("GET", "/v1/collections/{name}"): "read",
    ("DELETE", "/v1/collections/{name}"): "admin",
    ("POST", "/v1/collections/{name}/add"): "write",
    ("POST", "/v1/collections/{name}/upsert"): "write",
    ("POST", "/v1/collections/{name}/delete"): "write",
    ("POST", "/v1/collections/{name}/get"): "read",
    ("POST", "/v1/collections/{name}/contains"): "read",
    ("GET", "/v1/collections/{name}/count"): "read",
    ("GET", "/v1/collections/{name}/ids"): "read",
    ("POST", "/v1/collections/{name}/find"): "read",
    ("POST", "/v1/collections/{name}/select"): "read",
    ("POST", "/v1/collections/{name}/search"): "read",
    ("POST", "/v1/collections/{name}/search_text"): "read",
    ("POST", "/v1/collections/{name}/fit_fusion"): "read",
    ("POST", "/v1/collections/{name}/calibrate_relevance"): "write",
    ("POST", "/v1/collections/{name}/add_texts"): "write",
    ("GET", "/v1/collections/{name}/indexes"): "read",
    ("POST", "/v1/collections/{name}/indexes"): "write",
    ("POST", "/v1/collections/{name}/flush"): "write",
    ("POST", "/v1/collections/{name}/compact"): "write",
    ("POST", "/v1/collections/{name}/merge"): "write",
    ("POST", "/v1/collections/{name}/verify"): "read",
    ("POST", "/v1/collections/{name}/wait_for_maintenance"): "read",
    ("GET", "/metrics"): "read",
    ("POST", "/v1/collections/{name}/bulk"): "write",
    ("GET", "/v1/collections/{name}/models"): "read",
    ("POST", "/v1/collections/{name}/models"): "write",
    ("POST", "/v1/collections/{name}/mappings"): "write",
    ("POST", "/v1/collections/{name}/compatibility"): "read",
    ("GET", "/v1/collections/{name}/backfill"): "read",
    ("GET", "/v1/reports"): "read",
    ("GET", "/v1/reports/{report}"): "read",
    ("POST", "/v1/collections/{name}/jobs"): "write",
    ("GET", "/v1/jobs"): "read",
    ("GET", "/v1/jobs/{job_id}"): "read",
    ("DELETE", "/v1/jobs/{job_id}"): "write",
}
OPEN = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json")}
# routes with a second way in: a well-formed search is answered before FastAPI's routing
WELL_FORMED = {("POST", "/v1/collections/{name}/search"): b'{"query": [1, 1, 1, 1], "k": 1}'}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("auth") / "db"
    db = pv.connect(folder)
    for name in ("a", "b"):
        db.create_collection(name, {"v": pv.Dense(4)}).add([1], {"v": np.ones((1, 4))})
    db.close()
    store = KeyStore.of(folder)
    keys = {scope: store.create(scope)[0] for scope in ("read", "write", "admin")}
    keys["admin_a"] = store.create("admin", collections=["a"])[0]
    keys["admin_az"] = store.create("admin", collections=["a", "zz"])[0]  # zz: never made
    revoked, rec = store.create("admin")
    store.revoke(rec.id)
    keys["revoked"] = revoked
    server = Server(folder)
    try:
        yield server, keys
    finally:
        server.stop()


def _call(url: str, method: str, path: str, key: str | None, *, header: str = "bearer",
          body: bytes = b"{}") -> tuple[int, Any]:
    data = body if method == "POST" else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header(*(("Authorization", f"Bearer {key}") if header == "bearer"
                         else ("api-key", key)))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_every_route_refuses_bad_keys(served: tuple[Server, dict[str, str]]) -> None:
    server, keys = served
    status, schema = _call(server.url, "GET", "/openapi.json", None)
    assert status == 200
    routes = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert routes - OPEN == set(SCOPE), "a route without a declared scope"
    wrong = keys["read"][:-4] + "AAAA"  # a real key's id with a wrong secret
    for (method, template), scope in SCOPE.items():
        path = template.replace("{name}", "b").replace("{job_id}", "job-1-0").replace(
            "{report}", "r.png")
        for body in {b"{}", WELL_FORMED.get((method, template), b"{}")}:
            for bad in (None, "", "nonsense", wrong, keys["revoked"]):
                status, got = _call(server.url, method, path, bad, body=body)
                assert status == 401 and got["error"] == "Unauthorized", (method, path, bad)
            for held in ("read", "write", "admin"):
                if ("read", "write", "admin").index(held) < \
                        ("read", "write", "admin").index(scope):
                    status, got = _call(server.url, method, path, keys[held], body=body)
                    assert status == 403 and got["error"] == "Forbidden", (method, path, held)
            if "{name}" in template:  # a key for collection "a" only, on "b"
                status, got = _call(server.url, method, path, keys["admin_a"],
                                    header="api-key", body=body)
                assert status == 403, (method, path)
    for probe in OPEN:
        assert _call(server.url, *probe, None)[0] == 200


def test_scopes_allow_what_they_cover(served: tuple[Server, dict[str, str]]) -> None:
    server, keys = served
    reader = Client(server.url, api_key=keys["read"])
    assert reader.list_collections() == ["a", "b"]
    assert reader.get_collection("a").search(np.ones(4), k=1).ids.tolist() == [1]
    with pytest.raises(Forbidden):
        reader.get_collection("a").add([2], {"v": np.ones((1, 4))})
    writer = Client(server.url, api_key=keys["write"])
    writer.get_collection("a").upsert([2], {"v": np.ones((1, 4))})
    with pytest.raises(Forbidden):
        writer.create_collection("c", {"v": pv.Dense(4)})
    only_a = Client(server.url, api_key=keys["admin_a"])
    assert only_a.list_collections() == ["a"]
    with pytest.raises(Forbidden):
        only_a.create_collection("c", {"v": pv.Dense(4)})
    with pytest.raises(Forbidden):
        only_a.get_collection("b")
    with Client(server.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.list_collections()
    admin = Client(server.url, api_key=keys["admin"])
    admin.create_collection("c", {"v": pv.Dense(4)})
    admin.drop_collection("c")
    for c in (reader, writer, only_a, admin):
        c.close()


def test_errors_name_no_server_path_nor_collections_out_of_scope(
        served: tuple[Server, dict[str, str]]) -> None:
    server, keys = served
    with Client(server.url, api_key=keys["admin_az"]) as scoped, \
            pytest.raises(UnknownCollection) as missing:
        scoped.get_collection("zz")
    with Client(server.url, api_key=keys["admin"]) as admin, \
            pytest.raises(UnknownCollection) as dropped:
        admin.drop_collection("nope")
    assert "zz" in str(missing.value) and "<db>" in str(dropped.value)
    for text in (str(missing.value), str(dropped.value)):
        assert "'b'" not in text, text  # the embedded message lists every collection
        assert str(server.db_path) not in text and str(server.db_path.resolve()) not in text


def test_revoking_takes_effect_on_the_next_request(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    pv.connect(folder).close()
    store = KeyStore.of(folder)
    secret, rec = store.create("read")
    server = Server(folder)
    try:
        with Client(server.url, api_key=secret) as client:
            assert client.list_collections() == []
            assert main(["--db", str(folder), "keys", "revoke", rec.id]) == 0
            with pytest.raises(Unauthorized):
                client.list_collections()
    finally:
        server.stop()


def test_keys_are_stored_hashed(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    secret, rec = store.create("write", collections=["x", "y"])
    text = store.path.read_text()
    assert secret not in text and secret[17:] not in text  # pvk_<12 hex>_<secret>
    assert rec.id in text
    assert store.path.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert store.check(secret) == rec and store.check(secret[:-1] + "x") is None
    assert [k.id for k in store.list()] == [rec.id]
    with pytest.raises(InvalidArgument):
        store.create("root")


def test_a_wrong_key_costs_the_same_whatever_its_prefix(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    secret, _ = store.create("read")
    head, tail = secret[:16], secret[17:]  # pvk_<12 hex id>, the secret
    wrong = {"same id": f"{head}_{'A' * len(tail)}",  # the id exists, the secret is wrong
             "other id": f"pvk_{'0' * 12}_{tail}",  # no such id
             "malformed": "x" * len(secret),
             "near miss": secret[:-1] + ("A" if secret[-1] != "A" else "B")}
    times: dict[str, list[float]] = {k: [] for k in wrong}
    for _ in range(7):
        for name, key in wrong.items():
            t = time.perf_counter()
            assert store.check(key) is None
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    assert max(med.values()) < 1.5 * min(med.values()), med  # each pays one scrypt


def test_serving_beyond_loopback_needs_keys(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "db"
    pv.connect(folder).close()
    assert main(["--db", str(folder), "serve", "--host", "0.0.0.0"]) == 2
    assert "without API keys" in capsys.readouterr().err
    assert main(["--db", str(folder), "keys", "create", "--scope", "read", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["key"].startswith("pvk_") and made["scope"] == "read"
    assert main(["--db", str(folder), "keys", "list", "--json"]) == 0
    assert [k["id"] for k in json.loads(capsys.readouterr().out)] == [made["id"]]
    assert main(["--db", str(folder), "keys", "revoke", "nope"]) == 2
