"""A full load reads the item rows in batches (``catalog.ITEM_BATCH``): every row arrives, in
seq order, and a damaged row past the first batch is still caught."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import polyvec
from polyvec.errors import CorruptFile
from polyvec.storage import catalog


def _make(path: Path) -> None:
    db = polyvec.connect(path)
    coll = db.create_collection("c", {"v": polyvec.Dense(4)}, indexed=["n"])
    rng = np.random.default_rng(0)
    keys: list[int | str] = [*range(7), "a", "b", 10]
    coll.add(keys, rng.standard_normal((10, 4)).astype(np.float32),
             [{"n": i} for i in range(10)])
    coll.delete([3])
    db.close()


def test_batched_load_keeps_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make(tmp_path)
    monkeypatch.setattr(catalog, "ITEM_BATCH", 3)
    coll = polyvec.connect(tmp_path).get_collection("c")
    assert len(coll) == 9
    q = np.ones(4, np.float32)
    everything = coll.search(q, k=9).ids.tolist()
    assert sorted(map(str, everything)) == sorted(map(str, [0, 1, 2, 4, 5, 6, "a", "b", 10]))
    # the payload column (loaded with the rows) answers the filter in memory
    picked = coll.search(q, k=5, filter={"n": {"$gte": 5}}).ids.tolist()
    assert sorted(map(str, picked)) == sorted(map(str, [5, 6, "a", "b", 10]))

def test_damaged_row_after_the_first_batch(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _make(tmp_path)
    with sqlite3.connect(tmp_path / "c" / "catalog.sqlite") as conn:
        conn.execute("UPDATE items SET payload = '{\"n\": 99}' WHERE key = 10")
    monkeypatch.setattr(catalog, "ITEM_BATCH", 3)
    with pytest.raises(CorruptFile, match="checksum mismatch"):
        polyvec.connect(tmp_path).get_collection("c")


@pytest.mark.parametrize("str_keys", [False, True])
def test_a_batch_of_several_insert_statements_reopens_checked(tmp_path: Path,
                                                              str_keys: bool) -> None:
    """More rows than one ``INSERT`` takes (``catalog._ROWS_PER_INSERT``), int keys (their
    row checks made without the type name lookup) or mixed keys: every row's check passes at
    the full load of a reopen."""
    n = 2 * catalog._ROWS_PER_INSERT + 7
    keys: list[int | str] = [f"k{i}" if str_keys and i % 2 else i for i in range(n)]
    x = np.random.default_rng(1).standard_normal((n, 4)).astype(np.float32)
    with polyvec.connect(tmp_path) as db:
        db.create_collection("c", {"v": polyvec.Dense(4)}).add(keys, x, [{"i": i} for i in
                                                                          range(n)])
    with polyvec.connect(tmp_path) as db:
        coll = db.get_collection("c")
        assert len(coll) == n
        got = coll.get([keys[0], keys[n // 2 + 1], keys[-1]])
        assert [it.payload["i"] for it in got] == [0, n // 2 + 1, n - 1]
