"""Damaged files: opening the damaged collection raises ``CorruptFile``, the others are untouched.

Every case starts from a copy of one template database folder holding THREE collections, each
with sealed segments (some rows tombstoned) AND growing rows, a dense field and a multi-vector
field. One collection is damaged; then, with a fresh ``connect``:

- ``get_collection(damaged)`` raises ``CorruptFile`` whose ``filename`` names the damaged file
  (never another exception, never a crash or a hang: a watchdog aborts the run after 60 s);
- the two other collections open through the same ``Database`` and hold exactly their
  original ids, payloads and vectors, and search works on them.

Random byte flips anywhere in ``catalog.sqlite`` may hit bytes SQLite never reads (free
space, unused header fields), so there the rule is "``CorruptFile``, or exactly the original
content" - never silently different data - and a good share of the flips must be detected.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec
from polyvec.errors import CorruptFile

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

from durability_stream import diff_against_model  # noqa: E402

NAMES = ("alpha", "beta", "gamma")
CATALOG = "catalog.sqlite"
Model = dict[Any, tuple[dict[str, Any], np.ndarray, np.ndarray]]


# -- the template database ------------------------------------------------------------------------

def _items(rng: np.random.Generator, name: str, nums: list[int], version: int
           ) -> tuple[list[Any], dict[str, Any], list[dict[str, Any]]]:
    ids = [n if n % 2 else f"id-{n}" for n in nums]
    vectors = {"d": rng.standard_normal((len(nums), 8)).astype(np.float32),
               "t": [rng.standard_normal((int(rng.integers(1, 6)), 4)).astype(np.float32)
                     for _ in nums]}
    payloads = [{"tag": ["red", "green", "blue"][n % 3], "n": n, "x": float(rng.random()),
                 "marker": f"MARK-{name}-{n:04d}-v{version}", "text": "héllo wörld ✓",
                 "nested": {"l": [n, n + 1], "none": None}} for n in nums]
    return ids, vectors, payloads


def build_collection(db: Any, name: str, seed: int) -> Model:
    coll = db.create_collection(name, vectors={"d": polyvec.Dense(8, metric="l2"),
                                               "t": polyvec.Multi(4, metric="dot")},
                                indexed=["tag"], segment_rows=40)
    rng = np.random.default_rng(seed)
    model: Model = {}

    def write(op: str, nums: list[int], version: int) -> None:
        ids, vectors, payloads = _items(rng, name, nums, version)
        getattr(coll, op)(ids, vectors=vectors, payloads=payloads)
        for j, k in enumerate(ids):
            model[k] = (payloads[j], vectors["d"][j], vectors["t"][j])

    def delete(nums: list[int]) -> None:
        ids = [n if n % 2 else f"id-{n}" for n in nums]
        coll.delete(ids)
        for k in ids:
            model.pop(k, None)

    write("add", list(range(0, 30)), 0)
    write("add", list(range(30, 60)), 0)  # 60 growing rows >= 40: a seal starts
    # wait for it: a background seal still running under the writes below would seal a
    # different set of rows, and the merge after the next seal could leave one segment
    coll.flush()
    write("upsert", list(range(0, 60, 6)), 1)  # tombstones in the first segment
    delete(list(range(1, 60, 7)))
    write("add", list(range(60, 90)), 0)
    coll.flush()  # sealed again
    write("add", list(range(90, 108)), 0)  # growing rows stay growing
    write("upsert", [91, 95, 61], 1)
    delete([92, 2])
    info = coll.info()
    assert len(info["segments"]) >= 2 and info["growing_rows"] >= 10, info
    return model


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Model]]:
    folder = tmp_path_factory.mktemp("template") / "db"
    db = polyvec.connect(folder)
    models = {name: build_collection(db, name, seed) for seed, name in enumerate(NAMES)}
    db.close()
    for name in NAMES:
        # closing the last connection checkpoints the WAL: everything is in catalog.sqlite now
        wal = folder / name / f"{CATALOG}-wal"
        assert not wal.exists() or wal.stat().st_size == 0
        with sqlite3.connect(folder / name / CATALOG) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert not wal.exists() or wal.stat().st_size == 0
    return folder, models


@pytest.fixture
def fresh(template: tuple[Path, dict[str, Model]], tmp_path: Path
          ) -> Callable[[], Path]:
    """Make a new copy of the template database folder on each call."""
    src, _ = template
    count = iter(range(10**6))

    def make() -> Path:
        dst = tmp_path / f"db{next(count)}"
        shutil.copytree(src, dst)
        return dst

    return make


# -- helpers --------------------------------------------------------------------------------------

@contextmanager
def watchdog(seconds: float = 60) -> Iterator[None]:
    """Abort the whole run (with tracebacks) rather than hang forever."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def segment_files(coll_dir: Path) -> list[Path]:
    files = sorted((coll_dir / "segments").glob("*/*.npy"))
    assert len(files) >= 8  # >= 2 segments x (seqs, d, t.tokens, t.offsets)
    return files


