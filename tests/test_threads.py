"""Threads sharing one collection handle: searches run on published snapshots, without the
collection's lock, while a writer thread adds, upserts, deletes, flushes and compacts.

Every search must see one consistent state: the anchors (items never deleted) are found
through every seal and compaction, no id appears twice in a result (a row visible both in
the growing buffer and in the segment it was sealed into), every id returned was written
before the search ended, scores come best first, and nothing raises.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import polyvec as pv
from polyvec.filters import matches, parse_filter

DIM = 16
ANCHORS = 20


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("filtered", [False, True])
def test_searches_see_a_consistent_state_while_a_writer_writes(tmp_path, filtered) -> None:
    rng = np.random.default_rng(7)
    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", vectors={"v": pv.Dense(DIM)}, indexed=["g"],
                                segment_rows=60)
    anchors = _unit(rng, ANCHORS)
    coll.add([f"a{i}" for i in range(ANCHORS)], anchors, [{"g": 1}] * ANCHORS)
    written = {f"a{i}" for i in range(ANCHORS)}  # ids added before (or while) a search
    stop = threading.Event()
    errors: list[BaseException] = []
    checked = [0]

    def writer() -> None:
        wrng = np.random.default_rng(11)
        try:
            for step in range(120):
                ids = [f"x{step}_{j}" for j in range(8)]
                written.update(ids)  # before the add: a search may see it from now on
                coll.add(ids, _unit(wrng, 8), [{"g": int(j % 2)} for j in range(8)])
                if step % 3 == 1:
                    coll.upsert(ids[:2], _unit(wrng, 2), [{"g": 1}, {"g": 0}])
                if step % 2 == 1:
                    coll.delete([f"x{step - 1}_{j}" for j in range(5)])
                if step % 25 == 24:
                    coll.flush()
                if step % 40 == 39:
                    coll.compact()
        except BaseException as e:  # reported by the test
            errors.append(e)
        finally:
            stop.set()

    def reader(seed: int) -> None:
        rrng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                i = int(rrng.integers(ANCHORS))
                res = coll.search(anchors[i], k=10, filter={"g": 1} if filtered else None)
                ids = [x for x in res.ids.tolist() if x is not None]
                assert ids[0] == f"a{i}", (ids, i)
                assert float(res.scores[0]) == pytest.approx(1.0, abs=1e-5)
                assert len(ids) == len(set(ids)), ids
                assert set(ids) <= written, set(ids) - written
                assert np.all(np.diff(res.scores) <= 1e-6)
                checked[0] += 1
        except BaseException as e:
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=reader, args=(s,)) for s in (1, 2, 3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[0]
    assert checked[0] > 10
    # the final state: every live item is found by itself
    final = coll.search(anchors, k=1)
    assert final.ids[:, 0].tolist() == [f"a{i}" for i in range(ANCHORS)]
    db.close()


@pytest.mark.parametrize("flt", [None, {"g": 1}, {"g": {"$in": [0, 1]}, "h": {"$gt": 5}},
                                 {"u": {"$gte": 10}, "g": 2}])  # u: no column, SQL
def test_search_does_not_wait_for_a_writer_of_the_same_handle(tmp_path, flt) -> None:
    """A search answers from the published snapshot while this handle's writer holds the
    collection's mutex (the old code queued every search behind it; filtered ones until the
    writer's seal, merge or index build was over): a filter the indexed columns answer is
    evaluated on the snapshot's frozen columns, one on other paths with SQL on the thread's
    own catalog connection; both give the exact filtered answer."""
    rng = np.random.default_rng(3)
    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", vectors={"v": pv.Dense(DIM)}, indexed=["g", "h"])
    x = _unit(rng, 50)
    payloads = [{"g": i % 3, "h": i, "u": i} for i in range(50)]
    coll.add(list(range(50)), x, payloads)
    coll.delete([1, 4])
    got: list[object] = []
    done = threading.Event()
    with coll._store.mutex:  # a writer of this handle mid-commit
        t = threading.Thread(target=lambda: (got.append(coll.search(x[0], k=50, filter=flt)),
                                             got.append(coll.select(flt)), done.set()))
        t.start()
        assert done.wait(30), "the search waited for the writer"
    t.join()
    want = [i for i in range(50) if i not in (1, 4) and matches(parse_filter(flt),
                                                               payloads[i])]
    ranked = np.argsort(-(x[want] @ x[0]), kind="stable")
    assert [i for i in got[0].ids.tolist() if i is not None] == [want[j] for j in ranked]
    assert got[1].tolist() == want  # seqs: the items were added in id order, one seq each
    db.close()


def test_len_iteration_and_info_do_not_wait_for_a_writer_of_the_same_handle(tmp_path
                                                                            ) -> None:
    """``len``, iteration, ``info`` and ``index_info`` read the published snapshot (they used
    to refresh under the mutex: a writer's seal or index build, or the open's background
    integrity check, held them up)."""
    rng = np.random.default_rng(5)
    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", vectors={"v": pv.Dense(DIM)})
    coll.add([f"s{i}" for i in range(30)], _unit(rng, 30))
    coll.add(list(range(30, 40)), _unit(rng, 10))  # mixed ids
    coll.upsert(["s3"], _unit(rng, 1))
    coll.delete(["s7", 31])
    got: list[object] = []
    done = threading.Event()
    with coll._store.mutex:
        t = threading.Thread(target=lambda: (got.extend([len(coll), list(coll),
                                                         coll.info()["count"],
                                                         coll.index_info()]), done.set()))
        t.start()
        assert done.wait(30), "len/iter/info waited for the writer"
    t.join()
    want = [f"s{i}" for i in range(30) if i not in (3, 7)] + \
        [i for i in range(30, 40) if i != 31] + ["s3"]
    assert got == [len(want), want, len(want), {}]
    db.close()


def test_get_does_not_wait_for_a_writer_and_falls_back_when_the_catalog_moved(tmp_path
                                                                               ) -> None:
    """``get`` reads payloads on the thread's own catalog connection when it sees the
    snapshot's state, vectors from the snapshot (sealed and growing rows), without the mutex;
    a snapshot the catalog has moved past is refused (the caller reads under the mutex)."""
    rng = np.random.default_rng(9)
    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", vectors={"v": pv.Dense(DIM)}, segment_rows=20)
    x = _unit(rng, 30)
    payloads = [{"i": i, "s": "ü" * (i % 3)} for i in range(30)]
    coll.add(list(range(20)), x[:20], payloads[:20])  # sealed
    coll.wait_for_maintenance()
    coll.add(list(range(20, 30)), x[20:], payloads[20:])  # growing
    coll.delete([4])
    assert coll.info()["segments"] and coll.info()["growing_rows"]  # rows of both kinds
    got: list[object] = []
    done = threading.Event()
    with coll._store.mutex:
        t = threading.Thread(target=lambda: (got.extend(coll.get([3, 25, 4, "nope"])),
                                             got.append((3 in coll, 4 in coll)), done.set()))
        t.start()
        assert done.wait(30), "get waited for the writer"
    t.join()
    assert [None if g is None else (g.id, g.payload) for g in got[:4]] == \
        [(3, {"i": 3, "s": "ü" * 0}), (25, {"i": 25, "s": "ü"}), None, None]
    assert got[4] == (True, False)
    np.testing.assert_allclose(got[0].vectors["v"], x[3], rtol=1e-6)
    np.testing.assert_allclose(got[1].vectors["v"], x[25], rtol=1e-6)
    st = coll._store
    snap = st.current()
    assert st.items_at(snap, [3]) is not None
    other = pv.connect(tmp_path / "db").get_collection("c")
    other.upsert([3], x[:1], [{"i": -3}])  # another handle commits: the catalog moves on
    assert st.items_at(snap, [3]) is None
    assert coll.get([3])[0].payload == {"i": -3}  # a fresh snapshot (or the locked path)
    other._store.close()
    db.close()


def test_reader_connections_close_with_their_threads_and_the_catalog(tmp_path) -> None:
    """Each thread that reads without the mutex opens its own catalog connection; it must
    close when the thread ends (a server's short-lived threads), and all with the catalog."""
    import contextlib
    import gc
    import os

    def open_catalogs() -> int:
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor is gone
                target = os.readlink(f"/proc/self/fd/{fd}")  # this test's -wal, -shm too
                n += target.startswith(str(tmp_path.resolve())) and "catalog.sqlite" in target
        return n

    db = pv.connect(tmp_path / "db")
    coll = db.create_collection("c", vectors={"v": pv.Dense(DIM)})
    coll.add([1], _unit(np.random.default_rng(0), 1))
    coll._store.wait_checks()  # the open's integrity check has a connection of its own
    if coll._store.tidying is not None:
        coll._store.tidying.join(60)

    def read_on_a_thread() -> None:
        t = threading.Thread(target=lambda: coll.get([1]))
        t.start()
        t.join()

    # SQLite keeps a closed connection's descriptor open for reuse while another connection
    # of the process locks the file (the writer's, in WAL mode, always): whether the open's
    # integrity check left one depends on timing, so one thread's read comes first
    read_on_a_thread()
    gc.collect()
    before = open_catalogs()
    for _ in range(20):
        read_on_a_thread()
    # a thread's locals may go a moment after join returns; and SQLite defers closing a
    # connection's file while another connection of the process holds a lock on it, until
    # that one unlocks: each round reads through the writer's connection
    catalog = coll._store.catalog
    deadline = time.monotonic() + 10
    while open_catalogs() != before and time.monotonic() < deadline:
        gc.collect()
        catalog.guard(catalog.read_meta)
        time.sleep(0.05)
    assert open_catalogs() == before
    coll.get([1])  # this thread's connection stays open until the catalog closes
    assert open_catalogs() > before
    db.close()
    assert open_catalogs() == 0
