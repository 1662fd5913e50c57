"""Items copied between collections in their stored form (``Collection._restore``, what a
sharded collection's moves and new replicas use): every field kind comes back bit for bit
and scores as before, including the forms a write transforms (cosine rows normalized and
cast to f16, pooled token sets, u8-quantized sparse weights, analyzed BM25 texts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stored_kinds import DIM, FIELDS, copy_items, kinds_data, same_items

import polyvec as pv
from polyvec.errors import DimensionMismatch, InvalidVector


@pytest.mark.parametrize("seal", [False, True], ids=["growing", "sealed"])
def test_restored_items_equal_their_source_bit_for_bit(tmp_path: Path, seal: bool) -> None:
    keys, vectors, payloads = kinds_data()
    db = pv.connect(tmp_path)
    src = db.create_collection("src", FIELDS, segment_rows=32)
    src.add(keys, vectors, payloads)
    dst = db.create_collection("dst", FIELDS, segment_rows=32)
    if seal:
        src.flush()
    copy_items(src, dst, keys[:25])
    copy_items(src, dst, keys[25:])  # (two batches: BM25 lengths must add up across both)
    if seal:
        dst.flush()
    same_items(src, dst, keys)
    # and they score alike: exact search of each field, BM25 statistics included
    rng = np.random.default_rng(1)
    queries = {"d": rng.standard_normal(DIM).astype(np.float32),
               "m": rng.standard_normal((4, DIM)).astype(np.float32),
               "s": (np.array([3, 50, 700], np.uint32), np.ones(3, np.float32)),
               "t": "python debian package"}
    for f, q in queries.items():
        a, b = src.search(q, k=20, field=f), dst.search(q, k=20, field=f)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.ids.tolist() == b.ids.tolist()


def test_a_write_of_the_restored_form_would_transform_it_again(tmp_path: Path) -> None:
    """Why the restore path exists: an ordinary upsert of what ``get`` gave back pools the
    pooled token sets again and counts each BM25 term's text as text (it takes none)."""
    keys, vectors, payloads = kinds_data()
    db = pv.connect(tmp_path)
    src = db.create_collection("src", FIELDS)
    src.add(keys, vectors, payloads)
    item = src.get(keys[:1])[0]
    dst = db.create_collection("dst", {"m": FIELDS["m"]})
    dst.upsert(keys[:1], {"m": [item.vectors["m"]]})
    assert len(dst.get(keys[:1])[0].vectors["m"]) < len(item.vectors["m"])  # pooled twice
    with pytest.raises(InvalidVector):
        db.create_collection("t", {"t": pv.BM25()}).upsert(keys[:1], {"t": [item.vectors["t"]]})


def test_restore_still_checks_its_input(tmp_path: Path) -> None:
    keys, vectors, payloads = kinds_data()
    db = pv.connect(tmp_path)
    dst = db.create_collection("dst", FIELDS)
    bad = {**vectors, "d": vectors["d"][:, :5]}
    with pytest.raises(DimensionMismatch):
        dst._restore(keys, bad, payloads)
    nan = vectors["d"].copy()
    nan[3, 0] = np.nan
    with pytest.raises(InvalidVector):
        dst._restore(keys, {**vectors, "d": nan}, payloads)
    assert len(dst) == 0