def flip(path: Path, pos: int, mask: int = 0xFF) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        (b,) = f.read(1)
        f.seek(pos)
        f.write(bytes([b ^ mask]))


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def check_search(coll: Any, model: Model) -> None:
    key = next(iter(model))
    _, dense, tokens = model[key]
    res = coll.search(dense, k=3, field="d")
    assert res.ids[0] == key
    res = coll.search(tokens, k=3, field="t", filter={"tag": model[key][0]["tag"]})
    assert all(i in model and model[i][0]["tag"] == model[key][0]["tag"] for i in res.ids)


_searched: set[str] = set()


def assert_damaged_and_others_intact(folder: Path, damaged: str, models: dict[str, Model],
                                     expect_file: Path | None) -> CorruptFile:
    with watchdog():
        db = polyvec.connect(folder)
        try:
            with pytest.raises(CorruptFile) as exc_info:  # at open, or by a full check
                db.get_collection(damaged).verify()
            err = exc_info.value
            if expect_file is not None:
                assert Path(err.filename) == expect_file, err
            else:
                assert Path(err.filename).is_relative_to(folder / damaged), err
            assert set(db.list_collections()) >= set(NAMES) - {damaged}
            for name in NAMES:
                if name == damaged:
                    continue
                coll = db.get_collection(name)
                assert diff_against_model(coll, models[name]) is None
                test = os.environ.get("PYTEST_CURRENT_TEST", "")
                if test not in _searched:  # searching is slowish: once per test is enough
                    check_search(coll, models[name])
            _searched.add(os.environ.get("PYTEST_CURRENT_TEST", ""))
            # a retry fails the same way: nothing was "repaired" into a different state
            with pytest.raises(CorruptFile):
                polyvec.connect(folder).get_collection(damaged).verify()
        finally:
            db.close()
    return err


def locate(data: bytes, needle: bytes) -> int:
    """The one position of ``needle`` in ``data`` (exactly one copy, so we hit the live row)."""
    pos = data.find(needle)
    assert pos >= 0, needle
    assert data.find(needle, pos + 1) < 0, f"{needle!r} occurs twice"
    return pos


def test_template_is_sound(template: tuple[Path, dict[str, Model]], fresh: Callable[[], Path]
                           ) -> None:
    """Without damage every collection opens with its content (the baseline of the cases)."""
    _, models = template
    folder = fresh()
    db = polyvec.connect(folder)
    try:
        assert db.list_collections() == sorted(NAMES)
        for name in NAMES:
            coll = db.get_collection(name)
            assert diff_against_model(coll, models[name]) is None
            check_search(coll, models[name])
    finally:
        db.close()


