"""Any sequence of add/upsert/delete/flush/compact equals a plain dict model, also after reopen."""

from __future__ import annotations

import shutil
import tempfile
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
        assert res.ids[len(self.model):].tolist() == [None, None]
        want = sorted(repr(k) for k, (p, _, _) in self.model.items() if p["k"] == 1)
        res = self.coll.search(np.ones((1, 2), dtype=np.float32), k=20, field="t",
                               filter={"k": 1})
        assert sorted(repr(i) for i in res.ids if i is not None) == want


CollectionVsDict.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_collection_equals_dict_model = CollectionVsDict.TestCase
