"""Sharded collections on a real local Ray cluster of three nodes (``ray.cluster_utils``):
merged search against one embedded collection holding every item (the oracle), replicas
losing their node under read and write load, and a shard added while writes go on."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import extra, shared_data
from stored_kinds import FIELDS, kinds_data, same_items

import polyvec as pv
from polyvec.errors import DuplicateId, InvalidArgument, ShardUnavailable

extra("ray", "ray")
# no usage reporting: Ray Data's poller thread would query Prometheus every 10 s for the rest
# of the session, logging each failure's traceback, and Python 3.11 formats a traceback with
# ast.parse, whose state another thread's ast.parse shares ("AST constructor recursion depth
# mismatch" in test_hooks, once)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from polyvec.distributed import HashRing, connect_ray  # noqa: E402

N, NQ, K = 4_000, 20, 10
NODE = {"num_cpus": 2, "object_store_memory": 80 * 1024 * 1024}


def test_ring_moves_about_one_nth_to_the_new_shard() -> None:
    """Consistent hashing: adding a fifth shard moves about a fifth of the ids, all of them
    to the new shard; the largest shard holds at most 1.35x the mean (64 points each)."""
    ring = HashRing([f"s{i}" for i in range(4)])
    keys = [*range(20_000), *(f"doc-{i}" for i in range(20_000))]
    owners = [ring.shard_of(k) for k in keys]
    sizes = np.unique(owners, return_counts=True)[1]
    assert sizes.max() <= 1.35 * sizes.mean(), sizes
    wider = ring.with_shard("s4")
    moved = [(a, wider.shard_of(k)) for a, k in zip(owners, keys, strict=True)
             if wider.shard_of(k) != a]
    assert 0.15 <= len(moved) / len(keys) <= 0.25 and {b for _, b in moved} == {"s4"}
    assert ring.split(keys[:5]) == {s: [i for i in range(5) if owners[i] == s]
                                    for s in set(owners[:5])}
    assert HashRing.from_dict(ring.to_dict()) == ring
    assert ring.shard_of(1) == HashRing([f"s{i}" for i in range(4)]).shard_of(1)  # stable
    with pytest.raises(InvalidArgument):
        HashRing(["a", "a"])


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    folder = shared_data("debian-minilm", "base_f16.npy", "queries_f16.npy", "docs.jsonl")
    import json

    x = np.load(folder / "base_f16.npy")[:N].astype(np.float32)
    q = np.load(folder / "queries_f16.npy")[:NQ].astype(np.float32)
    sections = []
    with open(folder / "docs.jsonl") as f:
        for _ in range(N):
            sections.append(json.loads(next(f))["section"])
    payloads = [{"section": s, "n": i} for i, s in enumerate(sections)]
    return {"x": x, "q": q, "payloads": payloads, "ids": [f"d{i}" for i in range(N)]}


@pytest.fixture(scope="module")
def cluster() -> Any:
    """Three nodes on this machine: the head and two workers (the driver joins the head)."""
    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    workers = [c.add_node(**NODE) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _filled(db: Any, name: str, data: dict[str, Any], **kw: Any) -> Any:
    coll = db.create_collection(name, {"v": pv.Dense(384)}, indexed=["section", "n"], **kw)
    for lo in range(0, N, 1_000):
        coll.add(data["ids"][lo:lo + 1_000], {"v": data["x"][lo:lo + 1_000]},
                 data["payloads"][lo:lo + 1_000])
    return coll


def _assert_same(got: Any, want: Any, atol: float = 1e-5) -> None:
    """Equal scores, and equal ids wherever a score is not tied (ties may order apart, and
    one tied with the k-th may give its place to one past k)."""
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=atol)
    s = np.asarray(want.scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # (-inf - -inf: an empty slot beside another)
        near = np.abs(np.diff(s)) < 1e-5
    tied = np.zeros(len(s), dtype=bool)
    tied[1:] |= near
    tied[:-1] |= near
    if len(s) and np.isfinite(s[-1]):  # tied with the k-th: may trade places with the k+1-th
        tied |= np.abs(s - s[-1]) < 1e-5
    assert [a for a, t in zip(got.ids, tied, strict=True) if not t] == \
        [b for b, t in zip(want.ids, tied, strict=True) if not t]


def test_merged_exact_search_equals_one_collection(cluster: Any, data: dict[str, Any],
                                                   tmp_path: Path) -> None:
    """Three shards (one replica each, one per node): exact search, filtered and not, one
    query and a batch, equals one embedded collection holding every item; so do get, find
    and len; bad input raises before any shard changes; an indexed search at
    ``target_recall=0.95`` keeps recall >= 0.93 against the oracle."""
    rdb = connect_ray(tmp_path / "ray")
    coll = _filled(rdb, "debian", data, shards=3)
    oracle = pv.connect(tmp_path / "one").create_collection(
        "debian", {"v": pv.Dense(384)}, indexed=["section", "n"])
    oracle.add(data["ids"], {"v": data["x"]}, data["payloads"])
    assert {r[0]["node"] for r in coll.replicas().values()} == {
        n["NodeID"] for n in ray.nodes() if n["Alive"]}
    # one replica a node: each gets its node's 2 CPUs as threads (Ray would give it 1)
    threads = {ray.get(reps[0].actor.__ray_call__.remote(
        lambda self: __import__("os").environ.get("OMP_NUM_THREADS")))
        for reps in coll._replicas.values()}
    assert threads == {"2"}
    filters = [None, {"section": "python"}, {"section": {"$in": ["libs", "devel"]}, "n": {
        "$lt": 2_000}}, {"n": {"$lt": 3}}, {"section": "no-such-section"}]
    for flt in filters:
        for i in range(NQ):
            _assert_same(coll.search(data["q"][i], k=K, filter=flt),
                         oracle.search(data["q"][i], k=K, filter=flt))
        batch, one = coll.search(data["q"], k=K, filter=flt), oracle.search(data["q"], k=K,
                                                                           filter=flt)
        for i in range(NQ):
            _assert_same(batch[i], one[i])
        assert "partial" not in batch.info
    assert len(coll) == N and sorted(coll.find({"n": {"$lt": 5}})) == [f"d{i}" for i in
                                                                        range(5)]
    got = coll.get(["d7", "nope", "d3999"])
    assert got[0].payload == data["payloads"][7] and got[1] is None
    np.testing.assert_allclose(got[2].vectors["v"], oracle.get(["d3999"])[0].vectors["v"],
                               atol=1e-6)  # (normalized in batches of another size)
    # a refusal is one collection's (type and message), not Ray's task error around it:
    # those the driver checks first, and one only a shard tells (an unknown model version)
    with pytest.raises(DuplicateId) as dup:
        coll.add(["d1", "new"], {"v": data["x"][:2]})
    assert type(dup.value) is DuplicateId and "ray" not in str(dup.value).lower(), dup.value
    q0 = data["q"][0]
    for knobs, q in [({"filter": {"n": {"$foo": 1}}}, q0), ({"filter": "n = 1"}, q0),
                     ({"field": "nope"}, q0), ({"model": "v9"}, q0),
                     ({}, q0[:5]), ({}, np.full(384, np.nan, np.float32)),
                     ({}, np.ones((2, 2, 384), np.float32))]:
        with pytest.raises(pv.errors.PolyvecError) as want:
            oracle.search(q, k=K, **knobs)
        with pytest.raises(pv.errors.PolyvecError) as got:
            coll.search(q, k=K, **knobs)
        assert (type(got.value), str(got.value)) == (type(want.value), str(want.value))
    with pytest.raises(pv.errors.FilterError, match=r"\$foo"):
        coll.find({"n": {"$foo": 1}})
    with pytest.raises(TypeError, match="unexpected keyword argument 'efs'"):
        coll.search(q0, k=K, efs=64)
    with pytest.raises(pv.errors.DimensionMismatch):
        coll.upsert(["new", "d2"], {"v": np.ones((2, 5), np.float32)})
    assert "new" not in coll and len(coll) == N
    assert coll.delete(["d1", "d2", "nope"]) == 2 and len(coll) == N - 2
    oracle.delete(["d1", "d2"])
    coll.create_index("v", "HNSW16,SQ8,Refine", sample_queries=data["q"])
    hits = []
    for i in range(NQ):
        res = coll.search(data["q"][i], k=K, target_recall=0.95)
        want = set(oracle.search(data["q"][i], k=K).ids.tolist())
        hits.append(len(want & set(res.ids.tolist())) / K)
        assert set(res.info["shards"]) == {"s0", "s1", "s2"}
    assert np.mean(hits) >= 0.93, np.mean(hits)
    rdb.drop_collection("debian")
    assert rdb.list_collections() == [] and not any((tmp_path / "ray" / "debian").iterdir())
    for call in (lambda: len(coll), lambda: coll.search(q0, k=K), lambda: coll.delete(["d0"])):
        with pytest.raises(pv.errors.CollectionDropped):
            call()


def test_bad_layouts_are_refused_and_a_failed_start_leaves_nothing(
        cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Layout arguments are checked before any actor starts (a typo of a million shards
    would start a million processes); replicas that fail to start are stopped and the
    collection is not created; ``add_shard`` stops at ``limits.MAX_SHARDS``."""
    rdb = connect_ray(tmp_path / "ray")
    fields = {"v": pv.Dense(4)}
    for bad in ({"shards": 10**6}, {"shards": 0}, {"replicas": 4}, {"segment_rows": 0},
                {"vnodes": 10**9}, {"shards": True}):
        with pytest.raises(InvalidArgument, match=next(iter(bad))):
            rdb.create_collection("c", fields, **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"MAX_SHARDS = 1024\], got 1000000"):
        rdb.create_collection("c", fields, shards=10**6)
    assert rdb.list_collections() == [] and not (tmp_path / "ray" / "c").exists()
    (tmp_path / "ray" / "c").write_text("a file where the replicas' folders would go")
    with pytest.raises(Exception) as failed:
        rdb.create_collection("c", fields, shards=3)
    assert not isinstance(failed.value, InvalidArgument)  # (Ray's: the actors died)
    assert rdb.list_collections() == []
    (tmp_path / "ray" / "c").unlink()
    coll = rdb.create_collection("c", fields, shards=2)
    coll.add([1, 2, 3], {"v": np.eye(3, 4, dtype=np.float32)})
    monkeypatch.setattr(pv.limits, "MAX_SHARDS", 2)
    with pytest.raises(InvalidArgument, match="MAX_SHARDS = 2"):
        coll.add_shard()
    assert len(coll.ring.shards) == 2 and set(coll.replicas()) == {"s0", "s1"}
    assert len(coll) == 3 and coll.search(np.eye(1, 4, dtype=np.float32)[0], k=1).ids[0] == 1
    rdb.drop_collection("c")


