"""A driver joining a Ray cluster started by ``ray start`` (the README's cluster commands), run
by ``tests/test_ray_cli.py`` in its own process: ``python ray_cli_driver.py ROOT NODES``.

It waits for ``NODES`` live nodes, makes a sharded collection of three shards of two replicas,
checks its exact search against one embedded collection, adds a shard, and prints ``ok``."""

from __future__ import annotations

import sys
import time

import numpy as np
import ray

import polyvec as pv
from polyvec.distributed import connect_ray

root, want = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 90
while True:  # (the head may still be starting)
    try:
        rdb = connect_ray(root, address="auto", log_to_driver=False)
        break
    except ConnectionError:
        assert time.monotonic() < deadline, "no head came up"
        ray.shutdown()
        time.sleep(0.5)
while len([n for n in ray.nodes() if n["Alive"]]) < want:
    assert time.monotonic() < deadline, f"only {ray.nodes()} joined"
    time.sleep(0.5)
rng = np.random.default_rng(0)
x = rng.standard_normal((2_000, 32)).astype(np.float32)
pays = [{"n": i} for i in range(2_000)]
coll = rdb.create_collection("cli", {"v": pv.Dense(32)}, indexed=["n"], shards=3, replicas=2)
coll.add(list(range(2_000)), {"v": x}, pays)
oracle = pv.connect(f"{root}/one").create_collection("cli", {"v": pv.Dense(32)}, indexed=["n"])
oracle.add(list(range(2_000)), {"v": x}, pays)
q = rng.standard_normal((10, 32)).astype(np.float32)
for flt in (None, {"n": {"$lt": 500}}):
    got, one = coll.search(q, k=10, filter=flt), oracle.search(q, k=10, filter=flt)
    assert got.ids.tolist() == one.ids.tolist(), (got.ids, one.ids)
    np.testing.assert_allclose(got.scores, one.scores, atol=1e-5)
nodes = {r["node"] for reps in coll.replicas().values() for r in reps}
assert len(nodes) == want, nodes
assert coll.add_shard() == "s3" and len(coll) == 2_000
assert sorted(coll.find()) == list(range(2_000))
rdb.drop_collection("cli")
print("ok", len(nodes))
