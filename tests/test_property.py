"""Any sequence of add/upsert/delete/flush/compact equals a plain dict model, also after reopen."""

from __future__ import annotations

import json
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import polyvec as pv
from polyvec.errors import DuplicateId

KEYS = st.one_of(st.integers(0, 12), st.sampled_from(["a", "b", "ü", "0"]))
BATCH = st.lists(KEYS, min_size=1, max_size=5, unique=True)


def _vectors(seed: int, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, 3)).astype(np.float32)
    tokens = [rng.standard_normal((int(rng.integers(1, 4)), 2)).astype(np.float32)
              for _ in range(n)]
    return dense, tokens


class CollectionVsDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.db = pv.connect(self.dir)
        self.coll = self.db.create_collection(
            "c", {"d": pv.Dense(3, metric="dot"), "t": pv.Multi(2, metric="dot")},
            indexed=["k"], segment_rows=4)
        self.model: dict = {}

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _write(self, method: str, keys: list, seed: int) -> None:
        dense, tokens = _vectors(seed, len(keys))
        payloads = [{"k": seed % 3, "key": str(k)} for k in keys]
        if method == "add" and any(k in self.model for k in keys):
            try:
                self.coll.add(keys, {"d": dense, "t": tokens}, payloads)
            except DuplicateId:
                return
            raise AssertionError("add of an existing id did not raise")
        getattr(self.coll, method)(keys, {"d": dense, "t": tokens}, payloads)
        for j, k in enumerate(keys):
            self.model[k] = (payloads[j], dense[j], tokens[j])

    @rule(keys=BATCH, seed=st.integers(0, 2**16))
    def add(self, keys, seed) -> None:
        self._write("add", keys, seed)

    @rule(keys=BATCH, seed=st.integers(0, 2**16))
    def upsert(self, keys, seed) -> None:
        self._write("upsert", keys, seed)

    @rule(keys=BATCH)
    def delete(self, keys) -> None:
        n = self.coll.delete(keys)
        assert n == sum(k in self.model for k in keys)
        for k in keys:
            self.model.pop(k, None)

    @rule()
    def flush(self) -> None:
        self.coll.flush()

    @rule()
    def compact(self) -> None:
        self.coll.compact()

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = pv.connect(self.dir)
        self.coll = self.db.get_collection("c")

    @invariant()
    def equals_model(self) -> None:
        assert len(self.coll) == len(self.model)
        assert sorted(map(repr, self.coll)) == sorted(map(repr, self.model))
        items = self.coll.get(list(self.model))
        for it in items:
            payload, dense, tokens = self.model[it.id]
            assert it.payload == payload
            np.testing.assert_array_equal(it.vectors["d"], dense)
            np.testing.assert_array_equal(it.vectors["t"], tokens)

    @precondition(lambda self: len(self.model) > 0)
    @invariant()
    def search_and_filter_see_exactly_the_model(self) -> None:
        res = self.coll.search(np.ones(3, dtype=np.float32), k=len(self.model) + 2, field="d")
        assert sorted(map(repr, res.ids[: len(self.model)])) == sorted(map(repr, self.model))
        assert len(res.ids) == len(self.model)  # k is capped at the live items
        want = sorted(repr(k) for k, (p, _, _) in self.model.items() if p["k"] == 1)
        res = self.coll.search(np.ones((1, 2), dtype=np.float32), k=20, field="t",
                               filter={"k": 1})
        assert sorted(repr(i) for i in res.ids if i is not None) == want


CollectionVsDict.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_collection_equals_dict_model = CollectionVsDict.TestCase


# -- hostile input (issue 12): any API input gives success or a typed polyvec error ------------

ALLOC_BOUND = 32 << 20  # no call on this small collection may allocate more (tracemalloc peak)
DIM = 4

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                    st.text(max_size=4), st.sampled_from(["\ud800", "a\x00b", "é"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=3), st.integers()),
                                                 inner, max_size=3)), max_leaves=8)
HOSTILE_IDS = st.one_of(st.integers(-3, 6), st.sampled_from(["a", "b", "\ud800", "", "é"]),
                        st.integers(2**63 - 1, 2**64), st.booleans(), st.floats(0, 2),
                        st.none())
OPS = ["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$regex"]
LEAF = st.builds(lambda path, op, v: {path: {op: v}} if op else {path: v},
                 st.sampled_from(["k", "key", "x.y", "", "$bad", "a..b"]),
                 st.sampled_from([None, *OPS]), JSON)
