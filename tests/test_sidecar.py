"""Item sidecars: an open that takes ids and indexed columns from the sealed segments must
build exactly the live table that reading every item row builds (the oracle), whatever the
ids, payloads, deletes, merges and compactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec as pv
from polyvec.filters import Column, matches, parse_filter
from polyvec.storage import catalog as catalog_module

# values at the indexed paths that exercise every column kind (lists with non-scalars, ints
# beyond 2**53, -0.0, unicode, nested objects, missing)
VALUES: list[Any] = ["pear", 3, None, True, False, 2**60, -0.0, 2.5, "ünï", [1, "a", {"x": 1},
                     [2], None, True], [2**60], {"k": 1}, [], "", "pear"]
FILTERS: list[dict[str, Any]] = [
    {"a": "pear"}, {"a": 3}, {"a": None}, {"a": True}, {"a": {"$gt": 2**53}},
    {"a": {"$gte": 0}}, {"a": {"$lt": "q"}}, {"a": {"$in": ["a", 2, "ünï"]}},
    {"a": {"$exists": True}}, {"a": {"$ne": "pear"}}, {"m.y": {"$gte": 3}},
    {"$or": [{"a": 1}, {"m.y": "s4"}]}, {"m.y": {"$exists": False}},
]


def _payload(i: int) -> dict[str, Any]:
    p: dict[str, Any] = {"i": i}
    if i % 11:
        p["a"] = VALUES[i % len(VALUES)]
    if i % 3:
        p["m"] = {"y": i % 7} if i % 2 else {"y": f"s{i % 5}"}
    return p


def _ids(lo: int, hi: int, kind: str) -> list[Any]:
    if kind == "int":
        return list(range(lo, hi))
    if kind == "str":
        return [f"id-{i}-é" for i in range(lo, hi)]
    return [i if i % 2 else f"s{i}" for i in range(lo, hi)]


def _build(folder: Path, kind: str) -> Any:
    rng = np.random.default_rng(0)
    db = pv.connect(folder)
    coll = db.create_collection("c", {"v": pv.Dense(4, metric="l2")}, indexed=["a", "m.y"],
                                segment_rows=40)
    for lo in range(0, 400, 50):
        ids = _ids(lo, lo + 50, kind)
        coll.add(ids, {"v": rng.standard_normal((50, 4)).astype(np.float32)},
                 payloads=[_payload(i) for i in range(lo, lo + 50)])
        coll.wait_for_maintenance()  # sealed before the deletes: they leave tombstones
        coll.delete(ids[::9])
    # upserts give items new seqs (their old rows become tombstones in sealed segments)
    again = _ids(100, 130, kind)
    coll.upsert(again, {"v": rng.standard_normal((30, 4)).astype(np.float32)},
                payloads=[_payload(i + 1) for i in range(100, 130)])
    coll.flush()
    coll.add(_ids(1000, 1010, kind), {"v": rng.standard_normal((10, 4)).astype(np.float32)},
             payloads=[_payload(i) for i in range(1000, 1010)])  # growing rows stay
    return db, coll


def _state(coll: Any) -> tuple[Any, ...]:
    st = coll._store
    live = st.live
    q = np.zeros(4, np.float32)
    results = [sorted(str(i) for i in coll.search(q, k=500, filter=f).ids if i is not None)
               for f in FILTERS]
    return (live.live_seqs().tolist(), [str(k) for k in live.live_keys()], results)


def _spy_sealed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What each open's ``Catalog._sealed_items`` answers (``None``: the item rows read)."""
    seen: list[Any] = []
    real = catalog_module.Catalog._sealed_items
    monkeypatch.setattr(catalog_module.Catalog, "_sealed_items",
                        lambda self, *a: seen.append(real(self, *a)) or seen[-1])
    return seen


