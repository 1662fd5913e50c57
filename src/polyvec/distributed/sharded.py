"""Sharded, replicated collections on Ray: the ``Collection`` interface over shard actors.

A :class:`ShardedCollection` routes each item by a hash of its id (:class:`HashRing`) to one
shard; a shard is ``replicas`` Ray actors (:class:`ShardReplica`), each owning an ordinary
polyvec collection in a folder on its node's disk, on distinct nodes.

- **Writes** are checked here first (bad input raises before any shard changes), then sent
  to every live replica of each shard they touch, and acknowledged once each of those has
  committed. A replica that dies is dropped from its shard (:meth:`ShardedCollection.repair`
  makes a new one from a live one); a shard with no live replica left fails the write with
  :class:`ShardUnavailable`. A write that touches several shards is atomic per shard.
- **Searches** go to one live replica of every shard at once (filters and knobs passed
  through), failing over to the shard's next replica; the shards' top-k are merged by score.
  Exact search merged equals one collection holding every item. A shard with no live
  replica is left out and named in ``info["partial"]``; the result never silently has less.
  A BM25 field scores with its statistics summed over the shards; a hybrid query merges
  each field's list over the shards and fuses the merged lists here.
- **Adding a shard** (:meth:`ShardedCollection.add_shard`) moves the ~1/N of the items the
  new ring gives it, batch by batch (copied where absent, then deleted from the old shard),
  while writes go on under the new ring. The move is recorded before it starts, so an
  interrupted one resumes (:meth:`ShardedCollection.rebalance`, or reopening): no item is
  lost or left twice. Items move (and fill new replicas) in their stored form.
- **Texts** are embedded here by the embedders attached with
  :meth:`ShardedCollection.use_embedder` (the model is recorded in the layout);
  :func:`~polyvec.distributed.ingest` embeds in Ray workers.

The collection's layout (ring, replicas and their nodes and folders, a move under way) is a
JSON file in the driver's ``root`` folder; each replica's data lives under ``root`` on its
own node (on a real cluster, a path every node can write: its local disk).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _validate as v
from .. import limits
from ..collection import DEFAULT_SEGMENT_ROWS, Collection, hybrid_search
from ..db import check_name
from ..embed.base import check_texts
from ..errors import (
    CollectionClosed,
    CollectionDropped,
    CollectionExists,
    DuplicateId,
    InvalidArgument,
    MissingExtra,
    ModelMismatch,
    PolyvecError,
    ShardUnavailable,
    UnknownCollection,
    UnknownField,
)
from ..fields import check_compatible, check_inputs, kind_of
from ..filters import parse_filter
from ..spec import BM25, CollectionSchema, FieldSpec, ModelSpec
from ..types import SearchResult
from .ring import MAX_VNODES, HashRing
from .shard import replica_class, take

__all__ = ["RayDatabase", "ShardedCollection", "connect_ray"]

MOVE_BATCH = 512  # items moved per step of a rebalance (writes wait for one step at most)
TIMEOUT = 60.0  # seconds a replica may take to answer before it counts as lost
CLEANUP_S = 10.0  # seconds a shard that failed to start gets to remove its replicas' folders


def connect_ray(root: str | os.PathLike[str], *, address: str | None = None,
                timeout: float = TIMEOUT, **init: Any) -> RayDatabase:
    """Sharded collections kept under ``root``, on the Ray cluster at ``address``.

    Joins the cluster this process is already connected to, else ``ray.init(address,
    **init)``: ``None`` starts a new local one-node cluster (for development; Ray's own
    default would join the last cluster ``ray start`` started here, even a stopped one),
    ``"auto"`` joins the cluster started on this machine by ``ray start``,
    ``"ray://host:10001"`` a remote one. ``root`` must be a folder every node can write
    (their local disk at the same path); the layout files stay in it on this machine.
    """
    try:
        import ray
    except ImportError:
        raise MissingExtra("polyvec.distributed needs Ray: pip install 'polyvec[ray]'") from None
    if not ray.is_initialized():
        ray.init(address="local" if address is None else address, **init)
    return RayDatabase(Path(root), timeout=timeout)


class RayDatabase:
    """The sharded collections under one ``root`` (see :func:`connect_ray`)."""

    def __init__(self, root: Path, *, timeout: float = TIMEOUT) -> None:
        self.root = root
        self.timeout = timeout
        root.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, ShardedCollection] = {}

    def _layout(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.sharded.json"

    def list_collections(self) -> list[str]:
        return sorted(p.name[:-len(".sharded.json")] for p in self.root.glob("*.sharded.json"))

    def create_collection(self, name: str, vectors: dict[str, FieldSpec], *,
                          indexed: Sequence[str] = (), shards: int = 2, replicas: int = 1,
                          segment_rows: int = DEFAULT_SEGMENT_ROWS,
                          vnodes: int = 64) -> ShardedCollection:
        """A new sharded collection: ``shards`` shards of ``replicas`` replicas each, the
        replicas of a shard on distinct nodes (so ``replicas`` <= the live nodes)."""
        path = self._layout(name)
        if path.exists():
            raise CollectionExists(f"sharded collection {name!r} already exists in {self.root}")
        schema = CollectionSchema.build(vectors, indexed)
        bounds = {"shards": (shards, limits.MAX_SHARDS, "polyvec.limits.MAX_SHARDS = "),
                  "replicas": (replicas, None, ""), "segment_rows": (segment_rows, None, ""),
                  "vnodes": (vnodes, MAX_VNODES, "")}
        for what, (value, most, bound) in bounds.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (
                    most is not None and value > most):
                within = ">= 1" if most is None else f"in [1, {bound}{most}]"
                raise InvalidArgument(f"{what}: expected an int {within}, got {value!r}")
        nodes = _live_nodes()
        if replicas > len(nodes):
            raise InvalidArgument(f"replicas: expected at most the {len(nodes)} live nodes "
                                  f"(a shard's replicas go to distinct nodes), got {replicas}")
        ring = HashRing([f"s{i}" for i in range(shards)], vnodes)
        layout = {"name": name, "schema": schema.to_dict(), "segment_rows": segment_rows,
                  "replicas": replicas, "ring": ring.to_dict(), "moving": None, "shards": {},
                  "indexes": {}}
        coll = ShardedCollection(self, name, layout)
        try:
            for i, shard in enumerate(ring.shards):
                coll._start_shard(shard, i)
        except BaseException:
            coll.close(remove=True)  # the shards started: stopped, their folders gone
            raise
        coll._save()
        self._open[name] = coll
        return coll

    def get_collection(self, name: str) -> ShardedCollection:
        """Reopen a sharded collection: each replica restarted on its node (a replica whose
        node is gone counts as lost); a move that was under way resumes."""
        coll = self._open.get(name)
        if coll is not None and not coll.closed:
            return coll
        path = self._layout(name)
        if not path.exists():
            raise UnknownCollection(f"no sharded collection {name!r} in {self.root}; have "
                                    f"{self.list_collections()}")
        coll = ShardedCollection(self, name, json.loads(path.read_text()))
        live = set(_live_nodes())
        for shard, reps in coll.layout["shards"].items():
            for r in reps:
                rep = Replica(shard, r["folder"], r["node"], alive=r.get("alive", True))
                if rep.alive and r["node"] in live:
                    rep.actor = coll._actor(rep)
                else:
                    rep.alive = False  # (kept in the layout: its folder is on its node)
                coll._replicas.setdefault(shard, []).append(rep)
        self._open[name] = coll
        if coll._moving is not None:
            coll.rebalance()
        return coll

    __getitem__ = get_collection

    def drop_collection(self, name: str) -> None:
        """Remove a sharded collection: its replicas' folders and its layout."""
        coll = self.get_collection(name)
        coll.close(remove=True)
        self._layout(name).unlink()
        self._open.pop(name, None)

    def close(self) -> None:
        for coll in self._open.values():
            coll.close()
        self._open.clear()


