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
