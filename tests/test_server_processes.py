"""The server as processes: several workers serve one folder (writes take turns, reads see
each other's commits on the next request), and a server SIGKILLed again and again under a
write load of several client processes loses no write it acknowledged."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Server, free_port, server_extra

import polyvec as pv
from polyvec.client import Client


def test_two_workers_share_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    pv.connect(folder).create_collection("c", {"v": pv.Dense(8)})
    server = Server(folder, "--workers", "2")
    try:
        rng = np.random.default_rng(0)
        errors: list[BaseException] = []

        def write(lo: int) -> None:
            try:
                with Client(server.url) as client:
                    c = client.get_collection("c")
                    for b in range(10):
                        ids = list(range(lo + 20 * b, lo + 20 * (b + 1)))
                        c.add(ids, {"v": rng.standard_normal((20, 8)).astype(np.float32)})
            except BaseException as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        threads = [threading.Thread(target=write, args=(lo,)) for lo in (0, 10_000, 20_000)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for n in range(16):  # new connections: the kernel spreads them over the workers
            with Client(server.url) as client:
                c = client.get_collection("c")
                assert len(c) == 600 + (n > 0)  # the upsert below, from then on
                c.upsert([-1], {"v": np.ones((1, 8), np.float32)}, [{"n": n}])
                assert c.get([-1])[0].payload == {"n": n}  # read after write, any worker
        with Client(server.url) as client:
            assert len(client.get_collection("c")) == 601
    finally:
        server.stop()


def test_client_reconnects_to_a_restarted_server(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    pv.connect(folder).create_collection("c", {"v": pv.Dense(4)})
    server = Server(folder)
    with Client(server.url) as client:
        c = client.get_collection("c")
        c.add([1], {"v": np.ones((1, 4), np.float32)})
        server.stop()  # the client's kept-alive connection is now dead
        server = Server(folder, port=server.port)
        try:
            c.add([2], {"v": np.ones((1, 4), np.float32)})  # reconnects once, transparently
            assert len(c) == 2
        finally:
            server.stop()


def test_metrics_count_requests_and_report_collections(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    db = pv.connect(folder)
    c = db.create_collection("m", {"v": pv.Dense(4)})
    c.add(list(range(1500)), {"v": np.random.default_rng(0).standard_normal((1500, 4))})
    c.create_index("v", "HNSW16,Refine")
    db.close()
    server = Server(folder)
    try:
        with Client(server.url) as client:
            m = client.get_collection("m")
            for _ in range(3):
                m.search(np.ones(4, np.float32), k=2)
            with pytest.raises(pv.errors.DimensionMismatch):
                m.search(np.ones(3, np.float32), k=2)
        with urllib.request.urlopen(server.url + "/metrics", timeout=30) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = r.read().decode()
    finally:
        server.stop()
    route = re.escape('method="POST",route="/v1/collections/{name}/search"')
    assert re.search(route + r',status="200",pid="\d+"\} 3', text), text
    assert re.search(route + r',status="400",pid="\d+"\} 1', text)
    assert re.search(r'polyvec_request_seconds_count\{' + route + r',pid="\d+"\} 4', text)
    assert 'polyvec_collection_items{collection="m"} 1500' in text
    assert ('polyvec_index_segments{collection="m",field="v",spec="HNSW16,Refine",'
            'state="indexed"} 1') in text


def test_background_jobs_run_fail_and_cancel(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    db = pv.connect(folder)
    rng = np.random.default_rng(1)
    small = db.create_collection("small", {"v": pv.Dense(16)})
    small.add(list(range(3000)), {"v": rng.standard_normal((3000, 16)).astype(np.float32)})
    big = db.create_collection("big", {"v": pv.Dense(64)}, segment_rows=200_000)
    for lo in range(0, 150_000, 50_000):
        big.add(list(range(lo, lo + 50_000)),
                {"v": rng.standard_normal((50_000, 64)).astype(np.float32)})
    db.close()
    server = Server(folder, "--workers", "2")
    try:
        with Client(server.url) as client:
            s = client.get_collection("small")
            job = s.start_job("create_index", field="v", spec="HNSW16,SQ8,Refine")
            assert job.wait(120)["status"] == "done"
            assert s.index_info()["v"]["segments_indexed"] == 1
            assert s.search(np.ones(16, np.float32), k=3).info["strategy"] == "index"
            assert client.job(job.id).status()["status"] == "done"  # from either worker
            assert [j["id"] for j in client.jobs()] == [job.id]
            bad = s.start_job("create_index", field="v", spec="NOPE99")
            with pytest.raises(pv.errors.InvalidArgument):
                bad.wait(60)
            with pytest.raises(pv.errors.InvalidArgument):
                s.start_job("drop_everything")
            with pytest.raises(pv.errors.UnknownJob):
                client.job("job-0-00000000").status()
            b = client.get_collection("big")
            long = b.start_job("create_index", field="v", spec="HNSW32,Flat")
            deadline = time.monotonic() + 60
            while long.status()["status"] != "running" and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # mid-build
            assert long.cancel()["status"] == "cancelled"
            assert long.wait(10)["status"] == "cancelled"
            assert "v" not in b.index_info()
            assert len(b) == 150_000
            b.verify()  # the killed build left the collection as it was
            b.add([-1], {"v": np.ones((1, 64), np.float32)})  # and writable
    finally:
        server.stop()


def test_bulk_upload_streams_past_the_body_limit_in_batches(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    pv.connect(folder).create_collection("c", {"v": pv.Dense(32)}, indexed=["g"])
    server = Server(folder, "--max-body", "200000")  # 200 kB: a 5,000-item upload is ~1 MB
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5000, 32)).astype(np.float32)
    try:
        with Client(server.url) as client:
            c = client.get_collection("c")
            with pytest.raises(pv.errors.RequestTooLarge, match="max-body"):
                c.add(list(range(5000)), {"v": x})  # one body: over the limit, nothing kept
            assert len(c) == 0
            got = c.upload(({"id": i, "vectors": {"v": x[i]}, "payload": {"g": i % 4}}
                            for i in range(5000)), batch=700)
            assert got == {"written": 5000, "batches": 8}
            assert len(c) == 5000 and c.get([4999])[0].payload == {"g": 3}
            np.testing.assert_allclose(c.get([17])[0].vectors["v"],
                                       x[17] / np.linalg.norm(x[17]), rtol=1e-6)
            # a bad line: the batches before it stay, its batch does not, the error says so
            items = [{"id": 10_000 + i, "vectors": {"v": x[i]}} for i in range(250)]
            items[230]["vectors"] = {"v": x[0][:7]}
            with pytest.raises(pv.errors.InvalidVector, match="lines 201-25.: .*200 items "
                               "committed"):
                c.upload(items, batch=100)
            assert len(c) == 5200
            c.upload(items[200:230] + items[231:], upsert=True)  # resume
            assert len(c) == 5249
            with pytest.raises(pv.errors.InvalidPayload):  # a set: JSON cannot carry it
                c.upload([{"id": -5, "vectors": {"v": x[0]}, "payload": {"s": {1, 2}}}])
            assert len(c) == 5249
    finally:
        server.stop()


WRITER = """
import sys, time, numpy as np, polyvec as pv
from polyvec.client import Client
url, me = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(me)
client = Client(url, timeout=10)
n = 0
while True:
    ids = [me * 10**9 + n + i for i in range(25)]
    n += 25
    try:
        client.get_collection("c").add(ids, {"v": rng.standard_normal((25, 8))
                                             .astype(np.float32)},
                                       [{"w": me, "i": i} for i in ids])
    except Exception:
        client.close()
        time.sleep(0.05)
        continue
    print(" ".join(map(str, ids)), flush=True)