@dataclass(eq=False)  # one replica is itself only
class Replica:
    shard: str
    folder: str
    node: str
    actor: Any = None
    alive: bool = True


class ShardedCollection:
    """The ``Collection`` interface over shards on Ray (see the module docstring). Made by
    :meth:`RayDatabase.create_collection` and ``get_collection``. Safe to share between
    threads: writes and each step of a move are serialized, searches are not."""

    def __init__(self, db: RayDatabase, name: str, layout: dict[str, Any]) -> None:
        self.name = name
        self.db = db
        self.layout = layout
        self.schema = CollectionSchema.from_dict(layout["schema"])
        self.ring = HashRing.from_dict(layout["ring"])
        self._moving = None if layout["moving"] is None else HashRing.from_dict(layout["moving"])
        self._replicas: dict[str, list[Replica]] = {}
        self._lock = threading.RLock()  # writes, and each step of a move
        self._saving = threading.Lock()  # the layout file
        self._version = 0  # bumped when a move starts or ends (a read across one retries)
        self._embedders: dict[str, Any] = {}  # attached in this process (use_embedder)
        self.closed = self.dropped = False

    # -- layout and replicas -----------------------------------------------------------------
    def _save(self) -> None:
        with self._saving:
            self._save_now()

    def _save_now(self) -> None:
        self.layout["ring"] = self.ring.to_dict()
        self.layout["moving"] = None if self._moving is None else self._moving.to_dict()
        self.layout["shards"] = {s: [{"folder": r.folder, "node": r.node, "alive": r.alive}
                                     for r in reps] for s, reps in list(self._replicas.items())}
        path = self.db._layout(self.name)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.layout, indent=1))
        os.replace(tmp, path)

    def _actor(self, rep: Replica) -> Any:
        """Start ``rep``'s actor on its node, with the node's cores shared among the
        collection's replicas there as its BLAS/OpenMP threads (Ray gives an actor of no
        CPUs one thread, which left an exact search in a shard 2x slower than in-process)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        threads = str(self._threads(rep.node))
        actor = replica_class().options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(rep.node, soft=False),
            num_cpus=0, max_restarts=0, max_concurrency=8,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": threads}},
        ).remote(rep.folder, self.name, self.layout["schema"], self.layout["segment_rows"])
        return actor

    def _threads(self, node: str) -> int:
        """The threads a replica on ``node`` gets: the node's CPUs over the replicas the
        collection puts on each node (its shards times replicas, spread over the nodes)."""
        import ray

        live = [n for n in ray.nodes() if n["Alive"]]  # (one call to the cluster's state)
        cpus = next((n["Resources"].get("CPU", 1) for n in live if n["NodeID"] == node), 1)
        shards = len((self._moving or self.ring).shards)
        per_node = -(-shards * self.layout["replicas"] // max(1, len(live)))
        return max(1, int(cpus) // per_node)

    def _start_shard(self, shard: str, at: int) -> None:
        """Start ``shard``'s replicas on distinct live nodes, from the ``at``-th one on."""
        import ray

        nodes = _live_nodes()
        reps: list[Replica] = []
        try:
            for j in range(self.layout["replicas"]):
                node = nodes[(at + j) % len(nodes)]
                folder = str(self.db.root / self.name / f"{shard}-{_token()}")
                rep = Replica(shard, folder, node)
                rep.actor = self._actor(rep)
                reps.append(rep)
            ray.get([r.actor.count.remote() for r in reps], timeout=self.db.timeout)  # started
        except BaseException:  # a shard starts whole or not at all: the replicas that did
            closing = [r.actor.close.remote(True) for r in reps]  # remove their folders
            with contextlib.suppress(Exception):  # (best effort, one bounded wait: the
                ray.get(closing, timeout=CLEANUP_S)  # first error is the one to raise)
            for r in reps:
                _kill(r.actor)
            raise
        self._replicas[shard] = reps

    def replicas(self) -> dict[str, list[dict[str, Any]]]:
        """Each shard's replicas: their node, folder and whether they are live."""
        return {s: [{"node": r.node, "folder": r.folder, "alive": r.alive} for r in reps]
                for s, reps in self._replicas.items()}

    def _live(self, shard: str) -> list[Replica]:
        return [r for r in self._replicas.get(shard, []) if r.alive]

    def _lost(self, rep: Replica) -> None:
        """``rep`` no longer takes calls (its actor, worker or node is gone): dropped from
        its shard and from the layout, without waiting for a write under way."""
        if rep.alive and not self.closed:
            rep.alive = False
            self._save()
            _kill(rep.actor)  # (one that only timed out must not take calls any more)

    # -- calls -------------------------------------------------------------------------------
    def _write_all(self, calls: Mapping[str, tuple[str, tuple[Any, ...]]], *,
                   timeout: float | None = -1.0) -> dict[str, Any]:
        """``calls[shard] = (method, args)`` on every live replica of each shard at once; the
        answer of each shard (its first replica's). Raises the replicas' own error (bad
        input, a duplicate id) or :class:`ShardUnavailable` where a shard has none left. A
        replica that does not answer in ``timeout`` seconds (the database's by default;
        ``None``: no limit) is dropped, unless it is its shard's last."""
        down = _down_errors()
        timeout = self.db.timeout if timeout == -1.0 else timeout
        sent = [(shard, rep, getattr(rep.actor, method).remote(*args))
                for shard, (method, args) in calls.items() for rep in self._live(shard)]
        out: dict[str, Any] = {}
        values = _all(sent, timeout)
        if values is not None:  # the common case: every one committed
            for (shard, _, _), value in zip(sent, values, strict=True):
                out.setdefault(shard, value)
        error: BaseException | None = None
        for shard, rep, ref in sent if values is None else ():  # which failed, and how
            try:
                got = _get(ref, timeout)
            except down as e:
                if _slow(e) and len(self._live(shard)) == 1:
                    error = error or e  # its last replica: slow, not lost (not acknowledged)
                else:
                    self._lost(rep)
                continue
            except Exception as e:  # the replica refused it: each live one refuses alike
                error = error or e
                continue
            out.setdefault(shard, got)
        if error is not None:
            raise error
        missing = tuple(s for s in calls if s not in out)
        if missing:
            raise ShardUnavailable(f"no live replica of shard(s) {list(missing)} of "
                                   f"{self.name!r}", missing)
        return out

    def _read_all(self, method: str, args: tuple[Any, ...],
                  shards: Sequence[str] | None = None) -> tuple[dict[str, Any], list[str]]:
        """``method(*args)`` on one live replica of each shard at once, the next replica
        where one is lost; the answers, and the shards no replica answered."""
        down = _down_errors()
        todo = list(self._replicas if shards is None else shards)
        tried: dict[str, list[Replica]] = {s: [] for s in todo}
        out: dict[str, Any] = {}
        while todo:
            sent = []
            for shard in todo:
                live = [r for r in self._live(shard) if r not in tried[shard]]
                if live:  # reads spread over the replicas
                    rep = live[_turn() % len(live)]
                    tried[shard].append(rep)
                    sent.append((shard, rep, getattr(rep.actor, method).remote(*args)))
            todo = []
            values = _all(sent, self.db.timeout)
            if values is not None:  # the common case: every one answered
                out.update((shard, value) for (shard, _, _), value in zip(sent, values,
                                                                          strict=True))
                continue
            error: BaseException | None = None
            for shard, rep, ref in sent:  # (each again, to tell which failed and how)
                try:
                    out[shard] = _get(ref, self.db.timeout)
                except down as e:
                    if not (_slow(e) and len(self._live(shard)) == 1):
                        self._lost(rep)  # (a slow last replica stays: the read is partial)
                    todo.append(shard)
                except Exception as e:  # the replica refused it: each refuses alike
                    error = error or e  # (raised once every call is in: none unread)
            if error is not None:
                raise error
        missing = [s for s in tried if s not in out]
        return out, missing

    def _read_each(self, method: str, args: tuple[Any, ...],
                   shards: Sequence[str] | None = None) -> dict[str, Any]:
        out, missing = self._read_all(method, args, shards)
        if missing:
            raise ShardUnavailable(f"no live replica of shard(s) {missing} of {self.name!r}",
                                   tuple(missing))
        return out

    # -- writing -----------------------------------------------------------------------------
    def add(self, ids: Sequence[int | str], vectors: Mapping[str, Any] | Any = None,
            payloads: Sequence[dict[str, Any] | None] | None = None) -> None:
        """Insert new items; raises ``DuplicateId`` (and writes nothing) if any id exists."""
        self._write(ids, vectors, payloads, replace=False)

    def upsert(self, ids: Sequence[int | str], vectors: Mapping[str, Any] | Any = None,
               payloads: Sequence[dict[str, Any] | None] | None = None) -> None:
        """Insert items, replacing (vectors and payload) any that already exist."""
        self._write(ids, vectors, payloads, replace=True)

    def _write(self, ids: Any, vectors: Any, payloads: Any, *, replace: bool) -> None:
        keys = v.check_ids(ids)
        n = len(keys)
        data = self._check_vectors(vectors, n)  # (raises before any shard changes)
        _, objs = v.check_payloads(payloads, n)
        if n == 0:
            return
        with self._lock:
            self._check_open()
            ring = self._moving or self.ring
            if not replace:
                there = [k for k, item in zip(keys, self.get(keys), strict=True) if item]
                if there:
                    raise DuplicateId(f"ids already exist: {there[:5]!r}"
                                      f"{' ...' if len(there) > 5 else ''}")
            self._write_all(_routed(ring, "write", keys, data, objs, replace))
            if self._moving is not None:  # what the old ring put elsewhere is gone there
                self._write_all(self._elsewhere(keys, ring, self.ring))

    def delete(self, ids: Sequence[int | str]) -> int:
        """Delete items by id (unknown ids ignored); how many were deleted."""
        keys = v.check_ids(ids, ordered=False)
        with self._lock:
            self._check_open()
            rings = [self.ring] if self._moving is None else [self._moving, self.ring]
            calls: dict[str, tuple[str, tuple[Any, ...]]] = {}
            done = 0
            for ring in rings:
                calls = {s: ("delete", ([keys[i] for i in pos],))
                         for s, pos in ring.split(keys).items()}
                done += sum(self._write_all(calls).values())
            return done

    def _elsewhere(self, keys: list[Any], new: HashRing, old: HashRing
                   ) -> dict[str, tuple[str, tuple[Any, ...]]]:
        """Deletes, on their old shards, of the ``keys`` the new ring moves."""
        gone: dict[str, list[Any]] = {}
        for shard, pos in old.split(keys).items():
            for i in pos:
                if new.shard_of(keys[i]) != shard:
                    gone.setdefault(shard, []).append(keys[i])
        return {s: ("delete", (ks,)) for s, ks in gone.items()}

    def _check_vectors(self, vectors: Any, n: int) -> dict[str, Any]:
        """Each field's input checked as a collection checks it (bad input raises here,
        before any shard changes), then given to the replicas as it came: each checks and
        prepares it once, as one collection would (normalizing rows checked here again
        could move them by an ulp)."""
        fields = dict(self.schema.vectors)
        check_inputs(fields, vectors, n)
        return dict(vectors) if isinstance(vectors, Mapping) else {next(iter(fields)): vectors}

    # -- reading -----------------------------------------------------------------------------
    def get(self, ids: Sequence[int | str]) -> list[Any]:
        """Fetch items by id; ``None`` where an id does not exist. Raises
        :class:`ShardUnavailable` where a shard holding some of them has no live replica."""
        keys = v.check_ids(ids)
        self._check_open()
        while True:
            version = self._version
            with self._steady():
                out: list[Any] = [None] * len(keys)
                rings = [self.ring] if self._moving is None else [self.ring, self._moving]
                for ring in rings:  # while moving: the old shard, then the new one
                    want = [i for i in range(len(keys)) if out[i] is None]
                    for shard, pos in ring.split([keys[i] for i in want]).items():
                        got = self._read_each("get", ([keys[want[i]] for i in pos],), [shard])
                        for i, item in zip(pos, got[shard], strict=True):
                            out[want[i]] = item
            if self._version == version:
                return out

    def __len__(self) -> int:
        self._check_open()
        with self._lock:  # (not in the middle of a move's step)
            return sum(self._read_each("count", ()).values())

    def __contains__(self, key: object) -> bool:
        return self.get([key])[0] is not None  # type: ignore[list-item]

    def find(self, filter: Mapping[str, Any] | None = None) -> list[int | str]:
        """The ids of the items matching ``filter``, shard by shard."""
        self._check_open()
        if filter is not None:
            parse_filter(filter)  # refused here, as one collection refuses it
        with self._lock:
            got = self._read_each("find", (filter,))
        return [k for shard in sorted(got) for k in got[shard]]

    def search(self, query: Any, k: int = 10, **knobs: Any) -> SearchResult:
        """Top-k over every shard, as :meth:`polyvec.Collection.search` takes it (``filter``,
        ``target_recall``, ``ef`` ... pass through to every shard). ``info["shards"]``: each
        shard's info; ``info["partial"]``: the shards left out (no live replica), only where
        there are some. A hybrid query (a dict of field -> query) searches each field over
        every shard, merges, and fuses the merged lists here, as one collection fuses its
        own (``fusion``, ``weights``, ``min_score`` per field)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"k: expected an int >= 1, got {k!r}")
        unknown = sorted(set(knobs) - _SEARCH_KNOBS)
        if unknown:  # (as a Python call with an unknown keyword fails)
            raise TypeError(f"ShardedCollection.search() got an unexpected keyword argument "
                            f"{unknown[0]!r}")
        knobs = {name: x for name, x in knobs.items() if x is not None}
        if knobs.get("field") is None and isinstance(query, Mapping) and \
                any(isinstance(f, str) for f in query):
            return self._hybrid(query, k, knobs)
        if "fusion" in knobs or "weights" in knobs:
            raise InvalidArgument("search: fusion and weights apply to a hybrid query (a dict "
                                  "of field -> query)")
        if "min_relevance" in knobs:
            raise InvalidArgument("search: min_relevance is not taken by a sharded collection "
                                  "(each shard would calibrate its own); use min_score")
        min_score = knobs.pop("min_score", None)
        if min_score is not None:
            min_score = v.check_min_score(min_score)
        self._check_open()
        self._check_query(query, knobs)
        bm25 = self._bm25(knobs.get("field"))
        while True:
            version, moving = self._version, self._moving is not None
            with self._steady():
                if bm25 is None:
                    got, missing = self._read_all("search", (query, k, knobs))
                else:  # each shard scores with the statistics summed over all of them
                    got, missing = self._search_bm25(query, k, bm25, knobs)
            if self._version == version:
                break
        if not got:
            raise ShardUnavailable(f"no live replica of any shard of {self.name!r}",
                                   tuple(missing))
        parts = [got[s] for s in sorted(got)]
        ids, scores = merge_topk(parts, k, unique=moving)
        if min_score is not None:  # (scored as one collection: a BM25 score needs the sums)
            ids[scores < min_score] = None
            scores[scores < min_score] = -np.inf
        info: dict[str, Any] = {"strategy": "sharded", "shards": {s: got[s].info for s in got}}
        estimates = [r.info.get("recall_estimate") for r in parts]
        if all(e is not None for e in estimates):
            info["recall_estimate"] = min(estimates)
        if missing:
            info["partial"] = sorted(missing)
        return SearchResult(ids, scores, info)

    def _hybrid(self, queries: Mapping[str, Any], k: int, knobs: dict[str, Any]
                ) -> SearchResult:
        """Each field's list merged over the shards (so each is one collection's list),
        fused here; ``info["partial"]``: the shards any field's search left out."""
        filter, fusion, weights, min_score = (knobs.pop(name, None) for name in (
            "filter", "fusion", "weights", "min_score"))
        if "min_relevance" in knobs:
            raise InvalidArgument("search: min_relevance applies to one field's search; a "
                                  "hybrid query takes min_score per field")
        res = hybrid_search(self.search, self._field, self.__len__, queries, k, filter, fusion,
                            weights, min_score, knobs)
        missing = sorted({s for r in res.info["retrievers"].values()
                          for s in r.get("partial", ())})
        if missing:
            res.info["partial"] = missing
        return res

    def _check_query(self, query: Any, knobs: Mapping[str, Any]) -> None:
        """Refuse here what every shard would refuse (an unknown field, a query of the wrong
        shape, a bad filter), with one collection's error, before any shard is called."""
        if knobs.get("filter") is not None:
            parse_filter(knobs["filter"])
        spec = self._field(self._name(knobs.get("field")))
        if "model" not in knobs:  # (a model version's query is the shards' to refuse)
            kind_of(spec).check_query(spec, query)

    def _field(self, name: str) -> FieldSpec:
        fields = dict(self.schema.vectors)
        if not isinstance(name, str) or name not in fields:
            raise UnknownField(f"field: expected one of {list(fields)}, got {name!r}")
        return fields[name]

    def _name(self, field: str | None) -> str:
        """``field``, or the only field when ``None`` (else :class:`UnknownField`)."""
        if field is None:
            names = [name for name, _ in self.schema.vectors]
            if len(names) != 1:
                raise UnknownField(f"field: this collection has several vector fields {names}; "
                                   "name one")
            return names[0]
        self._field(field)
        return field

    def _bm25(self, field: str | None) -> str | None:
        """The BM25 field a search of ``field`` reads, if it is one."""
        fields = dict(self.schema.vectors)
        name = field if field is not None else next(iter(fields)) if len(fields) == 1 else None
        return name if isinstance(fields.get(name), BM25) else None  # type: ignore[arg-type]

    def _search_bm25(self, query: Any, k: int, field: str, knobs: dict[str, Any]
                     ) -> tuple[dict[str, Any], list[str]]:
        """A BM25 search scored as one collection holding every item would score it: each
        shard's statistics for the query (live documents, total length, each term's
        document frequency) summed, then every shard searched with the sums. A shard with no
        live replica is left out of both (``partial``)."""
        extra = set(knobs) - {"field", "filter"}
        if extra:
            raise InvalidArgument(f"search: a BM25 field takes field and filter, got "
                                  f"{sorted(extra)}")
        parts, missing = self._read_all("statistics", (query, field))
        total: dict[str, Any] = {"n": 0, "total": 0, "df": {}}
        for stats in parts.values():
            total["n"] += stats["n"]
            total["total"] += stats["total"]
            for term, df in stats["df"].items():
                total["df"][term] = total["df"].get(term, 0) + df
        got, lost = self._read_all("search_as", (query, k, total, field, knobs.get("filter")),
                                   list(parts))
        return got, sorted({*missing, *lost})

    # -- texts: embedders attached on the driver ---------------------------------------------
    def use_embedder(self, field: str, embedder: Any) -> None:
        """Attach ``embedder`` to ``field`` for :meth:`add_texts`, :meth:`search_text` and
        :func:`~polyvec.distributed.ingest` (which rebuilds a built-in model in each Ray
        worker, or sends this one there). The first embedder attached to a field records its
        model in the layout; later ones must match it (:class:`ModelMismatch`)."""
        spec = self._field(field)
        model = getattr(embedder, "spec", None)
        if not isinstance(model, ModelSpec):
            raise InvalidArgument(f"embedder: expected an object with a ModelSpec `.spec`, got "
                                  f"{type(embedder).__name__}")
        check_compatible(field, spec, model)
        with self._lock:
            self._check_open()
            recorded = self.model_of(field)
            if recorded is None:
                self.layout.setdefault("models", {})[field] = model.to_dict()
                self._save()
            elif recorded != model:
                raise ModelMismatch(f"field {field!r} holds vectors of {recorded.name!r} "
                                    f"(revision {recorded.revision!r}); the embedder is "
                                    f"{model.name!r} (revision {model.revision!r})")
            self._embedders[field] = embedder

    def model_of(self, field: str | None = None) -> ModelSpec | None:
        """The model recorded for ``field`` (``None`` before an embedder was attached)."""
        name = self._name(field)
        got = self.layout.get("models", {}).get(name)
        return None if got is None else ModelSpec.from_dict(got)

    def embedders(self) -> dict[str, Any]:
        """The embedders attached in this process, by field."""
        return dict(self._embedders)

    def _embedder(self, field: str) -> Any:
        if field not in self._embedders:
            raise UnknownField(f"field {field!r} has no embedder attached; call "
                               f"use_embedder({field!r}, embedder) first")
        return self._embedders[field]

    def add_texts(self, texts: Sequence[str], ids: Sequence[int | str],
                  payloads: Sequence[dict[str, Any] | None] | None = None, *,
                  vectors: Mapping[str, Any] | None = None, upsert: bool = False,
                  batch_size: int = 32) -> None:
        """Embed ``texts`` here with each field's embedder (a BM25 field takes the texts
        themselves; ``vectors`` gives the other fields'), then add or ``upsert`` them."""
        texts = check_texts(texts)
        data = dict(vectors or {})
        for name, spec in self.schema.vectors:
            if name not in data:
                data[name] = texts if isinstance(spec, BM25) else \
                    self._embedder(name).embed_documents(texts, batch_size=batch_size)
        (self.upsert if upsert else self.add)(ids, data, payloads)

    def search_text(self, query: str | Sequence[str], k: int = 10, *, field: str | None = None,
                    filter: Mapping[str, Any] | None = None, fields: Sequence[str] | None = None,
                    **knobs: Any) -> SearchResult:
        """Embed ``query`` (one text or a list) with the field's embedder and search; a BM25
        field takes the text itself. ``fields=[...]`` makes a hybrid search of several
        (``fusion``, ``weights``, ``min_score``: see :meth:`search`)."""
        single = isinstance(query, str)
        texts = [query] if single else check_texts(query, "query")
        names = [self._name(field)] if fields is None else list(fields)

        def made(name: str) -> Any:
            if isinstance(self._field(name), BM25):
                return query if single else texts
            vecs = self._embedder(name).embed_queries(texts)
            return vecs[0] if single else vecs

        if fields is None:
            return self.search(made(names[0]), k, field=names[0], filter=filter, **knobs)
        return self.search({f: made(f) for f in names}, k, filter=filter, **knobs)

    # -- indexes and maintenance -------------------------------------------------------------
    def create_index(self, field: str, spec: Any, **knobs: Any) -> None:
        """Build (and calibrate) ``field``'s index on every replica of every shard at once;
        knobs (``sample_queries`` ...) pass through."""
        with self._lock:
            self._check_open()
            self._write_all({s: ("create_index", (field, spec, knobs)) for s in self._replicas},
                            timeout=None)  # (as long as the build takes)
            self.layout["indexes"][field] = str(spec)  # for shards and replicas made later
            self._save()

    def _index(self, shard: str) -> None:
        """Build the recorded indexes on ``shard`` (a new one, or one with a new replica),
        calibrated on pseudo-queries (the sample queries given are not kept)."""
        for field, spec in self.layout.get("indexes", {}).items():
            self._write_all({shard: ("create_index", (field, spec, {}))}, timeout=None)

    def flush(self) -> None:
        with self._lock:
            self._check_open()
            self._write_all({s: ("flush", ()) for s in self._replicas}, timeout=None)

    def info(self) -> dict[str, Any]:
        self._check_open()
        got, missing = self._read_all("info", ())
        return {"name": self.name, "ring": self.ring.to_dict(), "replicas": self.replicas(),
                "moving": None if self._moving is None else self._moving.to_dict(),
                "shards": got, "missing": missing}

    # -- scaling -----------------------------------------------------------------------------
    def add_shard(self, *, limit: int | None = None) -> str:
        """Add a shard and move to it the items the new ring gives it (about 1/N of them);
        its name. ``limit``: stop after that many batches (the move stays recorded:
        :meth:`rebalance` resumes it)."""
        with self._lock:
            self._check_open()
            if self._moving is not None:
                raise InvalidArgument("a move is under way: resume it with rebalance() first")
            if len(self.ring.shards) >= limits.MAX_SHARDS:
                raise InvalidArgument(f"add_shard: expected fewer shards than "
                                      f"polyvec.limits.MAX_SHARDS = {limits.MAX_SHARDS}, got "
                                      f"{len(self.ring.shards)}")
            name = f"s{max(int(s[1:]) for s in self.ring.shards) + 1}"
            self._start_shard(name, len(self.ring.shards))
            self._moving = self.ring.with_shard(name)
            self._version += 1
            self._save()
        self.rebalance(limit=limit)
        return name

    def rebalance(self, *, limit: int | None = None, batch: int = MOVE_BATCH) -> bool:
        """Move the items of a move under way to their shards under the new ring, in
        batches (each copied where absent, then deleted where it was: a newer write there
        wins, nothing is lost or left twice); whether it finished. Writes go on meanwhile
        (each waits for one batch at most)."""
        target = self._moving
        if target is None:
            return True
        steps = 0
        for shard in self.ring.shards:
            keys = self._read_each("ids", (), [shard])[shard]
            leaving = [key for key in keys if target.shard_of(key) != shard]
            for lo in range(0, len(leaving), batch):
                if limit is not None and steps >= limit:
                    return False
                self._move(shard, leaving[lo:lo + batch], target)
                steps += 1
        with self._lock:
            self.ring, self._moving = target, None
            self._version += 1
            self._save()
        for shard in target.shards:
            if not self._indexed(shard):
                self._index(shard)
        return True

    def _indexed(self, shard: str) -> bool:
        want = set(self.layout.get("indexes", {}))
        if not want:
            return True
        info = self._read_each("info", (), [shard])[shard]
        return want <= set(info.get("indexes", {}))

    def _move(self, shard: str, keys: list[Any], target: HashRing) -> None:
        with self._lock:
            ids, vectors, payloads = self._read_each("export", (keys,), [shard])[shard]
            if ids:
                self._write_all(_routed(target, "add_absent", ids, vectors, payloads))
            self._write_all({shard: ("delete", (keys,))})

    def repair(self) -> dict[str, int]:
        """Bring every shard back to its replica count: a new replica on a live node that
        holds none of the shard's, filled from a live one (writes wait meanwhile); the
        replicas made per shard."""
        made: dict[str, int] = {}
        down = _down_errors()
        with self._lock:
            self._check_open()
            nodes = _live_nodes()
            for shard in list(self._replicas):
                tried: set[str] = set()
                while self._live(shard) and len(self._live(shard)) < self.layout["replicas"]:
                    used = {r.node for r in self._live(shard)} | tried
                    free = [n for n in nodes if n not in used]
                    if not free:
                        break
                    tried.add(free[0])
                    rep = Replica(shard, str(self.db.root / self.name / f"{shard}-{_token()}"),
                                  free[0])
                    try:
                        rep.actor = self._actor(rep)
                        self._fill(self._live(shard)[0], rep)
                    except down:  # the node went too, or the source did: try another
                        _kill(rep.actor)
                        continue
                    self._replicas[shard].append(rep)
                    made[shard] = made.get(shard, 0) + 1
                if made.get(shard):
                    self._index_replica(self._replicas[shard][-made[shard]:])
            self._save()
        return made

    def _index_replica(self, reps: list[Replica]) -> None:
        for field, spec in self.layout.get("indexes", {}).items():
            for rep in reps:
                _get(rep.actor.create_index.remote(field, spec, {}), None)

    def _fill(self, source: Replica, rep: Replica) -> None:
        """Copy every item of ``source`` to the new replica ``rep`` (writes wait meanwhile)."""
        keys = _get(source.actor.ids.remote(), None)
        for lo in range(0, len(keys), MOVE_BATCH):
            ids, vectors, payloads = _get(source.actor.export.remote(keys[lo:lo + MOVE_BATCH]),
                                          None)
            _get(rep.actor.add_absent.remote(ids, vectors, payloads), None)
        _get(rep.actor.flush.remote(), None)

    def close(self, *, remove: bool = False) -> None:
        """Stop the replicas (``remove``: deleting their folders)."""
        with self._lock:
            if self.closed:
                return
            self.closed, self.dropped = True, remove
            for reps in self._replicas.values():
                for r in reps:
                    if r.alive:
                        with contextlib.suppress(*_down_errors()):
                            _get(r.actor.close.remote(remove), self.db.timeout)
                    _kill(r.actor)

    def _steady(self) -> Any:
        """While a move is under way, the writers' lock (a read then sees each step of the
        move whole: an item on one shard or the other, never on neither); else nothing."""
        return self._lock if self._moving is not None else contextlib.nullcontext()

    def _check_open(self) -> None:
        if self.dropped:
            raise CollectionDropped(f"sharded collection {self.name!r}: expected a live "
                                    "collection, got one dropped through this database")
        if self.closed:
            raise CollectionClosed(f"sharded collection {self.name!r}: expected an open "
                                   "handle, got one that was closed")


