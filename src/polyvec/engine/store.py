"""The segment store: a collection's state and every change to it (the writer side).

It owns the SQLite catalog (write log, payloads, segment registry), the write lock, the live
table (ids + indexed payload columns), the growing buffer of each field and the sealed
segments; it loads and verifies them, writes batches, seals, compacts, removes orphans after a
crash, and reloads when another process committed. After every change it publishes a new
:class:`~polyvec.engine.snapshot.Snapshot` (one attribute assignment), which searches read
without a lock. Everything here runs under ``mutex`` (one writer per handle; the write lock
orders writers across processes).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from secrets import token_hex
from typing import Any

import numpy as np

from .._growing import GrowingField
from .._live import LiveTable, isin_sorted
from ..errors import CorruptFile, DuplicateId, Locked, UnknownField
from ..fields import kind_of
from ..spec import CollectionSchema, FieldSpec, ModelSpec
from ..storage import Catalog, ItemRow, WriteLock, open_segment, write_segment
from ..storage.catalog import SegmentRow
from ..storage.catalog import Snapshot as CatalogSnapshot
from .indexes import INDEXES, IndexManager, index_orphans
from .snapshot import Segment, Snapshot

__all__ = ["CATALOG", "SEGMENTS", "SegmentStore"]

CATALOG = "catalog.sqlite"
SEGMENTS = "segments"
RETRIES = 20  # reloads when another process commits while we read


class SegmentStore:
    """State and writes of one collection folder (see the module docstring)."""

    def __init__(self, path: Path, *, lock_timeout: float = 10.0, verify: bool = True) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.verify = verify
        self.segments: list[Segment] = []
        self.mutex = threading.RLock()
        self.lock = WriteLock(self.path / "LOCK", lock_timeout)
        self.catalog = Catalog.open(self.path / CATALOG, busy_timeout=lock_timeout)
        self.indexes = IndexManager(self)
        self.version = -1
        self.snap: Snapshot | None = None

    def open(self) -> None:
        """Load, and remove a crash's orphans when no other writer is active."""
        if self.lock.try_acquire():
            try:
                self.load()
                self.remove_orphans()
            finally:
                self.lock.release()
        else:
            self.load()

    # -- loading --------------------------------------------------------------------------
    def load(self) -> None:
        """(Re)build the in-memory state from the catalog and the segment files.

        A writer in another process may commit (and a compaction delete old segment files)
        between reading the catalog and opening the files: then the data version has moved,
        and the load starts over from the newer catalog.
        """
        for _ in range(RETRIES):
            version, snap = self.catalog.snapshot()
            try:
                self._build(snap)
            except CorruptFile:
                if self.catalog.data_version() != version:
                    continue  # changed under us: not corruption
                raise
            self.version = version
            self.publish()
            return
        raise Locked(f"{self.name}: the collection changed {RETRIES} times while loading")

    def _build(self, snap: CatalogSnapshot) -> None:
        try:
            self.schema = CollectionSchema.from_dict(snap.meta["schema"])
            self.segment_rows = int(snap.meta["segment_rows"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptFile(str(self.catalog.path), f"bad schema in meta: {e}") from None
        self.fields: dict[str, FieldSpec] = self.schema.fields
        self.meta = snap.meta  # model versions, mappings, backfill state (see upgrade)
        try:
            self.models = {f: ModelSpec.from_dict(d)
                           for f, d in snap.meta.get("models", {}).items()}
        except (TypeError, ValueError) as e:
            raise CorruptFile(str(self.catalog.path), f"bad model specs in meta: {e}") from None
        payloads = [json.loads(r.payload) for r in snap.items] if self.schema.indexed else None
        live = LiveTable(self.schema.indexed)
        live.append(np.array([r.seq for r in snap.items], dtype=np.int64),
                    [r.key for r in snap.items], payloads)
        self.live = live
        self.growing: dict[str, GrowingField] = {}
        growing_seqs = None
        for name, spec in self.fields.items():
            kind = kind_of(spec)
            g = kind.new_growing(spec)
            rows = snap.vectors.get(name, [])
            seqs = np.array([s for s, _ in rows], dtype=np.int64)
            try:
                data = kind.from_blobs(spec, [d for _, d in rows])
            except ValueError:
                raise CorruptFile(str(self.catalog.path), f"field {name!r}: vector blob has "
                                  "the wrong size") from None
            g.extend(seqs, data)
            if growing_seqs is not None and not np.array_equal(growing_seqs, seqs):
                raise CorruptFile(str(self.catalog.path), "growing vector rows disagree across "
                                  "fields")
            growing_seqs = seqs
            self.growing[name] = g
        # segment files are immutable and uniquely named: keep the ones already open (verified)
        opened = {s.row.name: s for s in self.segments}
        self.segments = [opened[r.name] if r.name in opened and opened[r.name].row == r
                         else self.open_segment(r) for r in snap.segments]
        self.indexes.load(snap.indexes, snap.meta)
        self._check_coverage(growing_seqs if growing_seqs is not None else np.zeros(0, np.int64))

    def open_segment(self, row: SegmentRow) -> Segment:
        files = open_segment(self.path / SEGMENTS / row.name, row.manifest, verify=self.verify)
        where = str(files.path)
        try:
            seqs = files["seqs"]
            fields: dict[str, Any] = {}
            for name, spec in self.fields.items():
                fields[name], ok = kind_of(spec).open_sealed(name, spec, files, row.nrows)
                if not ok:
                    raise CorruptFile(where, f"field {name!r}: arrays do not match the catalog")
        except KeyError as e:
            raise CorruptFile(where, f"missing array {e}") from None
        if len(seqs) != row.nrows or (len(seqs) and (seqs[0] != row.min_seq
                                                     or seqs[-1] != row.max_seq)):
            raise CorruptFile(where, "row seqs do not match the catalog")
        return Segment(row, np.asarray(seqs), fields)

    def _check_coverage(self, growing_seqs: np.ndarray) -> None:
        """Every live item must have vectors in the growing segment or in a sealed one."""
        live = self.live.live_seqs()
        covered = isin_sorted(live, growing_seqs)
        for seg in self.segments:
            covered |= isin_sorted(live, seg.seqs)
        if not covered.all():
            missing = int(live[~covered][0])
            raise CorruptFile(str(self.catalog.path), f"item seq={missing} has no vectors")

    def remove_orphans(self) -> None:
        """Delete segment folders the catalog does not know (left by a crash). Writer only."""
        known = {s.row.name for s in self.segments}
        for p in (self.path / SEGMENTS).iterdir():
            if p.name not in known:
                shutil.rmtree(p, ignore_errors=True)
        for p in index_orphans(self.path, self.catalog.guard(self.catalog.index_folders)):
            shutil.rmtree(p, ignore_errors=True)

    def refresh(self) -> None:
        """Reload if another connection committed since we last looked. Under ``mutex``."""
        if self.catalog.data_version() != self.version:
            self.load()

    def publish(self) -> None:
        """Make the current state the one searches read (one attribute assignment)."""
        live = self.live
        self.snap = Snapshot(
            version=self.version,
            segments=tuple(self.segments),
            growing={n: (g.seqs.view, kind_of(self.fields[n]).growing_data(g))
                     for n, g in self.growing.items()},
            live_seqs=live.live_seqs(),
            seqs=live.seqs.view,
            keys=live.keys,
        )

    # -- reading inside a pinned catalog snapshot -----------------------------------------
    def read(self, fn: Any, *args: Any) -> Any:
        """A catalog read inside :meth:`consistent`'s pinned snapshot."""
        version, result = self.catalog.read(fn, *args)
        if version != self.version:  # cannot happen inside a pinned snapshot
            raise CorruptFile(str(self.catalog.path), "read outside the mirror's snapshot")
        return result

    def consistent(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` in one pinned read snapshot, reloading the mirror first if it is stale.

        Every catalog read of ``fn`` (payloads, SQL filters) sees the snapshot the mirror was
        built from, however fast other processes commit. The one thing that forces a retry is
        a compaction that deleted segment files after the snapshot was taken.
        """
        with self.mutex:
            for _ in range(RETRIES):
                try:
                    with self.catalog.pinned():
                        version, _ = self.catalog.read(int)
                        if version != self.version:
                            self.load()
                        return fn(*args)
                except CorruptFile:
                    if self.catalog.data_version() == self.version:
                        raise  # nothing moved: real damage
            raise Locked(f"{self.name}: segment files were replaced {RETRIES} times during "
                         "a read")

    def current(self) -> Snapshot:
        """The snapshot to search: the published one, reloaded first if another process
        committed since. Holds the mutex only for the version check (one ``PRAGMA``), and not
        at all while a writer of this handle holds it: that writer refreshed when it began
        and holds the write lock, so no other process commits meanwhile."""
        if self.mutex.acquire(blocking=False):
            try:
                if self.catalog.data_version() != self.version:
                    self.consistent(int)
            finally:
                self.mutex.release()
        snap = self.snap
        assert snap is not None
        return snap

    # -- validation -----------------------------------------------------------------------
    def field(self, name: str | None) -> tuple[str, FieldSpec]:
        if name is None:
            if len(self.fields) != 1:
                raise UnknownField(f"field: this collection has several vector fields "
                                   f"{list(self.fields)}; name one")
            name = next(iter(self.fields))
        if name not in self.fields:
            raise UnknownField(f"field: expected one of {list(self.fields)}, got {name!r}")
        return name, self.fields[name]

    def check_vectors(self, vectors: Any, n: int) -> dict[str, Any]:
        """Every field's input checked (and prepared: pooled) by its kind."""
        if not isinstance(vectors, Mapping):
            if len(self.fields) != 1:
                raise UnknownField(f"vectors: expected a dict with fields {list(self.fields)}, "
                                   f"got {type(vectors).__name__}")
            vectors = {next(iter(self.fields)): vectors}
        unknown = set(vectors) - set(self.fields)
        if unknown:
            raise UnknownField(f"unknown vector field(s) {sorted(unknown)}; this collection has "
                               f"{list(self.fields)}")
        missing = set(self.fields) - set(vectors)
        if missing:
            raise UnknownField(f"vectors: expected every field {list(self.fields)}, missing "
                               f"{sorted(missing)}")
        out = {}
        for name, spec in self.fields.items():
            kind = kind_of(spec)
            out[name] = kind.prepare(spec, kind.check_vectors(name, spec, vectors[name], n))
        return out

    # -- writing --------------------------------------------------------------------------
    def write(self, keys: list[Any], data: dict[str, Any], payload_objs: Any,
              payload_texts: list[str], *, replace: bool) -> None:
        """Commit one checked batch, then apply it to the mirror and publish."""
        n = len(keys)
        with self.mutex, self.lock:
            self.refresh()
            with self.catalog.transaction():
                existing = self.catalog.live_seqs(keys)
                if existing and not replace:
                    first = next(k for k in keys if k in existing)
                    raise DuplicateId(f"id {first!r} already exists; use upsert to replace it")
                self.catalog.delete_seqs(existing.values())
                first_seq = self.catalog.allocate_seqs(n)
                seqs = np.arange(first_seq, first_seq + n, dtype=np.int64)
                self.catalog.insert_items(
                    ItemRow(int(s), k, t) for s, k, t in zip(seqs, keys, payload_texts,
                                                             strict=True))
                for name, arr in data.items():
                    self.catalog.insert_vectors(
                        name, zip(seqs.tolist(), kind_of(self.fields[name]).to_blobs(arr),
                                  strict=True))
            self.version = self.catalog.data_version()
            if existing:
                self.live.kill(list(existing))
            self.live.append(seqs, keys, payload_objs)
            for name, arr in data.items():
                self.growing[name].extend(seqs, arr)
            self.publish()
            if self.growing_live() >= self.segment_rows:
                self.seal()

    def delete(self, keys: list[Any]) -> int:
        with self.mutex, self.lock:
            self.refresh()
            with self.catalog.transaction():
                existing = self.catalog.live_seqs(keys)
                self.catalog.delete_seqs(existing.values())
            self.version = self.catalog.data_version()
            self.live.kill(list(existing))
            self.publish()
            return len(existing)

    def growing_live(self) -> int:
        g = next(iter(self.growing.values()))
        return int(isin_sorted(g.seqs.view, self.live.live_seqs()).sum()) if len(g) else 0

    def flush(self) -> None:
        with self.mutex, self.lock:
            self.refresh()
            self.seal()

    def seal(self) -> None:
        """Write the growing rows still alive as a sealed segment. Writer only."""
        g0 = next(iter(self.growing.values()))
        if len(g0) == 0:
            return
        alive = isin_sorted(g0.seqs.view, self.live.live_seqs())
        rows = np.flatnonzero(alive)
        if len(rows):
            seqs = g0.seqs.view[rows]
            arrays: dict[str, np.ndarray] = {"seqs": seqs}
            for name, g in self.growing.items():
                kind = kind_of(self.fields[name])
                arrays |= kind.sealed_arrays(name, kind.take(g.data, rows))
            self.commit_segments([arrays], remove=[], drop_upto=int(g0.seqs.view[-1]),
                                 growing_sealed=True)
            self.indexes.ensure_indexes()
        else:
            with self.catalog.transaction():
                self.catalog.register_segments([], [], int(g0.seqs.view[-1]))
            self.version = self.catalog.data_version()
            self._reset_growing()
        self.catalog.reclaim()

    def _reset_growing(self) -> None:
        self.growing = {n: kind_of(s).new_growing(s) for n, s in self.fields.items()}
        self.publish()

    def commit_segments(self, outputs: list[dict[str, np.ndarray]], remove: list[str],
                        drop_upto: int | None, *, growing_sealed: bool = False,
                        register: Any = None, reload: bool = False) -> list[SegmentRow]:
        """Write segment files, then register them (and retire ``remove``) in one transaction.

        ``register(rows)`` replaces the default registration inside that transaction (the
        upgrade switch records the new model there too); with ``reload`` the state is then
        reloaded from the catalog (the switch changes a field's spec). The new state is
        published at once: a search never sees a row twice or not at all."""
        folder = self.path / SEGMENTS
        rows = []
        for arrays in outputs:
            seqs = arrays["seqs"]
            name = f"seg-{int(seqs[0]):012d}-{int(seqs[-1]):012d}-{token_hex(4)}"
            manifest = write_segment(folder, name, arrays)
            rows.append(SegmentRow(name, len(seqs), int(seqs[0]), int(seqs[-1]), manifest))
        with self.catalog.transaction():
            if register is not None:
                register(rows)
            else:
                self.catalog.register_segments(rows, remove, drop_upto)
        self.version = self.catalog.data_version()
        if reload:
            self.segments = []
            self.load()
        else:
            gone = set(remove)
            kept = [s for s in self.segments if s.row.name not in gone]
            self.segments = sorted(kept + [self.open_segment(r) for r in rows],
                                   key=lambda s: s.row.min_seq)
            if growing_sealed:
                self.growing = {n: kind_of(s).new_growing(s) for n, s in self.fields.items()}
            self.publish()
        for name in remove:
            shutil.rmtree(folder / name, ignore_errors=True)
        return rows

    def compact(self) -> None:
        """Seal, then rewrite the sealed segments without deleted rows, merging small ones."""
        with self.mutex, self.lock:
            self.refresh()
            self.seal()
            live = self.live.live_seqs()
            old = self.segments
            dead = any(not isin_sorted(s.seqs, live).all() for s in old)
            if not old or (not dead and len(old) == 1):
                return
            outputs: list[dict[str, np.ndarray]] = []
            pending: list[tuple[Segment, np.ndarray]] = []
            size = 0
            for seg in old + [None]:
                if seg is not None:
                    rows = np.flatnonzero(isin_sorted(seg.seqs, live))
                    if len(rows):
                        pending.append((seg, rows))
                        size += len(rows)
                if pending and (seg is None or size >= self.segment_rows):
                    outputs.append(self.merge_rows(pending))
                    pending, size = [], 0
            self.commit_segments(outputs, remove=[s.row.name for s in old], drop_upto=None)
            self.drop_index_folders(old)
            self.indexes.ensure_indexes()

    def drop_index_folders(self, segments: Iterable[Segment]) -> None:
        for seg in segments:
            for folder, _ in seg.indexes.values():
                shutil.rmtree(self.path / INDEXES / folder, ignore_errors=True)

    def merge_rows(self, parts: list[tuple[Segment, np.ndarray]]) -> dict[str, np.ndarray]:
        arrays = {"seqs": np.concatenate([s.seqs[r] for s, r in parts])}
        for name, spec in self.fields.items():
            kind = kind_of(spec)
            arrays |= kind.sealed_arrays(name, kind.merge(spec, [(s.fields[name], r)
                                                                 for s, r in parts]))
        return arrays

    # -- point reads ----------------------------------------------------------------------
    def vectors_of(self, seq: int) -> dict[str, np.ndarray]:
        g0 = next(iter(self.growing.values()))
        i = int(np.searchsorted(g0.seqs.view, seq))
        if i < len(g0) and g0.seqs.view[i] == seq:
            return {n: np.array(g.row(i)) for n, g in self.growing.items()}
        for seg in self.segments:
            if seg.row.min_seq <= seq <= seg.row.max_seq:
                j = int(np.searchsorted(seg.seqs, seq))
                if j < len(seg.seqs) and seg.seqs[j] == seq:
                    return {n: np.array(kind_of(self.fields[n]).row(d, j))
                            for n, d in seg.fields.items()}
        raise CorruptFile(str(self.catalog.path), f"item seq={seq} has no vectors")

    def close(self) -> None:
        with self.mutex:
            self.catalog.close()