def test_bm25_over_shards_scores_as_one_collection(cluster: Any, tmp_path: Path) -> None:
    """A BM25 field over three shards: each shard scores with the statistics summed over
    all of them (live documents, total length, each term's document frequency), so merged
    results equal one collection's, scores included, filtered and not; a shard scoring with
    its own statistics would not."""
    import json

    folder = shared_data("debian-minilm", "docs.jsonl", "queries.jsonl")
    with open(folder / "docs.jsonl") as f:
        docs = [json.loads(next(f)) for _ in range(3_000)]
    with open(folder / "queries.jsonl") as f:
        texts = [json.loads(next(f))["text"] for _ in range(NQ)]
    ids = [f"d{d['id']}" for d in docs]
    pays = [{"section": d["section"]} for d in docs]
    rdb = connect_ray(tmp_path / "ray")
    coll = rdb.create_collection("lex", {"t": pv.BM25()}, indexed=["section"], shards=3)
    oracle = pv.connect(tmp_path / "one").create_collection("lex", {"t": pv.BM25()},
                                                            indexed=["section"])
    for target in (coll, oracle):
        target.add(ids, {"t": [d["description"] for d in docs]}, pays)
    coll.delete(ids[:50])
    oracle.delete(ids[:50])
    for flt in (None, {"section": "libs"}):
        for text in texts:
            _assert_same(coll.search(text, k=K, filter=flt), oracle.search(text, k=K,
                                                                           filter=flt))
        batch, one = coll.search(texts, k=K, filter=flt), oracle.search(texts, k=K, filter=flt)
        for i in range(NQ):
            _assert_same(batch[i], one[i])
    alone = coll._read_each("search", (texts[0], K, {}))  # each shard on its own statistics
    full = oracle.search(texts[0], k=3_000)
    score = dict(zip(full.ids.tolist(), full.scores.tolist(), strict=True))
    assert any(abs(float(r.scores[0]) - score[r.ids[0]]) > 1e-3 for r in alone.values())
    # moved to a fourth shard, each item keeps its terms and length: scores stay the same
    assert coll.add_shard() == "s3" and len(coll) == len(ids) - 50
    for text in texts:
        _assert_same(coll.search(text, k=K), oracle.search(text, k=K))
    coll.close(remove=True)