# the keyword arguments of Collection.search, which every shard's search takes
_SEARCH_KNOBS = frozenset(inspect.signature(Collection.search).parameters) - {
    "self", "query", "k"}


def _routed(ring: HashRing, method: str, ids: list[Any], vectors: Mapping[str, Any],
            payloads: list[Any], *args: Any) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """``method(ids, vectors, payloads, *args)`` calls for the shards ``ring`` routes the
    items to, each with its own items."""
    return {shard: (method, ([ids[i] for i in pos], {f: take(x, pos) for f, x in vectors.items()},
                             [payloads[i] for i in pos], *args))
            for shard, pos in ring.split(ids).items()}


def merge_topk(parts: Sequence[SearchResult], k: int, *, unique: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of the shards' results by score (a higher score first; equal scores in
    shard order), keeping each result's shape (one query: 1-D; a batch: 2-D); ``unique``
    keeps an id's first hit only (an item may sit on two shards while it is moved)."""
    single = parts[0].ids.ndim == 1
    ids = np.concatenate([np.atleast_2d(p.ids) for p in parts], axis=1)
    scores = np.concatenate([np.atleast_2d(p.scores) for p in parts], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
    if unique:
        for row in range(len(ids)):
            seen: set[Any] = set()
            keep = [j for j, key in enumerate(ids[row]) if key is None or
                    (key not in seen and not seen.add(key))]  # type: ignore[func-returns-value]
            pad = ids.shape[1] - len(keep)
            ids[row] = np.r_[ids[row][keep], np.full(pad, None, dtype=object)]
            scores[row] = np.r_[scores[row][keep], np.full(pad, -np.inf, dtype=scores.dtype)]
    ids, scores = ids[:, :k], scores[:, :k]
    return (ids[0], scores[0]) if single else (ids, scores)


def _live_nodes() -> list[str]:
    import ray

    return sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])


