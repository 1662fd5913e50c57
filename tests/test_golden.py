"""Golden on-disk fixtures: a folder written by each past format version opens and answers
exactly as it did when it was written (``scripts/make_golden.py`` wrote them)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import polyvec as pv

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
VERSIONS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def _recipe():
    path = ROOT / "scripts" / "make_golden.py"
    spec = importlib.util.spec_from_file_location("make_golden", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _close(got: object, want: object, where: str = "") -> None:
    """Equal, with floats compared to 1e-5 (f16 storage and BLAS order move the last bits)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-5), where
    else:
        assert got == want, where


def test_every_format_version_has_a_golden_folder() -> None:
    from polyvec.storage.catalog import FORMAT_VERSION

    assert VERSIONS, "no golden folders"
    assert f"v{FORMAT_VERSION}" in VERSIONS, (
        f"format version {FORMAT_VERSION} has no golden folder: run scripts/make_golden.py")


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_folder_opens_and_answers_identically(version: str, tmp_path: Path) -> None:
    folder = tmp_path / version
    shutil.copytree(GOLDEN / version, folder)  # opening may migrate; the fixture stays frozen
    expected = json.loads((folder / "expected.json").read_text())
    db = pv.connect(folder / "db")
    try:
        assert db.list_collections() == ["golden"]
        col = db.get_collection("golden")
        got = json.loads(json.dumps(_recipe().answers(col, expected["queries"])))
        _close(got, expected["answers"], version)
    finally:
        db.close()
    # and again after reopening: whatever the first open migrated stays readable
    db = pv.connect(folder / "db")
    try:
        got = json.loads(json.dumps(_recipe().answers(db.get_collection("golden"),
                                                      expected["queries"])))
        _close(got, expected["answers"], f"{version} (reopened)")
    finally:
        db.close()


def test_the_comparison_can_fail() -> None:
    with pytest.raises(AssertionError):
        _close({"scores": [1.0, 0.5]}, {"scores": [1.0, 0.6]})
    with pytest.raises(AssertionError):
        _close({"ids": ["a", "b"]}, {"ids": ["b", "a"]})


def _flip_last_byte(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    return data


def test_a_format_3_folder_takes_new_digests(tmp_path: Path) -> None:
    """Its CRC-32 files verify and a flipped byte in one is caught; files written into it get
    xxh3 entries and mark it format 4 (an older polyvec refuses the folder instead of calling
    those files corrupt), and a flipped byte in one of those is caught too."""
    from polyvec.errors import CorruptFile
    from polyvec.storage.catalog import FORMAT_VERSION
    from polyvec.storage.segment import XXH3

    folder = tmp_path / "db"
    shutil.copytree(GOLDEN / "v3" / "db", folder)
    with pv.connect(folder) as db:
        store = db.get_collection("golden")._store
        segs = store.catalog._segments()
        assert segs and all(len(e) == 2 for s in segs for e in s.manifest.values())  # crc32
        seg = segs[0]
    old_file = folder / "golden" / "segments" / seg.name / "seqs.npy"
    backup = _flip_last_byte(old_file)
    with pv.connect(folder) as db, pytest.raises(CorruptFile):
        db.get_collection("golden").verify()
    old_file.write_bytes(backup)
    with pv.connect(folder) as db:
        col = db.get_collection("golden")
        col.verify()
        store = col._store
        assert store.catalog.read_meta()["format_version"] == 3
        col.create_index("half", "HNSW16")
        assert store.catalog.read_meta()["format_version"] == FORMAT_VERSION
        new = [r for r in store.catalog._indexes() if r.field == "half"]
        assert new and all(e[2] == XXH3 for r in new for e in r.manifest.values())
        col.verify()
    new_file = next((folder / "golden" / "indexes" / new[0].folder).rglob("*.npy"))
    _flip_last_byte(new_file)
    with pv.connect(folder) as db, pytest.raises(CorruptFile):
        db.get_collection("golden").verify()