def test_moved_and_copied_items_keep_their_stored_form(cluster: Any, tmp_path: Path) -> None:
    """Items of the fields whose stored form is not what a write takes (cosine rows cast to
    f16, pooled token sets, u8 weights, analyzed texts), moved to a new shard and copied to
    a new replica, come back bit for bit as one collection holds them, and score alike."""
    keys, vectors, payloads = kinds_data()
    rdb = connect_ray(tmp_path / "ray")
    coll = rdb.create_collection("kinds", FIELDS, shards=2, replicas=2)
    oracle = pv.connect(tmp_path / "one").create_collection("kinds", FIELDS)
    for target in (coll, oracle):
        target.add(keys, vectors, payloads)
    assert coll.add_shard() == "s2"
    lost = coll._replicas["s0"][0]
    coll._lost(lost)  # (its actor killed: the shard is down to one replica)
    assert coll.repair() == {"s0": 1}
    for shard in coll.ring.shards:  # read each replica: the new one included
        for rep in coll._live(shard):
            held = ray.get(rep.actor.ids.remote())
            same_items(_Remote(rep.actor), oracle, held)
    assert sorted(coll.find()) == sorted(keys)
    rng = np.random.default_rng(1)
    queries = {"d": rng.standard_normal(FIELDS["d"].dim).astype(np.float32),
               "m": rng.standard_normal((4, FIELDS["m"].dim)).astype(np.float32),
               "s": (np.array([3, 50, 700], np.uint32), np.ones(3, np.float32)),
               "t": "python debian package"}
    for f, q in queries.items():
        _assert_same(coll.search(q, k=K, field=f), oracle.search(q, k=K, field=f))
    # hybrid: each field's list merged over the shards, then fused as one collection fuses
    for kw in ({}, {"fusion": "weighted", "weights": {"d": 0.3, "t": 0.7}},
               {"filter": {"n": {"$lt": 40}}, "min_score": {"t": 1.0}}):
        got = coll.search({"d": queries["d"], "t": queries["t"]}, k=K, **kw)
        want = oracle.search({"d": queries["d"], "t": queries["t"]}, k=K, **kw)
        assert got.ids.tolist() == want.ids.tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
        assert got.info["hits"] == want.info["hits"] and "partial" not in got.info
    for f in ("t", "d"):  # one field's min_score, applied after the merge
        bar = float(oracle.search(queries[f], k=K, field=f).scores[4])  # (keeps ~5)
        got = coll.search(queries[f], k=K, field=f, min_score=bar)
        want = oracle.search(queries[f], k=K, field=f, min_score=bar)
        assert got.ids.tolist() == want.ids.tolist() and None in got.ids.tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    with pytest.raises(InvalidArgument, match="min_score"):
        coll.search(queries["t"], k=K, field="t", min_score="high")
    with pytest.raises(InvalidArgument, match="target_recall"):
        coll.search({"d": queries["d"], "t": queries["t"]}, k=K, target_recall=0.9)
    with pytest.raises(pv.errors.UnknownField):
        coll.search({"d": queries["d"], "nope": "x"}, k=K)
    coll.close(remove=True)