# -- segment files --------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["zero", "half", "minus-one-byte"])
def test_truncated_segment_file(template: Any, fresh: Callable[[], Path], how: str) -> None:
    _, models = template
    damaged = "alpha"
    n_files = len(segment_files(fresh() / damaged))
    for i in range(n_files):
        folder = fresh()
        target = segment_files(folder / damaged)[i]
        size = target.stat().st_size
        truncate(target, {"zero": 0, "half": size // 2, "minus-one-byte": size - 1}[how])
        assert_damaged_and_others_intact(folder, damaged, models, target)


def _npy_positions(path: Path) -> dict[str, int]:
    data = path.read_bytes()
    header_end = 10 + int.from_bytes(data[8:10], "little")
    return {"magic": 0, "version": 6, "header-len": 8, "header-dict": 20,
            "header-shape": data.index(b"shape") + 2, "header-end": header_end - 1,
            "data-first": header_end, "data-middle": (header_end + len(data)) // 2,
            "data-last": len(data) - 1}


def test_flipped_bytes_in_segment_file(template: Any, fresh: Callable[[], Path]) -> None:
    """Flip bytes of the .npy header (magic, version, header dict, shape) and of the data."""
    _, models = template
    damaged = "beta"
    n_files = len(segment_files(fresh() / damaged))
    masks = [0xFF, 0x01, 0x80, 0x10]
    for i in range(n_files):
        folder = fresh()
        target = segment_files(folder / damaged)[i]
        for j, (where, pos) in enumerate(_npy_positions(target).items()):
            if pos >= target.stat().st_size:
                continue
            mask = masks[(i + j) % len(masks)]
            flip(target, pos, mask)
            err = assert_damaged_and_others_intact(folder, damaged, models, target)
            assert err.filename, where
            flip(target, pos, mask)  # undo, then damage the next position
        # undone flips leave a good file
        db = polyvec.connect(folder)
        try:
            assert diff_against_model(db.get_collection(damaged), models[damaged]) is None
        finally:
            db.close()


def test_deleted_segment_file(template: Any, fresh: Callable[[], Path]) -> None:
    _, models = template
    damaged = "gamma"
    n_files = len(segment_files(fresh() / damaged))
    for i in range(n_files):
        folder = fresh()
        target = segment_files(folder / damaged)[i]
        target.unlink()
        assert_damaged_and_others_intact(folder, damaged, models, target)


def test_deleted_segment_folder(template: Any, fresh: Callable[[], Path]) -> None:
    _, models = template
    damaged = "alpha"
    folder = fresh()
    seg = sorted((folder / damaged / "segments").iterdir())[0]
    shutil.rmtree(seg)
    assert_damaged_and_others_intact(folder, damaged, models, None)
    # the writer-on-open orphan sweep must not have "repaired" anything by deleting data
    assert len(list((folder / damaged / "segments").iterdir())) >= 1


def test_swapped_segment_files(template: Any, fresh: Callable[[], Path]) -> None:
    """Two same-named files of two segments exchanged: each is a valid .npy, but not its own."""
    _, models = template
    damaged = "beta"
    folder = fresh()
    segs = sorted((folder / damaged / "segments").iterdir())
    a, b = segs[0] / "d.npy", segs[1] / "d.npy"
    tmp = a.with_suffix(".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
    assert_damaged_and_others_intact(folder, damaged, models, None)


# -- catalog.sqlite -------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["zero", "half", "minus-one-page", "minus-one-byte"])
def test_truncated_catalog(template: Any, fresh: Callable[[], Path], how: str) -> None:
    _, models = template
    damaged = "beta"
    folder = fresh()
    target = folder / damaged / CATALOG
    size = target.stat().st_size
    truncate(target, {"zero": 0, "half": size // 2, "minus-one-page": size - 4096,
                      "minus-one-byte": size - 1}[how])
    assert_damaged_and_others_intact(folder, damaged, models, target)


def test_deleted_catalog(template: Any, fresh: Callable[[], Path]) -> None:
    _, models = template
    damaged = "gamma"
    folder = fresh()
    target = folder / damaged / CATALOG
    target.unlink()
    assert_damaged_and_others_intact(folder, damaged, models, target)


@pytest.mark.parametrize("how", ["zeros", "garbage", "magic-only"])
def test_overwritten_sqlite_header(template: Any, fresh: Callable[[], Path], how: str) -> None:
    _, models = template
    damaged = "alpha"
    folder = fresh()
    target = folder / damaged / CATALOG
    with open(target, "r+b") as f:
        if how == "zeros":
            f.write(bytes(100))
        elif how == "garbage":
            f.write(np.random.default_rng(7).integers(0, 256, 100, dtype=np.uint8).tobytes())
        else:
            f.write(b"NOT SQLite fmt 3\x00")
    assert_damaged_and_others_intact(folder, damaged, models, target)


@pytest.mark.parametrize("mask", [0x01, 0x80], ids=["ascii-stays-ascii", "invalid-utf8"])
def test_flipped_byte_in_stored_payload(template: Any, fresh: Callable[[], Path], mask: int
                                        ) -> None:
    """Flip one byte inside the JSON text of a payload (sealed and growing items alike)."""
    _, models = template
    damaged = "beta"
    model = models[damaged]
    markers = [p["marker"] for p, _, _ in model.values()]
    for marker in markers[::9] + markers[-3:]:
        for offset in (0, len(marker) - 1):
            folder = fresh()
            target = folder / damaged / CATALOG
            pos = locate(target.read_bytes(), marker.encode())
            flip(target, pos + offset, mask)
            assert_damaged_and_others_intact(folder, damaged, models, target)


def test_flipped_byte_in_stored_payload_key_and_number(template: Any,
                                                       fresh: Callable[[], Path]) -> None:
    """Flip a digit of a payload number (the text stays valid JSON, so only the CRC sees it)."""
    _, models = template
    damaged = "gamma"
    folder = fresh()
    target = folder / damaged / CATALOG
    payload = next(p for p, _, _ in models[damaged].values() if p["n"] >= 10)
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    pos = locate(target.read_bytes(), text) + text.index(b'"n":') + 4
    flip(target, pos, 0x01)  # '1' <-> '0', '3' <-> '2', ...
    assert_damaged_and_others_intact(folder, damaged, models, target)


@pytest.mark.parametrize("field", ["d", "t"])
def test_flipped_byte_in_stored_vector_blob(template: Any, fresh: Callable[[], Path],
                                            field: str) -> None:
    """Flip bytes inside the vectors of growing rows, which live in the growing file: opening
    raises ``CorruptFile`` naming that file (the chunk's checksum in the catalog catches it)."""
    _, models = template
    damaged = "alpha"
    growing = [k for k in models[damaged] if isinstance(k, int) and k >= 90] + \
        [k for k in models[damaged] if isinstance(k, str) and int(k[3:]) >= 90]
    assert growing
    for key in growing[:6]:
        _, dense, tokens = models[damaged][key]
        blob = (dense if field == "d" else tokens).tobytes()
        for offset, mask in ((0, 0x01), (len(blob) // 2, 0x80), (len(blob) - 1, 0xFF)):
            folder = fresh()
            (target,) = sorted((folder / damaged / "growing").glob("*.bin"))
            pos = locate(target.read_bytes(), blob)
            flip(target, pos + offset, mask)
            assert_damaged_and_others_intact(folder, damaged, models, target)


def test_flipped_byte_in_segment_manifest_and_schema(template: Any,
                                                     fresh: Callable[[], Path]) -> None:
    """The catalog rows describing segments and the schema are checksummed too."""
    _, models = template
    damaged = "beta"
    for needle, offset in ((b'"d.npy": [', 10), (b'"polyvec-collection"', 3), (b'"dim": 8', 7)):
        folder = fresh()
        target = folder / damaged / CATALOG
        data = target.read_bytes()
        pos = data.find(needle)
        assert pos >= 0, needle
        flip(target, pos + offset, 0x01)
        assert_damaged_and_others_intact(folder, damaged, models, target)


def test_random_byte_flips_in_catalog_never_give_different_data(
        template: Any, tmp_path: Path) -> None:
    """200 flips spread over the whole file: CorruptFile (at open, on use, or by ``verify``),
    or exactly the original content."""
    src, models = template
    damaged = "gamma"
    folder = tmp_path / "db"
    shutil.copytree(src, folder)
    target = folder / damaged / CATALOG
    original = target.read_bytes()
    size = len(original)
    rng = np.random.default_rng(2024)
    n = 200
    bounds = np.linspace(0, size, n + 1).astype(int)
    raised, unchanged, wrong = [], [], []
    with watchdog(300):
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            pos = int(rng.integers(lo, hi))
            mask = int(rng.integers(1, 256))
            data = bytearray(original)
            data[pos] ^= mask
            # a new inode each time (and no stale -wal/-shm), so nothing SQLite cached survives
            for suffix in ("-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            tmp = target.with_name("catalog.new")
            tmp.write_bytes(bytes(data))
            os.replace(tmp, target)
            db = polyvec.connect(folder)
            try:
                try:
                    coll = db.get_collection(damaged)
                except CorruptFile as e:
                    assert Path(e.filename) == target, e
                    raised.append(pos)
                    continue
                except Exception as e:  # noqa: BLE001 - any other error is a failure
                    wrong.append((pos, mask, f"{type(e).__name__}: {e}"))
                    continue
                try:  # damage may also surface on use, or by the full check (see verify)
                    problem = diff_against_model(coll, models[damaged])
                    if problem is None:
                        check_search(coll, models[damaged])
                        coll.verify()
                except CorruptFile as e:
                    assert Path(e.filename) == target, e
                    raised.append(pos)
                    continue
                except Exception as e:  # noqa: BLE001
                    problem = f"{type(e).__name__}: {e}"
                if problem is None:
                    unchanged.append(pos)
                else:
                    wrong.append((pos, mask, problem))
            finally:
                db.close()
    print(f"\ncatalog of {size} bytes: {len(raised)} flips raised CorruptFile, "
          f"{len(unchanged)} left the content unchanged, {len(wrong)} wrong")
    assert not wrong, f"flips that gave an error other than CorruptFile or different data: " \
                      f"{wrong[:10]}"
    # This small catalog is ~60% free space inside its pages (and has free pages), where a
    # flip is invisible to any reader; about a quarter of the flips land on live bytes (fewer
    # since format 2: the growing vectors live in their own file, tested above).
    assert len(raised) >= 0.2 * n, (len(raised), len(unchanged))
    # the other collections were never touched
    db = polyvec.connect(folder)
    try:
        for name in NAMES:
            if name != damaged:
                assert diff_against_model(db.get_collection(name), models[name]) is None
    finally:
        db.close()


def test_corrupt_file_message_names_the_file_and_the_reason(template: Any,
                                                            fresh: Callable[[], Path]) -> None:
    """``str(err)`` is what a user reads: it must say which file is bad and why."""
    folder = fresh()
    target = segment_files(folder / "alpha")[0]
    flip(target, target.stat().st_size - 1)
    with pytest.raises(CorruptFile) as exc_info:
        polyvec.connect(folder).get_collection("alpha")
    err = exc_info.value
    assert Path(err.filename) == target
    assert err.reason
    assert str(target) in str(err) and err.reason in str(err), str(err)
