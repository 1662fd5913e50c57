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