FILTERS = st.one_of(st.none(), st.recursive(LEAF, lambda inner: st.one_of(
    st.builds(lambda xs: {"$and": xs}, st.lists(inner, max_size=3)),
    st.builds(lambda xs: {"$or": xs}, st.lists(inner, max_size=3)),
    st.builds(lambda x: {"$not": x}, inner)), max_leaves=6), JSON)
NUMBERS = st.one_of(st.none(), st.integers(-5, 10**12), st.floats(), st.booleans(),
                    st.sampled_from(["1", 0.5]))


def _hostile_vectors(kind: str, n: int) -> object:
    base = np.random.default_rng(n).standard_normal((n, DIM)).astype(np.float32)
    return {"ok": base, "huge": base * np.float32(1e30), "nan": base * np.nan,
            "zero": base * 0, "ints": base.astype(np.int64), "shape": base[:, :2],
            "rows": base[: max(n - 1, 0)], "list": base.tolist(), "str": "vectors",
            "none": None}[kind]


class HostileInput(RuleBasedStateMachine):
    """Random (often invalid) calls: each succeeds or raises a typed polyvec error, changes
    the collection exactly as the model says, and allocates at most ``ALLOC_BOUND``."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.db = pv.connect(self.dir)
        self.coll = self.db.create_collection("c", {"v": pv.Dense(DIM)}, indexed=["k"],
                                              segment_rows=6)
        self.model: dict = {}
        # first calls compile kernels and fill caches: warm every path before measuring
        for kind in ("ok", "huge"):
            self.coll.add(["w", "w2"], _hostile_vectors(kind, 2), [{"k": 1}, {}])
            self.coll.search(np.ones((2, DIM), np.float32), 3, filter={"k": 1, "z": 2})
            self.coll.flush()
            self.coll.delete(["w", "w2"])
        tracemalloc.start()

    def teardown(self) -> None:
        tracemalloc.stop()
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _call(self, fn, *args, **kwargs):
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        try:
            return True, fn(*args, **kwargs)
        except pv.PolyvecError:
            return False, None
        finally:
            _, peak = tracemalloc.get_traced_memory()
            assert peak - base <= ALLOC_BOUND, (fn.__name__, peak - base)

    @rule(method=st.sampled_from(["add", "upsert"]),
          ids=st.lists(HOSTILE_IDS, max_size=4),
          kind=st.sampled_from(["ok", "ok", "ok", "huge", "nan", "zero", "ints", "shape",
                                "rows", "list", "str", "none"]),
          payloads=st.one_of(st.none(), st.lists(st.one_of(st.none(), JSON), max_size=4)))
    def write(self, method, ids, kind, payloads) -> None:
        ok, _ = self._call(getattr(self.coll, method), ids, _hostile_vectors(kind, len(ids)),
                           payloads)
        if ok:
            for i, key in enumerate(ids):
                p = payloads[i] if payloads is not None and payloads[i] is not None else {}
                self.model[key] = json.loads(json.dumps(p))

    @rule(ids=st.lists(HOSTILE_IDS, max_size=4))
    def delete(self, ids) -> None:
        ok, n = self._call(self.coll.delete, ids)
        if ok:
            assert n == len({i for i in ids if i in self.model})
            for i in ids:
                self.model.pop(i, None)

    @rule(k=NUMBERS, flt=FILTERS, knob=st.sampled_from(["ef", "nprobe", "oversample",
                                                        "target_recall", None]),
          value=NUMBERS, batch=st.integers(0, 3))
    def search(self, k, flt, knob, value, batch) -> None:
        q = np.ones((batch, DIM), np.float32) if batch else np.ones(DIM, np.float32)
        kwargs = {} if knob is None else {knob: value}
        ok, res = self._call(self.coll.search, q, k, filter=flt, **kwargs)
        if ok:
            found = {i for i in np.asarray(res.ids).ravel().tolist() if i is not None}
            assert found <= set(self.model)

    @rule()
    def flush(self) -> None:
        assert self._call(self.coll.flush)[0]

    @invariant()
    def equals_model(self) -> None:
        assert len(self.coll) == len(self.model)
        assert sorted(map(repr, self.coll)) == sorted(map(repr, self.model))
        for it in self.coll.get(list(self.model)):
            assert it.payload == self.model[it.id]


HostileInput.TestCase.settings = settings(
    max_examples=20, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_hostile_input_gets_typed_errors_and_bounded_memory = HostileInput.TestCase
