"""Deterministic write stream shared by the crash test and its writer process.

Batch ``i`` of stream ``seed`` is regenerated from ``seed`` and the batches before it (see
:class:`Stream`), so the parent test and the child writer agree on its content without
talking to each other. The parent replays the stream into a plain-dict *model* and compares
the reopened collection with it.

This module imports numpy only (not polyvec), so the child's start-up stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

COLLECTION = "c"
DENSE_DIM = 8
MULTI_DIM = 4
SEGMENT_ROWS = 30
TAGS = ("red", "green", "blue", "black")
IDS_PER_BATCH = 40  # batch i may create ids from [40 i, 40 i + 40) only
OPS = ("add", "upsert", "delete", "flush", "compact")
OP_P = (0.33, 0.30, 0.24, 0.07, 0.06)
_WORDS = ("alpha", "beta", "gamma", "δέλτα", "épsilon", "zeta", "ηта", "theta", "😀", "iota")


def key_of(n: int) -> int | str:
    """External id number ``n``: a mix of int and str ids."""
    return n if n % 3 else f"k{n}"


@dataclass(frozen=True)
class Batch:
    index: int
    op: str
    ids: list[int | str]
    dense: np.ndarray | None = None  # (n, 8) float32
    tokens: list[np.ndarray] | None = None  # n arrays (1..5, 4) float32
    payloads: list[dict[str, Any]] | None = None

    def apply(self, coll: Any) -> None:
        """Run this batch against a polyvec collection."""
        if self.op in ("add", "upsert"):
            fn = coll.add if self.op == "add" else coll.upsert
            fn(self.ids, vectors={"d": self.dense, "t": self.tokens}, payloads=self.payloads)
        elif self.op == "delete":
            coll.delete(self.ids)
        elif self.op == "flush":
            coll.flush()
        else:
            coll.compact()

    def apply_model(self, model: dict[Any, tuple[dict[str, Any], np.ndarray, np.ndarray]]) -> None:
        """Apply this batch to the model: ``{id: (payload, dense (8,), tokens (t, 4))}``."""
        if self.op == "add":
            for k in self.ids:
                assert k not in model, f"stream bug: batch {self.index} adds existing id {k!r}"
        if self.op in ("add", "upsert"):
            assert self.dense is not None and self.tokens is not None and self.payloads
            for j, k in enumerate(self.ids):
                model[k] = (self.payloads[j], self.dense[j], self.tokens[j])
        elif self.op == "delete":
            for k in self.ids:
                model.pop(k, None)


def _payload(rng: np.random.Generator, i: int, j: int) -> dict[str, Any]:
    p: dict[str, Any] = {"tag": TAGS[int(rng.integers(len(TAGS)))], "b": i, "j": j}
    if rng.random() < 0.7:
        p["x"] = float(rng.standard_normal())
    if rng.random() < 0.7:
        words = rng.choice(len(_WORDS), size=int(rng.integers(1, 4)))
        p["s"] = " ".join(_WORDS[w] for w in words) + f" #{int(rng.integers(1 << 30))}"
    if rng.random() < 0.4:
        p["l"] = [int(x) for x in rng.integers(-1000, 1000, size=int(rng.integers(0, 4)))]
    if rng.random() < 0.3:
        p["nested"] = {"ok": bool(rng.random() < 0.5), "none": None,
                       "deep": {"v": int(rng.integers(100))}}
    return p


class Stream:
    """The batches of stream ``seed``, in order.

    Which ids a batch touches depends on the ids live before it (so deletes and upserts hit
    existing items and the collection stays around ``TARGET_LIVE`` items), hence the stream
    is replayed from batch 0 - cheaply, since ``content=False`` skips vectors and payloads.
    """

    TARGET_LIVE = 300

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.next = 0  # index of the next batch
        self.live: set[int] = set()  # id numbers live after batches 0 .. next-1

    def copy(self) -> Stream:
        other = Stream(self.seed)
        other.next, other.live = self.next, set(self.live)
        return other

    def skip_to(self, index: int) -> None:
        while self.next < index:
            self.take(content=False)

    def peek_op(self) -> str:
        return self.copy().take(content=False).op

    def take(self, *, content: bool = True) -> Batch:
        i = self.next
        rng = np.random.default_rng([self.seed, i, 1])
        p = np.array(OP_P)
        if len(self.live) > self.TARGET_LIVE:  # steer the size: more deletes, fewer adds
            p[OPS.index("delete")] += p[OPS.index("add")] / 2
            p[OPS.index("add")] /= 2
        op = "add" if i < 3 else OPS[int(rng.choice(len(OPS), p=p / p.sum()))]
        self.next += 1
        if op in ("flush", "compact"):
            return Batch(i, op, [])
        n = int(rng.integers(1, 21))
        fresh = [i * IDS_PER_BATCH + j for j in range(IDS_PER_BATCH)]  # never used before
        live = sorted(self.live)
        if op == "add":
            nums = fresh[:n]
        else:
            n_old = min(len(live), int(rng.binomial(n, 0.85)))
            old = [live[x] for x in rng.choice(len(live), size=n_old, replace=False)]
            nums = old + fresh[n:][:n - n_old]  # a few ids that do not exist (yet)
            rng.shuffle(nums)
        if op == "delete":
            self.live.difference_update(nums)
        else:
            self.live.update(nums)
        ids = [key_of(x) for x in nums]
        if op == "delete" or not content:
            return Batch(i, op, ids)
        crng = np.random.default_rng([self.seed, i, 2])
        dense = crng.standard_normal((n, DENSE_DIM)).astype(np.float32)
        tokens = [crng.standard_normal((int(crng.integers(1, 6)), MULTI_DIM)).astype(np.float32)
                  for _ in range(n)]
        payloads = [_payload(crng, i, j) for j in range(n)]
        return Batch(i, op, ids, dense, tokens, payloads)


def create_collection(folder: str) -> None:
    import polyvec

    db = polyvec.connect(folder)
    db.create_collection(COLLECTION, vectors={"d": polyvec.Dense(DENSE_DIM, metric="l2"),
                                              "t": polyvec.Multi(MULTI_DIM, metric="dot")},
                         indexed=["tag"], segment_rows=SEGMENT_ROWS)
    db.close()


def diff_against_model(coll: Any, model: dict[Any, tuple[dict[str, Any], np.ndarray, np.ndarray]],
                       ) -> str | None:
    """``None`` if the collection holds exactly ``model``; else a description of a difference."""
    ids = list(coll)
    if len(ids) != len(set(ids)):
        return f"duplicate ids in list(coll): {len(ids)} ids, {len(set(ids))} distinct"
    if set(ids) != set(model):
        extra = sorted(map(str, set(ids) - set(model)))[:5]
        missing = sorted(map(str, set(model) - set(ids)))[:5]
        return f"id sets differ: extra {extra}, missing {missing}"
    if len(coll) != len(model):
        return f"len(coll)={len(coll)}, model has {len(model)}"
    keys = list(model)
    items = coll.get(keys)
    for k, item in zip(keys, items, strict=True):
        payload, dense, tokens = model[k]
        if item is None:
            return f"get({k!r}) returned None"
        if item.id != k or type(item.id) is not type(k):
            return f"get({k!r}) returned id {item.id!r}"
        if item.payload != payload:
            return f"id {k!r}: payload {item.payload!r} != {payload!r}"
        d, t = item.vectors.get("d"), item.vectors.get("t")
        if d is None or d.dtype != np.float32 or not np.array_equal(d, dense):
            return f"id {k!r}: dense vector differs: {d!r} != {dense!r}"
        if t is None or t.dtype != np.float32 or not np.array_equal(t, tokens):
            return f"id {k!r}: token vectors differ: {t!r} != {tokens!r}"
    return None
