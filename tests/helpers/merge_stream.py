"""A deterministic stream of writes that keeps the merge policy busy (tests/test_merge_crash.py).

Batch ``i`` is computed from the model of batches ``0..i-1`` (which ids exist), so the parent
and a child that starts at any batch agree on every batch. ``segment_rows`` is 40 and most
batches add 40 items, so nearly every add seals a segment, every tenth seal merges a tier,
and ``compact`` / ``merge`` batches rewrite runs of segments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COLLECTION = "m"
SEGMENT_ROWS = 40
Model = dict[int, tuple[np.ndarray, np.ndarray]]


def create(folder: str) -> None:
    import polyvec as pv

    db = pv.connect(folder)
    db.create_collection(COLLECTION, {"d": pv.Dense(8, metric="dot"),
                                      "t": pv.Multi(4, metric="dot")},
                         segment_rows=SEGMENT_ROWS)
    db.close()


def batch(i: int, model: Model, next_id: int) -> tuple[str, list[int], Any]:
    """(op, ids, vectors) of batch ``i``; ``next_id`` is the first id never used."""
    rng = np.random.default_rng(1000 + i)
    kind = i % 9
    if kind == 7:
        return "compact", [], None
    if kind == 8 and i % 2:
        return "merge", [], None
    if kind in (5, 6) and len(model) > 30:
        ids = sorted(int(x) for x in rng.choice(sorted(model), 12, replace=False))
        if kind == 5:
            return "delete", ids, None
        return "upsert", ids, _vectors(rng, len(ids))
    ids = list(range(next_id, next_id + SEGMENT_ROWS))
    return "add", ids, _vectors(rng, len(ids))


def _vectors(rng: np.random.Generator, n: int) -> dict[str, Any]:
    d = rng.standard_normal((n, 8)).astype(np.float32)
    t = [rng.standard_normal((int(rng.integers(1, 5)), 4)).astype(np.float32)
         for _ in range(n)]
    return {"d": d, "t": t}


def apply_model(model: Model, next_id: int, op: str, ids: list[int], vectors: Any) -> int:
    if op in ("add", "upsert"):
        for j, k in enumerate(ids):
            model[k] = (vectors["d"][j], vectors["t"][j])
        next_id = max(next_id, max(ids) + 1)
    elif op == "delete":
        for k in ids:
            model.pop(k, None)
    return next_id


def replay(stop: int) -> tuple[Model, int]:
    """The model after batches ``0..stop-1``, and the next unused id."""
    model: Model = {}
    next_id = 0
    for i in range(stop):
        op, ids, vectors = batch(i, model, next_id)
        next_id = apply_model(model, next_id, op, ids, vectors)
    return model, next_id


def apply(coll: Any, op: str, ids: list[int], vectors: Any) -> None:
    if op == "add":
        coll.add(ids, vectors)
    elif op == "upsert":
        coll.upsert(ids, vectors)
    elif op == "delete":
        coll.delete(ids)
    elif op == "compact":
        coll.compact()
    else:
        coll.merge(force=True)


def diff(coll: Any, model: Model) -> str | None:
    """Why the collection differs from ``model`` (``None``: it does not)."""
    if set(coll) != set(model):
        return f"ids differ: {len(set(coll) ^ set(model))} not shared"
    keys = sorted(model)
    for k, item in zip(keys, coll.get(keys), strict=True):
        if item is None or not np.array_equal(item.vectors["d"], model[k][0]) or \
                not np.array_equal(item.vectors["t"], model[k][1]):
            return f"item {k} differs"
    return None