"""


@pytest.mark.slow
def test_sigkilled_server_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    server_extra()
    folder = tmp_path / "db"
    pv.connect(folder).create_collection("c", {"v": pv.Dense(8)}, segment_rows=2000)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(w)],
                                stdout=subprocess.PIPE, text=True) for w in (1, 2, 3)]
    acked: set[int] = set()
    lines: list[str] = []

    def collect(p: subprocess.Popen[str]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)

    readers = [threading.Thread(target=collect, args=(w,), daemon=True) for w in writers]
    for t in readers:
        t.start()
    rng = np.random.default_rng(7)
    kills = 0
    try:
        for kills in range(1, 21):
            proc = subprocess.Popen(
                [sys.executable, "-m", "polyvec.cli", "--db", str(folder), "serve", "--port",
                 str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            before = len(lines)
            deadline = time.monotonic() + 60
            while len(lines) < before + 3 and time.monotonic() < deadline:
                time.sleep(0.02)  # the writers got through again
            time.sleep(float(rng.uniform(0.05, 0.6)))  # mid-write, at a random point
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.2)  # answers already on their way are read by the writers
            for line in list(lines):
                acked.update(int(i) for i in line.split())
            db = pv.connect(folder, create=False)
            c = db.get_collection("c")
            got = c.get(sorted(acked))
            missing = [i for i, it in zip(sorted(acked), got, strict=True) if it is None]
            assert not missing, f"kill {kills}: {len(missing)} acknowledged writes lost"
            assert all(it.payload["i"] == it.id for it in got if it is not None)
            assert len(c) >= len(acked)
            db.close()
    finally:
        for w in writers:
            w.kill()
            w.wait()
        for t in readers:
            t.join(10)
        for w in writers:
            assert w.stdout is not None
            w.stdout.close()
    assert kills == 20 and len(acked) > 20 * 25


def test_searches_off_the_fast_path_get_the_routes_answers(tmp_path: Path) -> None:
    """A well-formed search is answered before FastAPI's routing; every other body goes on
    to the route. Both answer the same search alike, and each refusal is typed."""
    folder = tmp_path / "db"
    pv.connect(folder).create_collection("c", {"v": pv.Dense(4)}).add(
        [1, 2, 3], {"v": np.eye(4, dtype=np.float32)[:3] + 0.1})
    server = Server(folder, "--max-body", "10000")

    def post(body: bytes | Iterator[bytes], kind: str = "application/json") -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("POST", "/v1/collections/c/search", body=body,
                         headers={"Content-Type": kind}, encode_chunked=not
                         isinstance(body, bytes))
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    try:
        q = json.dumps({"query": [1, 0.5, 0, 0], "k": 2, "ef": None}).encode()
        fast, routed = post(q), post(q, "application/json; charset=utf-8")
        assert fast == routed and fast[0] == 200 and fast[1]["ids"] == [1, 2]
        for body, error in ((b'{"query": [1, 0, 0, 0], "kk": 2}', "InvalidArgument"),
                            (b"[1, 0, 0, 0]", "InvalidArgument"),
                            (b'{"query": ', "InvalidArgument"),
                            (b'{"query": [1.0, 0.0, 0.0]}', "DimensionMismatch"),
                            (b'{"query": [1, 0, 0, 0], "k": -1}', "InvalidArgument"),
                            # nested past the JSON decoder's recursion limit (was a 500)
                            (b'{"query": ' + b"[" * 4000 + b"]" * 4000 + b"}", "InvalidArgument")):
            for kind in ("application/json", "application/json; charset=utf-8"):
                status, got = post(body, kind)
                assert (status, got["error"]) == (400, error), (body[:40], got)
        status, got = post(iter([q[:-1] + b", " + b" " * 12000 + b"}"]))  # chunked, no length
        assert (status, got["error"]) == (413, "RequestTooLarge")
        assert post(iter([q]))[1] == fast[1]
    finally:
        server.stop()


def test_text_calls_follow_a_switch_made_by_a_backfill_job(tmp_path: Path) -> None:
    """The server attached MiniLM to a field; a backfill job (a process of its own) switches
    the field to paraphrase-MiniLM-L3: the next text search embeds with L3, not MiniLM."""
    from polyvec.embed import minilm, paraphrase_minilm

    old, new = minilm(), paraphrase_minilm()  # the [models] extra (CI installs it)
    words = [f"package {w} for {t}" for w in ("tools", "library", "docs", "game", "server")
             for t in ("python", "rust", "audio", "video", "fonts", "network")]
    folder = tmp_path / "db"
    c = pv.connect(folder).create_collection("t", {"emb": pv.Dense(384)},
                                              embedders={"emb": old})
    c.add_texts(words, list(range(len(words))), [{"text": w} for w in words])
    c.register_model("emb", new.spec, name="v2")
    c.close()
    server = Server(folder)
    try:
        with Client(server.url) as client:
            t = client.get_collection("t")
            before = t.search_text(words[7], 1)
            assert before.ids.tolist() == [7] and before.scores[0] > 0.999
            t.fit_mapping("emb", "v2", "v1", sample=30)
            assert t.backfill("emb", "v2")["status"] == "done"
            assert t.model_versions("emb")["current"] == "v2"
            after = t.search_text(words, 1)  # L3 queries against L3 vectors
            assert after.ids[:, 0].tolist() == list(range(len(words)))
            np.testing.assert_allclose(after.scores[:, 0], 1.0, atol=1e-4)
    finally:
        server.stop()
