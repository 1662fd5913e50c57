"""An add commits its catalog transaction without an fsync: the growing chunk's log record,
fsync'd first, is the durable copy of the batch (format 3). A power loss can lose the latest
such commits; the next writer replays every complete chunk past the registered end and cuts off
the rest. These tests make the states a power loss or a crash leaves and reopen:

- a lost commit (the catalog files as they were before the add, the chunk on disk): the
  acknowledged batch is back, upserts included, and the collection takes writes after it;
- a torn or damaged chunk past the end: it is cut off and none of its rows appear;
- an add that fails after its chunk was written: the chunk is cut off at once (never replayed);
- a SIGKILL between the chunk's fsync and the commit: the in-flight batch appears whole.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import polyvec as pv
from polyvec.engine import hooks
from polyvec.storage.catalog import FORMAT_VERSION
from polyvec.storage.growing import GrowingLog, LogRecord

SRC = Path(__file__).resolve().parents[1] / "src"
DIM = 8


def _vecs(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _create(folder: Path) -> None:
    with pv.connect(folder) as db:
        coll = db.create_collection("c", {"v": pv.Dense(DIM, metric="l2")}, indexed=["tag"])
        coll.add(list(range(10)), _vecs(0, 10), [{"tag": "a", "i": i} for i in range(10)])


def _catalog_files(folder: Path) -> list[Path]:
    return sorted((folder / "c").glob("catalog.sqlite*"))


def _save_catalog(folder: Path, to: Path) -> None:
    to.mkdir()
    for p in _catalog_files(folder):
        shutil.copy2(p, to / p.name)


def _restore_catalog(folder: Path, saved: Path) -> None:
    for p in _catalog_files(folder):
        p.unlink()
    for p in saved.iterdir():
        shutil.copy2(p, folder / "c" / p.name)


def _growing(folder: Path) -> tuple[GrowingLog, Path]:
    log = GrowingLog(folder / "c")
    files = sorted(log.folder.iterdir())
    assert len(files) == 1
    return log, files[0]


def test_an_add_whose_commit_was_lost_is_replayed_from_its_chunk(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    _create(folder)
    _save_catalog(folder, tmp_path / "before")
    with pv.connect(folder) as db:  # acknowledged: an upsert of 3 items and 2 new ones
        db.get_collection("c").upsert([3, 4, 5, "x", "y"], _vecs(1, 5),
                                      [{"tag": "b", "i": j} for j in range(5)])
    # a power loss that lost the add's commit (it made no fsync): the catalog as before it
    _restore_catalog(folder, tmp_path / "before")
    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        assert len(coll) == 12
        assert sorted(map(str, coll)) == sorted(map(str, [*range(10), "x", "y"]))
        assert coll.get(["x"])[0].payload == {"tag": "b", "i": 3}
        assert coll.get([4])[0].payload == {"tag": "b", "i": 1}
        got = coll.search(_vecs(1, 5)[2], k=1).ids[0]
        assert got == 5
        assert sorted(map(str, coll.search(np.zeros(DIM, np.float32), k=12,
                                           filter={"tag": "b"}).ids[:5])) == \
            sorted(map(str, [3, 4, 5, "x", "y"]))
        coll.add(["z"], _vecs(2, 1), [{"tag": "c"}])  # appends after the replayed chunk
    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        assert len(coll) == 13 and coll.search(_vecs(2, 1)[0], k=1).ids[0] == "z"
        coll.flush()
        assert len(coll) == 13 and coll.search(_vecs(1, 5)[4], k=1).ids[0] == "y"


def _unregistered_chunk(folder: Path, keys: list[int | str]) -> tuple[GrowingLog, Path, int]:
    """Append a complete chunk past the registered end, as a writer that crashed before its
    commit leaves it; returns the log, the file and the registered end."""
    log, path = _growing(folder)
    end = path.stat().st_size
    with pv.connect(folder) as db:
        first_seq = len(db.get_collection("c"))  # seqs 0..9 are taken, nothing deleted
    log.append(int(path.stem), end, {"v": _vecs(9, len(keys)).tobytes()},
               LogRecord(first_seq, keys, ['{"tag":"t"}'] * len(keys), False))
    return log, path, end


@pytest.mark.parametrize("damage", ["torn", "flipped", "garbage"])
def test_a_torn_or_damaged_tail_is_cut_off_and_its_rows_never_appear(
        tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "db"
    _create(folder)
    _, path, end = _unregistered_chunk(folder, ["t1", "t2", "t3"])
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if damage == "torn":  # the write stopped part-way
            f.truncate(size - 5)
        elif damage == "flipped":  # a byte of the vectors never reached the disk as written
            f.seek(size - 3)
            b = f.read(1)
            f.seek(size - 3)
            f.write(bytes([b[0] ^ 0xFF]))
        else:  # not a chunk at all
            f.truncate(end)
            f.seek(end)
            f.write(os.urandom(200))
    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        assert len(coll) == 10 and "t1" not in set(coll)
        assert path.stat().st_size == end  # cut off by the writer's open
        coll.add(["t1"], _vecs(3, 1))  # the ids are free; the append lands at the end
        assert len(coll) == 11
    with pv.connect(folder) as db:
        assert len(db.get_collection("c")) == 11


def test_a_complete_unregistered_chunk_is_an_in_flight_batch_and_appears_whole(
        tmp_path: Path) -> None:
    folder = tmp_path / "db"
    _create(folder)
    _unregistered_chunk(folder, ["t1", "t2", "t3"])
    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        assert len(coll) == 13 and {"t1", "t2", "t3"} <= set(coll)


def test_a_chunk_that_does_not_continue_the_seqs_is_not_replayed(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    _create(folder)
    log, path = _growing(folder)
    end = path.stat().st_size
    log.append(int(path.stem), end, {"v": _vecs(9, 2).tobytes()},
               LogRecord(500, ["q1", "q2"], ["{}", "{}"], False))
    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        assert len(coll) == 10 and path.stat().st_size == end


def test_an_add_that_fails_after_its_chunk_is_written_cuts_it_off(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    _create(folder)
    _, path = _growing(folder)
    end = path.stat().st_size

    def fail(name: str) -> None:
        raise RuntimeError(name)

    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        with hooks.armed("write.before_commit", fail), pytest.raises(RuntimeError):
            coll.add(["f1", "f2"], _vecs(4, 2), [{"tag": "f"}] * 2)
        assert path.stat().st_size == end and len(coll) == 10
        # this handle's mirror forgot the batch too
        assert coll.search(_vecs(4, 2)[0], k=1).ids[0] != "f1"
        assert coll.search(_vecs(4, 2)[0], k=3, filter={"tag": "f"}).ids.tolist() == [None] * 3
        assert coll.get(["f1"]) == [None]
        coll.add(["f1"], _vecs(4, 1), [{"tag": "f"}])  # and it takes the batch again
        assert coll.search(_vecs(4, 1)[0], k=1, filter={"tag": "f"}).ids[0] == "f1"
    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        assert len(coll) == 11 and "f2" not in set(coll)


WRITER = """
import sys
import numpy as np
import polyvec as pv
coll = pv.connect(sys.argv[1]).get_collection("c")
x = np.random.default_rng(5).standard_normal((4, 8)).astype(np.float32)
coll.add(["k1", "k2", "k3", "k4"], x, [{"tag": "k"}] * 4)
print("acknowledged")
"""


def test_sigkill_between_the_chunk_fsync_and_the_commit(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    _create(folder)
    env = dict(os.environ, POLYVEC_FAULT="write.before_commit")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", WRITER, str(folder)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert out.stdout == ""  # never acknowledged: it may appear, but whole
    with pv.connect(folder) as db:
        coll = db.get_collection("c")
        assert len(coll) == 14
        x = np.random.default_rng(5).standard_normal((4, 8)).astype(np.float32)
        assert coll.search(x[2], k=1).ids[0] == "k3"
        assert coll.get(["k4"])[0].payload == {"tag": "k"}


def test_a_format_2_folder_is_marked_current_by_its_first_add(tmp_path: Path) -> None:
    """A format-2 folder is marked (at least 3: its chunks carry log records, which a format-2
    writer would cut off) by the add that writes the first such chunk."""
    golden = Path(__file__).resolve().parent / "fixtures" / "golden" / "v2" / "db"
    folder = tmp_path / "db"
    shutil.copytree(golden, folder)
    with pv.connect(folder) as db:
        coll = db.get_collection("golden")
        n = len(coll)
        meta = coll._store.catalog.read_meta()
        assert meta["format_version"] == 2
        ids = [f"new-{i}" for i in range(3)]
        x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        vecs = {"dense": x, "half": np.zeros((3, 8), np.float16),
                "tokens": [x[i:i + 1, :8] / np.linalg.norm(x[i, :8]) for i in range(3)]}
        coll.add(ids, vecs)
        assert coll._store.catalog.read_meta()["format_version"] == FORMAT_VERSION >= 3
    with pv.connect(folder) as db:
        coll = db.get_collection("golden")
        assert len(coll) == n + 3 and coll.search(x[1], k=1, field="dense").ids[0] == "new-1"


@pytest.mark.parametrize("payloads", [['{"a":1}', '{"b":"ü ☃"}', "{}"],
                                      ['{"a":1}', '{"b":"raw\nnewline"}', "{}"]])
def test_a_log_record_round_trips(tmp_path: Path, payloads: list[str]) -> None:
    log = GrowingLog(tmp_path)
    keys: list[int | str] = [7, "line\nbreak ✓", -(2 ** 63)]
    parts = {"v": _vecs(6, 3).tobytes(), "w": b"xyz"}
    layout = log.append(0, 0, parts, LogRecord(40, keys, payloads, True))
    (chunk,) = log.tail(0, 0)
    assert chunk.record == LogRecord(40, keys, payloads, True)
    assert chunk.parts == layout and chunk.offset == 0
    assert chunk.end == log.size(0)
    assert log.tail(0, chunk.end) == []