class _Remote:
    """A replica's ``get`` called as a collection's."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def get(self, keys: list[Any]) -> list[Any]:
        return ray.get(self.actor.get.remote(keys))


def test_add_shard_while_writes_go_on_keeps_every_item(cluster: Any, data: dict[str, Any],
                                                        tmp_path: Path) -> None:
    """A third shard added to two while a writer upserts and deletes: the new shard takes
    about a third of the items, and the final content equals the writer's model (no item
    lost, none left twice). A move interrupted after one batch resumes on reopening."""
    rdb = connect_ray(tmp_path / "ray")
    coll = _filled(rdb, "grow", data, shards=2)
    model = {k: p for k, p in zip(data["ids"], data["payloads"], strict=True)}
    stop = threading.Event()
    errors: list[BaseException] = []

    stable = data["ids"][2_000:]  # never written again: always there

    def writer() -> None:
        rng = np.random.default_rng(5)
        try:
            while not stop.is_set():
                pick = [int(i) for i in rng.choice(2_500, 20, replace=False)]
                pick = [i if i < 2_000 else N + i for i in pick]
                keys = [f"d{i}" for i in pick]
                if rng.random() < 0.3:
                    coll.delete(keys[:5])
                    for key in keys[:5]:
                        model.pop(key, None)
                else:
                    pays = [{"section": "moved", "n": i, "t": time.time()} for i in pick]
                    coll.upsert(keys, {"v": data["x"][[i % N for i in pick]]}, pays)
                    model.update(zip(keys, pays, strict=True))
                    # read-your-writes while moving: no older copy left on the old shard
                    assert [item.payload for item in coll.get(keys)] == pays
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    def reader() -> None:
        rng = np.random.default_rng(6)
        try:
            while not stop.is_set():
                keys = [stable[int(i)] for i in rng.choice(len(stable), 50, replace=False)]
                assert all(item is not None for item in coll.get(keys))
                res = coll.search(data["x"][int(rng.integers(2_000, N))], k=K)
                got = [i for i in res.ids if i is not None]
                assert len(got) == K == len(set(got)) and "partial" not in res.info
                seen.append(res)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    seen: list[Any] = []
    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert coll.add_shard() == "s2"
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(seen) > 5
    assert sorted(coll.find(), key=str) == sorted(model, key=str) and len(coll) == len(model)
    got = coll.get(list(model))
    assert all(item.payload == model[item.id] for item in got)
    held = {s: coll._read_each("ids", (), [s])[s] for s in coll.ring.shards}
    assert all(coll.ring.shard_of(key) == s for s, keys in held.items() for key in keys)
    assert 0.2 < len(held["s2"]) / len(model) < 0.5 and sum(map(len, held.values())) == len(
        model)
    # interrupted after one batch, then reopened: the move resumes
    assert coll.add_shard(limit=1) == "s3" and coll.info()["moving"] is not None
    assert sorted(coll.find(), key=str) == sorted(model, key=str)  # none lost or twice
    coll.close()
    with pytest.raises(pv.errors.CollectionClosed):
        coll.get([0])
    again = rdb.get_collection("grow")
    assert again.info()["moving"] is None and len(again.ring.shards) == 4
    assert sorted(again.find(), key=str) == sorted(model, key=str)
    assert all(item.payload == model[item.id] for item in again.get(list(model)))
    again.close(remove=True)


def test_losing_a_node_under_read_and_write_load_with_two_replicas(
        cluster: Any, data: dict[str, Any], tmp_path: Path) -> None:
    """Two replicas a shard: a worker node removed while one thread searches and another
    upserts; every acknowledged write is there, searches keep answering whole (no
    ``partial``); ``repair`` brings each shard back to two replicas; a shard whose replicas
    are all gone is named in ``info["partial"]`` and its writes raise."""
    c, workers = cluster
    rdb = connect_ray(tmp_path / "ray", timeout=30)
    coll = _filled(rdb, "safe", data, shards=3, replicas=2)
    acked: dict[str, dict[str, Any]] = {}
    stop = threading.Event()
    errors: list[BaseException] = []
    answers: list[Any] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                keys = [f"w{i + j}" for j in range(10)]
                pays = [{"section": "w", "n": i + j} for j in range(10)]
                coll.upsert(keys, {"v": data["x"][(i % 3_000):(i % 3_000) + 10]}, pays)
                acked.update(zip(keys, pays, strict=True))  # acknowledged
                i += 10
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def reader() -> None:
        try:
            while not stop.is_set():
                res = coll.search(data["q"][len(answers) % NQ], k=K)
                answers.append((sum(i is not None for i in res.ids), res.info.get("partial")))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    lost = workers[0]
    c.remove_node(lost)
    time.sleep(2.0)
    deadline = time.monotonic() + 60  # until the cluster says so (repair picks live nodes)
    while any(n["NodeID"] == lost.node_id and n["Alive"] for n in ray.nodes()):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert answers and all(n == K and p is None for n, p in answers), answers[-5:]
    assert len(acked) > 0
    got = coll.get(list(acked))
    assert all(item is not None and item.payload == acked[item.id] for item in got)
    assert any(not r["alive"] for reps in coll.replicas().values() for r in reps)
    made = coll.repair()
    assert sum(made.values()) >= 1
    assert all(sum(r["alive"] for r in reps) == 2 for reps in coll.replicas().values())
    assert len(coll) == N + len(acked)
    # every replica of one shard gone: searches say so; its writes raise
    victim = "s1"
    for rep in coll._replicas[victim]:
        ray.kill(rep.actor)
        deadline = time.monotonic() + 30  # ray.kill returns at once: until calls fail
        while True:
            try:
                ray.get(rep.actor.count.remote(), timeout=30)
            except ray.exceptions.RayActorError:
                break
            assert time.monotonic() < deadline, "a killed replica still answers"
            time.sleep(0.2)
    res = coll.search(data["q"][0], k=K)
    assert res.info["partial"] == [victim] and len(res.ids) == K
    on_victim = next(f"z{i}" for i in range(1_000) if coll.ring.shard_of(f"z{i}") == victim)
    with pytest.raises(ShardUnavailable) as info:
        coll.upsert([on_victim], {"v": data["x"][:1]})
    assert info.value.shards == (victim,)
    coll.close(remove=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own settings warn
def test_ingest_reads_embeds_and_writes_every_record(cluster: Any, tmp_path: Path) -> None:
    """Ray Data ingest of a JSONL file: every record embedded by MiniLM in a Ray worker and
    written to its shard, with the other keys as payload; the vectors are the embedder's.
    A Parquet file with a list column likewise (the list a list again in the payload)."""
    extra("models", "sentence_transformers")
    import json

    from polyvec.distributed import ingest
    from polyvec.embed import minilm

    folder = shared_data("debian-minilm", "docs.jsonl")
    with open(folder / "docs.jsonl") as f:
        docs = [json.loads(next(f)) for _ in range(300)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{d['id']}", "text": d["synopsis"],
                                        "section": d["section"]}) + "\n" for d in docs))
    rdb = connect_ray(tmp_path / "ray")
    coll = rdb.create_collection("ingested", {"v": pv.Dense(384)}, shards=2)
    assert ingest(coll, str(path), minilm, batch_size=64) == 300 and len(coll) == 300
    got = coll.get([f"p{d['id']}" for d in docs[:8]])
    want = minilm().embed_documents([d["synopsis"] for d in docs[:8]])
    np.testing.assert_allclose(np.stack([g.vectors["v"] for g in got]), want, atol=1e-4)
    assert got[3].payload == {"text": docs[3]["synopsis"], "section": docs[3]["section"]}
    import pyarrow as pa
    import pyarrow.parquet as pq

    more = [{"id": f"q{i}", "text": d["description"][:200], "tags": [d["section"], "x"]}
            for i, d in enumerate(docs[:40])]
    pq.write_table(pa.Table.from_pylist(more), tmp_path / "more.parquet")
    assert ingest(coll, [str(tmp_path / "more.parquet")], minilm, payload_keys=["tags"]) == 40
    assert len(coll) == 340 and coll.get(["q5"])[0].payload == {"tags": [docs[5]["section"],
                                                                         "x"]}
    coll.close(remove=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own settings warn
def test_ingest_and_texts_use_the_collections_embedders(cluster: Any, tmp_path: Path) -> None:
    """The embedders attached to a sharded collection (a built-in dense model, rebuilt from
    its spec in the Ray worker; a token model, sent there as it is) embed an ingest, and a
    BM25 field takes the texts; ``add_texts`` and ``search_text`` embed on the driver. The
    recorded model survives reopening and refuses another."""
    extra("models", "sentence_transformers")
    import json

    from polyvec.distributed import ingest
    from polyvec.embed import minilm, minilm_tokens
    from polyvec.errors import ModelMismatch
    from polyvec.spec import ModelSpec

    folder = shared_data("debian-minilm", "docs.jsonl")
    with open(folder / "docs.jsonl") as f:
        docs = [json.loads(next(f)) for _ in range(120)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": d["id"], "text": d["synopsis"],
                                        "section": d["section"]}) + "\n" for d in docs))
    rdb = connect_ray(tmp_path / "ray")
    fields = {"v": pv.Dense(384), "tok": pv.Multi(64), "t": pv.BM25()}
    coll = rdb.create_collection("texts", fields, shards=2)
    with pytest.raises(InvalidArgument, match="no embedder"):
        ingest(coll, str(path))
    dense, tokens = minilm(), minilm_tokens(dim=64)
    coll.use_embedder("v", dense)
    coll.use_embedder("tok", tokens)
    assert ingest(coll, str(path), batch_size=50) == 120 and len(coll) == 120
    texts = [d["synopsis"] for d in docs[:6]]
    got = coll.get([d["id"] for d in docs[:6]])
    np.testing.assert_allclose(np.stack([g.vectors["v"] for g in got]),
                               dense.embed_documents(texts), atol=1e-4)
    for g, want in zip(got, tokens.embed_documents(texts), strict=True):
        np.testing.assert_allclose(g.vectors["tok"], want, atol=1e-4)
    assert got[0].payload == {"text": texts[0], "section": docs[0]["section"]}
    oracle = pv.connect(tmp_path / "one").create_collection("texts", fields)
    oracle.use_embedder("v", dense)
    oracle.use_embedder("tok", tokens)
    held = coll.get([d["id"] for d in docs])  # (as stored: scored alike to the last ulp)
    oracle._restore([h.id for h in held], {"v": np.stack([h.vectors["v"] for h in held]),
                                           **{f: [h.vectors[f] for h in held]
                                              for f in ("tok", "t")}},
                    [h.payload for h in held])
    coll.add_texts(["a tool to read the Debian package index"], [10**6], upsert=True)
    oracle.add_texts(["a tool to read the Debian package index"], [10**6], upsert=True)
    for query in ("package index reader", ["python library", "sound server"]):
        # (hybrid weighted: RRF's ranks among BM25's many tied scores follow insertion order
        # in one collection and shard order here, and move the fused scores by a rank)
        for kw in ({"field": "v"}, {"field": "tok"}, {"field": "t"},
                   {"fields": ["v", "t"], "fusion": "weighted"}):
            a, b = coll.search_text(query, k=5, **kw), oracle.search_text(query, k=5, **kw)
            for i in range(len(query) if isinstance(query, list) else 1):
                _assert_same(a[i] if isinstance(query, list) else a,
                             b[i] if isinstance(query, list) else b)

    class Other:
        spec = ModelSpec("other-model", "1", 384)

    with pytest.raises(ModelMismatch):
        coll.use_embedder("v", Other())
    coll.close()
    again = rdb.get_collection("texts")
    assert again.model_of("v") == dense.spec and again.embedders() == {}
    with pytest.raises(ModelMismatch):
        again.use_embedder("v", Other())
    again.close(remove=True)