def _open(folder: Path, sidecars: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    if not sidecars:  # the oracle: every item row read from the catalog
        real = catalog_module.Catalog._sealed_items
        monkeypatch.setattr(catalog_module.Catalog, "_sealed_items",
                            lambda self, *a: None)
        try:
            return pv.connect(folder).get_collection("c")
        finally:
            monkeypatch.setattr(catalog_module.Catalog, "_sealed_items", real)
    return pv.connect(folder).get_collection("c")


@pytest.mark.parametrize("kind", ["int", "str", "mixed"])
def test_open_from_sidecars_equals_reading_every_item(tmp_path: Path, kind: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    db, coll = _build(tmp_path, kind)
    written = _state(coll)
    db.close()
    seen = _spy_sealed(monkeypatch)
    fast = pv.connect(tmp_path).get_collection("c")
    assert seen and seen[0] is not None, "the open did not use the sidecars"
    assert seen[0].count < sum(s["rows"] for s in fast.info()["segments"])  # tombstones
    monkeypatch.undo()
    slow = _open(tmp_path, False, monkeypatch)
    assert _state(fast) == _state(slow) == written
    # and every filter result is what the reference evaluator says of the stored payloads
    items = {str(it.id): it.payload for it in fast.get(fast._store.live.live_keys())}
    for f, got in zip(FILTERS, _state(fast)[2], strict=True):
        node = parse_filter(f)
        assert got == sorted(k for k, p in items.items() if matches(node, p)), f


def test_pruned_delete_log_reads_the_live_seqs(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "DELETE_LOG_TAIL", 1)
    db, coll = _build(tmp_path, "int")
    written = _state(coll)
    db.close()
    seen = _spy_sealed(monkeypatch)
    coll = pv.connect(tmp_path).get_collection("c")
    assert seen[0] is not None and seen[0].alive is not None  # the log could not tell
    assert _state(coll) == written


def test_segments_without_sidecars_are_read_from_the_catalog(tmp_path: Path) -> None:
    """A merge with a segment written before sidecars existed drops them; the open then
    reads the item rows (golden fixtures of older versions cover whole old folders)."""
    db, coll = _build(tmp_path, "mixed")
    written = _state(coll)
    st = coll._store
    seg = st.segments[0]
    st.segments[0].extras = {}  # as if written by an older version
    merged = st.merge_rows([(seg, np.arange(len(seg.seqs)))])
    assert not any(k.startswith("@") for k in merged)
    coll.compact()
    assert _state(coll) == written
    db.close()
    assert _state(pv.connect(tmp_path).get_collection("c")) == written


def test_column_encoding_round_trips_every_kind() -> None:
    rows = [{"a": v} for v in VALUES] + [{}, {"a": [1, [2**60]]}]
    col = Column(("a",))
    col.extend(rows)
    enc = col.encoded(np.arange(len(rows)))
    again = Column(("a",))
    again.extend_encoded(enc)
    part = Column(("a",))
    part.extend_encoded(enc.take(np.array([5, 0, 9])))
    for f in FILTERS[:9]:  # the leaves on one path
        leaf = parse_filter(f)
        assert again.evaluate(leaf).tolist() == col.evaluate(leaf).tolist(), f  # type: ignore[arg-type]
        assert part.evaluate(leaf).tolist() == col.evaluate(leaf)[[5, 0, 9]].tolist(), f  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["a", "ü ☃", 'line\nbreak\t"q"\\', "\x00\x1f\x7f", "\u2028",
                                   "😀", "", "x" * 5000, 1, -2.5, None, True, ["a", 1],
                                   {"k": "v"}])
def test_row_texts_are_the_compact_json_of_the_value(value: Any) -> None:
    """A string's text is quoted without ``json.dumps`` (one per row at a seal): it must be
    exactly the text ``dumps`` gives, which the reader parses back."""
    import json

    from polyvec.storage.sidecar import _text

    assert _text(value) == json.dumps(value, ensure_ascii=False,
                                      separators=(",", ":")).encode() + b","