def _down_errors() -> tuple[type[BaseException], ...]:
    """What a call raises when its replica is lost (its actor, worker or node died, or it
    did not answer in time)."""
    from ray import exceptions as e

    return (e.RayActorError, e.NodeDiedError, e.WorkerCrashedError, e.GetTimeoutError,
            e.ObjectLostError, e.LocalRayletDiedError, e.ActorUnschedulableError)


def _all(sent: list[tuple[str, Replica, Any]], timeout: float | None) -> list[Any] | None:
    """The answers of every call in ``sent`` (one wait for all), or ``None`` where any
    failed (the caller then waits for each to tell)."""
    try:
        return list(_get([ref for _, _, ref in sent], timeout))
    except Exception:  # noqa: BLE001 - told apart call by call by the caller
        return None


def _slow(error: BaseException) -> bool:
    from ray.exceptions import GetTimeoutError

    return isinstance(error, GetTimeoutError)


def _kill(actor: Any) -> None:
    import ray

    if actor is not None:
        with contextlib.suppress(Exception):
            ray.kill(actor)


def _get(ref: Any, timeout: float | None) -> Any:
    """``ray.get``; a replica's own refusal (a polyvec error) is raised as one collection
    raises it, not wrapped in Ray's task error with the actor's traceback."""
    import ray

    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, PolyvecError):
            raise e.cause from None
        raise


_turns = iter(range(1 << 62))


def _turn() -> int:
    return next(_turns)


def _token() -> str:
    return f"{int(time.time() * 1000):x}-{os.urandom(3).hex()}"

