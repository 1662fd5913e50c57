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

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .._live import LiveTable, isin_sorted
from ..errors import (
    CollectionClosed,
    CollectionDropped,
    CorruptFile,
    DuplicateId,
    Locked,
    UnknownField,
)
from ..fields import check_inputs, kind_of
from ..filters.columns import Encoded
from ..spec import CollectionSchema, FieldSpec, ModelSpec
from ..storage import Catalog, WriteLock, open_segment, segment_name, sidecar, write_segment
from ..storage.catalog import FORMAT_VERSION, Changes, Cursor, SealedItems, SegmentRow
from ..storage.growing import ChunkRow, GrowingLog, LogRecord, PendingAppend
from ..storage.segment import Checks
from . import hooks, merge
from .indexes import INDEXES, IndexManager, index_orphans
from .maintenance import Maintenance, after_seal, commit_seal, plan_seal, write_seal
from .snapshot import Segment, Snapshot

T = TypeVar("T")

__all__ = ["CATALOG", "SEGMENTS", "SegmentStore"]

CATALOG = "catalog.sqlite"
SEGMENTS = "segments"
RETRIES = 20  # reloads when another process commits while we read
# a writer's growing buffers take room for up to this many bytes of rows at once (address
# space: pages are touched as rows arrive), up to the seal, instead of doubling (copies)
RESERVE_BYTES = 256 << 20


class _SidecarMismatch(Exception):
    """The sealed segments' item sidecars disagree with the catalog's live items."""


class SegmentStore:
    """State and writes of one collection folder (see the module docstring)."""

    def __init__(self, path: Path, *, lock_timeout: float = 10.0, verify: bool = True) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.verify = verify
        self.segments: list[Segment] = []
        self.mutex = threading.RLock()
        self.lock = WriteLock(self.path / "LOCK", lock_timeout)
        # the catalog file's whole-file integrity check runs in the background: every row the
        # open reads carries its own checksum, so nothing waits for it but the first write
        # (and ``verify``); a failure is raised by the next call after it (see check_alive)
        self.checks: Checks | None = Checks(threads=1)
        self.damage: CorruptFile | None = None
        self.tidying: threading.Thread | None = None  # removes orphans after the check
        self.catalog = Catalog.open(self.path / CATALOG, busy_timeout=lock_timeout,
                                    checks=self.checks)
        # the catalog file's identity: while this handle keeps it open its inode cannot be
        # reused, so another (dev, inode) at the path means the collection was replaced
        self.identity = self._identity()
        self.closed = False
        self.dropped = False  # set by the Database that dropped it
        self.indexes = IndexManager(self)
        self.growing_log = GrowingLog(self.path)
        self.cursor: Cursor | None = None  # what the mirror has seen of the catalog
        self.catch_ups = {"full": 0, "incremental": 0}  # how the mirror caught up (tests)
        self.version = -1
        self.snap: Snapshot | None = None
        self.masks: dict[str, np.ndarray | None] = {}  # sealed segment -> alive mask (None: all)
        self.masks_stale = False
        self.merge_policy = merge.DEFAULT_POLICY
        # seals run on the maintenance thread when an add fills the growing segment
        # (``background``; else inside that add); the folders it is writing, unregistered
        self.background = True
        self.maintenance = Maintenance(self)
        self.in_flight: set[str] = set()

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path / CATALOG)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def check_alive(self, *, read: bool = False) -> None:
        """Raise ``CollectionClosed``/``CollectionDropped`` when this handle no longer stands
        for the collection at its path (closed, dropped, or dropped and created anew). One
        ``stat``; every call checks it before it reads or acknowledges anything.

        A ``read`` (a search) skips the ``stat`` while the commit stamp is unchanged: a drop
        renews the stamp first (``Database.drop_collection``), so a search sees the drop at
        once, or within ``FULL_CHECK_S`` if the dropping process died before renewing it."""
        if self.dropped:
            raise CollectionDropped(f"collection {self.name!r} at {self.path}: expected a live "
                                    "collection, got one dropped through this database")
        if self.closed:
            raise CollectionClosed(f"collection {self.name!r}: expected an open handle, got "
                                   "one that was closed")
        try:
            if self.checks is not None and self.checks.done():
                self.wait_checks()
            if self.damage is not None:
                raise self.damage
        except CorruptFile:
            self._check_identity()  # a drop under the background check: that, not damage
            raise
        if read and self.catalog.stamp.unchanged():
            return
        self._check_identity()

    def _check_identity(self) -> None:
        """Raise ``CollectionDropped`` when the catalog file at the path is not the one this
        handle opened (one ``stat``)."""
        identity = self._identity()
        if identity != self.identity:
            what = "dropped" if identity is None else "dropped and created anew"
            raise CollectionDropped(
                f"collection {self.name!r} at {self.path}: expected the collection this handle "
                f"opened, got one that was {what}; get a new handle with get_collection")

    def open(self) -> None:
        """Load; once the catalog passed its check, remove a crash's orphans (in the
        background) if no other writer is active then."""
        if self.catalog.readonly:  # a folder this process may not write: searches only
            self.load()
            return
        checks = self.checks  # (a replay below waits for them: the tidy still runs)
        if self.lock.try_acquire():
            try:
                self._migrate()
                self._recover()
                self.load()
            finally:
                self.lock.release()
        else:
            self.load()
        if checks is not None:
            self.tidying = threading.Thread(target=self._tidy, args=(checks,), daemon=True,
                                            name="polyvec-tidy")
            self.tidying.start()

    def _tidy(self, checks: Checks) -> None:
        """Remove a crash's orphans once the catalog passed its check, if the write lock is
        free then (else the writer holding it, or a later open, does it). Best effort: a
        failure here is met by the next call itself."""
        if not checks.wait_passed():
            return
        with self.mutex:
            try:
                if self.closed or not self.lock.try_acquire():
                    return
                try:
                    self.refresh_state()
                    self.remove_orphans()
                finally:
                    self.lock.release()
            except Exception:  # noqa: BLE001
                return

    # -- loading --------------------------------------------------------------------------
    def load(self) -> None:
        """(Re)build the in-memory state from the catalog and the segment files."""
        self.cursor = None
        self.sync()

    def sync(self) -> None:
        """Catch up with the catalog: apply what changed since the mirror's cursor, then
        publish.

        A writer in another process may commit (and a compaction delete old segment files)
        between reading the catalog and opening the files: then the data version has moved,
        and the catch-up starts over from the newer catalog. A catch-up that fails for any
        other reason is retried once as a full reload, which raises if the damage is real.
        """
        sidecars = True
        for _ in range(RETRIES):
            version, changes = self.catalog.changes_since(self.cursor, sidecars=sidecars)
            try:
                deleted: list[int] = []
                if changes.full:
                    self._build(changes)
                else:
                    deleted = self._catch_up(changes)
            except _SidecarMismatch:
                sidecars = False  # the item rows decide: read them all
                self.cursor = None
                continue
            except CorruptFile:
                if self.catalog.data_version() == version and changes.full:
                    raise
                self.cursor = None  # changed under us, or a partial catch-up: reload all
                continue
            self.cursor = changes.cursor
            self.version = version
            self.catch_ups["full" if changes.full else "incremental"] += 1
            self.publish(deleted)
            return
        raise Locked(f"{self.name}: the collection changed {RETRIES} times while loading")

    def check_all(self) -> None:
        """Check everything now: the catalog file (waiting for the open's background check)
        and every item row's checksum (segment files were checked when they were opened)."""
        self.check_alive()
        self.wait_checks()
        if self.tidying is not None:
            self.tidying.join()
        with self.mutex:
            self.catalog.read(self.catalog.verify_items)

    def wait_checks(self) -> None:
        """Wait for the open's background catalog check (once); its failure stays: every
        later call raises it."""
        checks, self.checks = self.checks, None
        if checks is not None:
            try:
                checks.wait()
            except CorruptFile as e:
                self.damage = e
        if self.damage is not None:
            raise self.damage

    def _migrate(self) -> None:
        """Turn a format-1 folder into the current format (writer only, one transaction)."""
        if self.catalog.guard(self.catalog.read_meta).get("format_version") != 1:
            return
        self.wait_checks()  # never rewrite a catalog that failed its check
        with self.catalog.transaction():
            schema = CollectionSchema.from_dict(self.catalog.read_meta()["schema"])

            def encode(name: str, blobs: list[bytes]) -> bytes:
                spec = schema.fields[name]
                kind = kind_of(spec)
                return kind.to_chunk(spec, kind.from_blobs(spec, blobs))

            self.catalog.migrate(self.growing_log.append, encode)

    def _recover(self) -> bool:
        """Replay the growing chunks past the registered end whose catalog commit was lost
        (an add commits without an fsync: its fsync'd chunk is the durable copy), then cut
        off the rest of the tail (a torn chunk, or one its writer never committed). Writer
        only, under the write lock, before it writes anything else. Returns whether it
        replayed a chunk. The cost when nothing is there: one ``stat``."""
        if self.catalog.readonly:
            return False
        generation, end = self.catalog.guard(self.catalog.growing_end)
        if self.growing_log.size(generation) <= end:
            return False
        self.wait_checks()  # never write into a catalog that failed its check
        tail = self.growing_log.tail(generation, end)
        replayed = False
        if tail:
            with self.catalog.transaction():
                for chunk in tail:
                    if not self.catalog.replay(generation, chunk):
                        break
                    end, replayed = chunk.end, True
        self.growing_log.cut(generation, end)
        return replayed

    def _set_meta(self, meta: dict[str, Any]) -> None:
        try:
            self.schema = CollectionSchema.from_dict(meta["schema"])
            self.segment_rows = int(meta["segment_rows"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptFile(str(self.catalog.path), f"bad schema in meta: {e}") from None
        self.fields: dict[str, FieldSpec] = self.schema.fields
        self.meta = meta  # model versions, mappings, backfill state (see upgrade)
        try:
            self.models = {f: ModelSpec.from_dict(d)
                           for f, d in meta.get("models", {}).items()}
        except (TypeError, ValueError) as e:
            raise CorruptFile(str(self.catalog.path), f"bad model specs in meta: {e}") from None

    def _build(self, snap: Changes) -> None:
        """Rebuild everything from a full read of the catalog."""
        assert snap.meta is not None and snap.segments is not None and snap.indexes is not None
        self._set_meta(snap.meta)
        # new segments' files are checksummed in the background while the items, growing
        # rows and indexes load; no segment array is read before the checks pass
        checks = Checks() if self.verify else None
        before = self.segments
        try:
            # segment files are immutable and uniquely named: keep the ones already open
            # (verified)
            opened = {s.row.name: s for s in before}
            self.segments = [opened[r.name] if r.name in opened and opened[r.name].row == r
                             else self.open_segment(r, checks) for r in snap.segments]
            items = snap.items
            payloads = [json.loads(p) for p in items.payloads] if self.schema.indexed else None
            live = LiveTable(self.schema.indexed)
            if snap.sealed is not None:
                if checks is not None:
                    checks.wait()  # the sidecars are read now: their checksums first
                    checks = None
                self._append_sealed(live, snap.sealed)
            live.append(items.seqs, items.keys, payloads)
            self.live = live
            self.growing = {n: kind_of(s).new_growing(s) for n, s in self.fields.items()}
            if snap.legacy_vectors is not None:
                self._load_legacy_growing(snap.legacy_vectors)
            else:
                self._extend_growing(self._read_chunks(snap.chunks))
            self.masks = {}
            self.masks_stale = True  # the last snapshot's alive masks belong to the old live set
            self.indexes.load(snap.indexes, snap.meta)
            if checks is not None:
                checks.wait()
        except BaseException as e:
            self.segments = before  # a retry must not reuse segments that were not verified
            if checks is not None:
                if isinstance(e, CorruptFile):
                    checks.wait()  # a damaged file is the cause: name it (raises)
                checks.close()
            raise
        # sealed rows read from the sidecars are covered by construction
        self._check_coverage(live.live_seqs() if snap.sealed is None else items.seqs,
                             next(iter(self.growing.values())).seqs.view)

    def _append_sealed(self, live: LiveTable, sealed: SealedItems) -> None:
        """Add the live rows of the sealed segments to ``live`` from their item sidecars, in
        seq order; raises :class:`_SidecarMismatch` when they disagree with the catalog's
        count of live sealed items."""
        seqs, ids, columns = [], [], []
        n_paths = len(self.schema.indexed)
        for seg in sorted(self.segments, key=lambda x: x.row.min_seq):
            seg_ids = sidecar.read_ids(seg.extras)
            seg_cols = [Encoded(*c) for c in sidecar.read_columns(seg.extras, n_paths)]
            if len(seg_ids) != len(seg.seqs) or any(len(c.kinds) != len(seg.seqs)
                                                    for c in seg_cols):
                raise CorruptFile(str(self.path / SEGMENTS / seg.row.name),
                                  "item sidecar rows do not match the segment's rows")
            if sealed.dead is not None:
                rows = np.flatnonzero(~isin_sorted(seg.seqs, sealed.dead))
            elif sealed.alive is not None:
                rows = np.flatnonzero(isin_sorted(seg.seqs, sealed.alive))
            else:
                rows = None
            if rows is not None and len(rows) < len(seg.seqs):
                seg_ids = (seg_ids[rows] if isinstance(seg_ids, np.ndarray)
                           else [seg_ids[i] for i in rows.tolist()])
                seg_cols = [c.take(rows) for c in seg_cols]
                seqs.append(seg.seqs[rows])
            else:
                seqs.append(np.asarray(seg.seqs))
            ids.append(seg_ids)
            columns.append(seg_cols)
        all_seqs = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        if len(all_seqs) != sealed.count:
            raise _SidecarMismatch(f"{len(all_seqs)} live sealed rows in the sidecars, "
                                   f"{sealed.count} in the catalog")
        all_ids: np.ndarray | list[Any]
        if all(isinstance(i, np.ndarray) for i in ids):
            all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        else:
            all_ids = [k for part in ids
                       for k in (part.tolist() if isinstance(part, np.ndarray) else part)]
        all_cols = [Encoded.concat([c[i] for c in columns]) for i in range(n_paths)]
        if len(all_seqs) > 1 and not bool((np.diff(all_seqs) > 0).all()):
            order = np.argsort(all_seqs, kind="stable")  # merged segments' seq ranges overlap
            all_seqs = all_seqs[order]
            all_ids = (all_ids[order] if isinstance(all_ids, np.ndarray)
                       else [all_ids[i] for i in order.tolist()])
            all_cols = [c.take(order) for c in all_cols]
        live.append(all_seqs, all_ids, None, columns=all_cols)

    def _catch_up(self, ch: Changes) -> list[int]:
        """Apply another process's commits: new items, deletes, new growing chunks, and the
        segment/index tables when they moved. Everything that can fail is read first.
        Returns the deleted seqs (for the alive masks)."""
        chunks = self._read_chunks(ch.chunks)
        if ch.meta is not None and ch.segments is not None and ch.indexes is not None:
            self._set_meta(ch.meta)
            opened = {s.row.name: s for s in self.segments}
            self.segments = [opened[r.name] if r.name in opened and opened[r.name].row == r
                             else self.open_segment(r) for r in ch.segments]
            self.indexes.load(ch.indexes, ch.meta)
        if ch.new_generation:
            self.growing = {n: kind_of(s).new_growing(s) for n, s in self.fields.items()}
        self._extend_growing(chunks)
        items = ch.items
        payloads = ([json.loads(p) for p in items.payloads] if self.schema.indexed else None)
        self.live.apply(ch.deleted, items.seqs, items.keys, payloads)
        self._check_coverage(items.seqs, next(iter(self.growing.values())).seqs.view)
        return list(ch.deleted)

    def _read_chunks(self, chunks: list[ChunkRow]) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """``(seqs, field -> rows)`` of each growing chunk, read and verified."""
        out = []
        for c, parts in zip(chunks, self.growing_log.read(chunks), strict=True):
            where = str(self.growing_log.path(c.generation))
            if set(parts) != set(self.fields):
                raise CorruptFile(where, f"chunk at seq {c.first_seq}: fields {sorted(parts)}, "
                                  f"expected {sorted(self.fields)}")
            rows: dict[str, Any] = {}
            for name, spec in self.fields.items():
                try:
                    rows[name] = kind_of(spec).from_chunk(spec, parts[name], c.count)
                except ValueError:
                    raise CorruptFile(where, f"chunk at seq {c.first_seq}, field {name!r}: "
                                      "wrong size") from None
            out.append((np.arange(c.first_seq, c.first_seq + c.count, dtype=np.int64), rows))
        return out

    def _extend_growing(self, chunks: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
        for seqs, rows in chunks:
            for name, g in self.growing.items():
                kind_of(self.fields[name]).extend_from_chunk(g, seqs, rows[name])

    def _load_legacy_growing(self, vectors: dict[str, list[tuple[int, bytes]]]) -> None:
        """Growing rows of an unmigrated format-1 catalog (a blob row per vector)."""
        growing_seqs = None
        for name, spec in self.fields.items():
            rows = vectors.get(name, [])
            seqs = np.array([s for s, _ in rows], dtype=np.int64)
            try:
                data = kind_of(spec).from_blobs(spec, [d for _, d in rows])
            except ValueError:
                raise CorruptFile(str(self.catalog.path), f"field {name!r}: vector blob has "
                                  "the wrong size") from None
            if growing_seqs is not None and not np.array_equal(growing_seqs, seqs):
                raise CorruptFile(str(self.catalog.path), "growing vector rows disagree across "
                                  "fields")
            growing_seqs = seqs
            self.growing[name].extend(seqs, data)

    def open_segment(self, row: SegmentRow, checks: Checks | None = None, *,
                     written: bool = False, fields: dict[str, FieldSpec] | None = None
                     ) -> Segment:
        """Open a sealed segment's files; their checksums are verified in line, or handed to
        ``checks`` (then nothing may read the arrays before ``checks.wait()``); ``written``:
        this process just wrote its files and checksummed them for the manifest, so they are
        not read a second time."""
        files = open_segment(self.path / SEGMENTS / row.name, row.manifest,
                             verify=self.verify and not written, checks=checks)
        where = str(files.path)
        try:
            seqs = files["seqs"]
            data: dict[str, Any] = {}
            for name, spec in (self.fields if fields is None else fields).items():
                data[name], ok = kind_of(spec).open_sealed(name, spec, files, row.nrows)
                if not ok:
                    raise CorruptFile(where, f"field {name!r}: arrays do not match the catalog")
        except KeyError as e:
            raise CorruptFile(where, f"missing array {e}") from None
        if len(seqs) != row.nrows or (len(seqs) and (seqs[0] != row.min_seq
                                                     or seqs[-1] != row.max_seq)):
            raise CorruptFile(where, "row seqs do not match the catalog")
        extras = {k: v for k, v in files.arrays.items() if k.startswith("@")}
        return Segment(row, np.asarray(seqs), data, extras=extras)

    def _check_coverage(self, live: np.ndarray, growing_seqs: np.ndarray) -> None:
        """Every item of ``live`` (sorted seqs) must have vectors in the growing segment or in
        a sealed one."""
        if not len(live):
            return
        covered = isin_sorted(live, growing_seqs)
        for seg in self.segments:
            if seg.row.max_seq >= live[0] and seg.row.min_seq <= live[-1]:
                covered |= isin_sorted(live, seg.seqs)
        if not covered.all():
            missing = int(live[~covered][0])
            raise CorruptFile(str(self.catalog.path), f"item seq={missing} has no vectors")

    def remove_orphans(self) -> None:
        """Delete segment folders the catalog does not know (left by a crash). Writer only."""
        known = {s.row.name for s in self.segments}
        busy = tuple(self.in_flight)  # a background seal's folders, not registered yet
        for p in (self.path / SEGMENTS).iterdir():
            if p.name not in known and not p.name.startswith(busy or ("\0",)):
                shutil.rmtree(p, ignore_errors=True)
        for p in index_orphans(self.path, self.catalog.guard(self.catalog.index_folders)):
            if not p.name.startswith(busy or ("\0",)):
                shutil.rmtree(p, ignore_errors=True)
        self.remove_sealed_generations()

    def remove_sealed_generations(self) -> None:
        """Delete the growing files no registered chunk is in, but the current one. Writer
        only (under the lock)."""
        assert self.cursor is not None
        keep = {self.cursor.generation} | self.catalog.guard(self.catalog.chunk_generations)
        self.growing_log.remove_other_generations(keep)

    def refresh(self) -> None:
        """Before a write: reload if another connection committed since we last looked, the
        catalog's check passed first. Under ``mutex``."""
        self.check_alive()
        if self.checks is not None:
            self.wait_checks()  # never write into a catalog that failed its check
        self.refresh_state()

    def refresh_state(self) -> None:
        if self.catalog.data_version() != self.version:
            self.sync()
        if self.lock.held and self._recover():
            self.sync()

    def publish(self, deleted: Iterable[int] | None = None) -> None:
        """Make the current state the one searches read (one attribute assignment).

        The sealed segments' alive masks carry over from the last snapshot: ``deleted`` (seqs
        killed since) clears their rows in a copy of each mask they touch, so a write costs
        what it deleted, not a pass over every segment."""
        live = self.live
        self._carry_masks(deleted)
        self.snap = Snapshot(
            version=self.version,
            segments=tuple(self.segments),
            growing={n: (g.seqs.view, kind_of(self.fields[n]).growing_data(g))
                     for n, g in self.growing.items()},
            live_seqs=live.live_seqs(),
            seqs=live.seqs.view,
            keys=live.keys,
            masks=dict(self.masks),
            columns={path: col.frozen() for path, col in live.columns.items()},
            cursor=self.cursor,
        )

    def _carry_masks(self, deleted: Iterable[int] | None) -> None:
        names = {s.row.name: s for s in self.segments}
        old = self.snap.masks if self.snap is not None and not self.masks_stale else {}
        self.masks_stale = False
        masks = {n: m for n, m in {**old, **self.masks}.items() if n in names}
        gone = np.sort(np.fromiter(deleted or (), dtype=np.int64))
        if len(gone):
            for n, mask in list(masks.items()):
                seg = names[n]
                if gone[-1] < seg.row.min_seq or gone[0] > seg.row.max_seq:
                    continue
                pos = np.searchsorted(seg.seqs, gone)
                inside = pos < len(seg.seqs)
                pos = pos[inside]
                pos = pos[seg.seqs[pos] == gone[inside]]
                if len(pos):
                    new = np.ones(len(seg.seqs), dtype=bool) if mask is None else mask.copy()
                    new[pos] = False  # readers may hold the old mask
                    masks[n] = new
        self.masks = masks

    def read_at(self, snap: Snapshot, fn: Callable[[Catalog], T]) -> tuple[bool, T | None]:
        """``fn(view)`` on this thread's own catalog connection (``Catalog.reader``) inside
        one read transaction, without the mutex, when the catalog is at ``snap``'s state:
        ``(True, result)``; ``(False, None)`` when it is not (a commit since, or one this
        handle is making): the caller reads under the mutex (:meth:`consistent`)."""
        if snap.cursor is None:
            return False, None
        view = self.catalog.reader()
        with view.pinned():
            if view.guard(view.cursor) != snap.cursor:
                return False, None
            return True, fn(view)

    def items_at(self, snap: Snapshot, keys: list[Any]
                 ) -> tuple[dict[Any, int], dict[int, tuple[Any, str]]] | None:
        """``(key -> seq, seq -> (key, payload))`` of ``keys`` for ``snap`` (see
        :meth:`read_at`); ``None``: read them under the mutex."""
        def read(view: Catalog) -> tuple[dict[Any, int], dict[int, tuple[Any, str]]]:
            seqs = view.guard(view.live_seqs, keys)
            return seqs, view.guard(view.items_by_seqs, list(seqs.values()))

        ok, got = self.read_at(snap, read)
        return got if ok else None

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
            self.check_alive()
            for _ in range(RETRIES):
                try:
                    with self.catalog.pinned():
                        version, _ = self.catalog.read(int)
                        if version != self.version:
                            self.sync()
                        return fn(*args)
                except CorruptFile:
                    if self.catalog.data_version() == self.version:
                        raise  # nothing moved: real damage
            raise Locked(f"{self.name}: segment files were replaced {RETRIES} times during "
                         "a read")

    def current(self) -> Snapshot:
        """The snapshot to search: the published one, reloaded first if another process
        committed since. Holds the mutex only for that check (see :meth:`refresh_read`), and not at
        all while a writer of this handle holds it: that writer refreshed when it began and
        holds the write lock, so no other process commits meanwhile."""
        if self.mutex.acquire(blocking=False):
            try:
                self.refresh_read()
            finally:
                self.mutex.release()
        snap = self.snap
        assert snap is not None
        return snap

    def refresh_read(self) -> None:
        """A reader's :meth:`refresh` (caller holds the mutex): the catalog's commit stamp
        answers "nobody committed" with one memory read, else one ``PRAGMA data_version``.
        It may lag a commit whose writer died before stamping it by up to ``FULL_CHECK_S``
        (see :mod:`polyvec.storage.stamp`); writers use :meth:`refresh`, which always asks."""
        stamp = self.catalog.stamp
        if stamp.unchanged():
            return
        seen = stamp.read()
        if self.catalog.data_version() != self.version:
            self.consistent(int)
        stamp.checked(seen)

    # -- validation -----------------------------------------------------------------------
    def field(self, name: str | None) -> tuple[str, FieldSpec]:
        if name is None:
            if len(self.fields) != 1:
                raise UnknownField(f"field: this collection has several vector fields "
                                   f"{list(self.fields)}; name one")
            name = next(iter(self.fields))
        if not isinstance(name, str) or name not in self.fields:
            raise UnknownField(f"field: expected one of {list(self.fields)}, got {name!r}")
        return name, self.fields[name]

    def check_vectors(self, vectors: Any, n: int, *, stored: bool = False) -> dict[str, Any]:
        """Every field's input checked (and prepared: pooled) by its kind; ``stored``:
        items in their stored form, as ``get`` gives them back (checked, not prepared)."""
        if stored:
            return check_inputs(self.fields, vectors, n, stored=True)
        checked = check_inputs(self.fields, vectors, n)
        return {name: kind_of(spec).prepare(spec, checked[name])
                for name, spec in self.fields.items()}

    # -- writing --------------------------------------------------------------------------
    def write(self, keys: list[Any], data: dict[str, Any], payload_objs: Any,
              payload_texts: list[str], *, replace: bool) -> None:
        """Commit one checked batch, then apply it to the mirror and publish.

        The batch goes to the growing file as one chunk (its ids and payloads as a log record,
        then its vectors), written and fsync'd in a thread while the item rows are inserted:
        that fsync makes the batch durable. The catalog transaction that registers the chunk
        commits after it without an fsync of its own; a power loss that loses the commit
        leaves the chunk, which the next writer replays (``_recover``). A batch that fails is
        cut off the file again, so it is never replayed."""
        n = len(keys)
        parts = {name: kind_of(self.fields[name]).to_chunk(self.fields[name], arr)
                 for name, arr in data.items()}
        self.check_alive()  # before the lock: its file goes with a dropped folder
        with self.mutex, self.lock:
            self.refresh()
            # a format-2 folder is marked format 3 (in an fsync'd commit) with its first chunk
            upgrade = self.meta.get("format_version") != FORMAT_VERSION
            appended: tuple[int, int] | None = None
            pending: PendingAppend | None = None
            mirrored = False
            try:
                with self.catalog.transaction(durable=upgrade):
                    existing = self.catalog.live_seqs(keys)
                    if existing and not replace:
                        first = next(k for k in keys if k in existing)
                        raise DuplicateId(f"id {first!r} already exists; use upsert to "
                                          "replace it")
                    generation, end = self.catalog.growing_end()
                    first_seq = self.catalog.allocate_seqs(n)
                    appended = (generation, end)
                    pending = self.growing_log.append_in_background(
                        generation, end, parts, LogRecord(first_seq, keys, payload_texts,
                                                          replace))
                    self.catalog.delete_seqs(existing.values())
                    self.catalog.insert_item_columns(range(first_seq, first_seq + n), keys,
                                                     payload_texts)
                    # the mirror takes the batch while the chunk's fsync runs; nothing reads it
                    # before publish() (searches read the published snapshot, everything else
                    # waits for the mutex), and a failure from here on reloads it
                    mirrored = True
                    seqs = np.arange(first_seq, first_seq + n, dtype=np.int64)
                    gone = list(existing.values())
                    self.live.kill_seqs(gone)
                    self.live.append(seqs, keys, payload_objs)
                    for name, arr in data.items():
                        g = self.growing[name]
                        if len(g) + n > g.seqs.capacity:
                            g.reserve(self._growing_room(len(g) + n, g.row_bytes))
                        g.extend(seqs, arr)
                    layout = pending.wait()
                    pending = None
                    self.catalog.insert_chunk(ChunkRow(first_seq, generation, n, end, layout))
                    if upgrade:
                        self.catalog.set_meta({"format_version": FORMAT_VERSION})
                    cursor = self.catalog.cursor()
                    hooks.point("write.before_commit")
            except BaseException:
                self._undo_write(pending, appended, mirrored)
                raise
            if upgrade:
                self.meta = {**self.meta, "format_version": FORMAT_VERSION}
            self.version = self.catalog.data_version()
            self.cursor = cursor
            self.publish(gone)
            if self.wants_seal():
                if self.background:
                    self.maintenance.request()
                else:
                    self.seal()

    def _growing_room(self, rows: int, row_bytes: int) -> int:
        """Capacity for a growing buffer that must hold ``rows``: room up to the seal and a
        quarter more at once (the adds that come while a background seal runs write past
        ``segment_rows``; a reallocation would copy every row under the mutex), doubling
        past that; never more than ``RESERVE_BYTES`` ahead (untouched pages cost no RSS)."""
        want = self.segment_rows * 5 // 4 if rows <= self.segment_rows * 5 // 4 else 2 * rows
        return min(want, rows + RESERVE_BYTES // row_bytes)

    def wants_seal(self) -> bool:
        """Whether the growing segment holds ``segment_rows`` live rows."""
        # growing_live() <= the growing rows: count the live ones only when it may seal
        return len(next(iter(self.growing.values()))) >= self.segment_rows \
            and self.growing_live() >= self.segment_rows

    def _undo_write(self, pending: PendingAppend | None, appended: tuple[int, int] | None,
                    mirrored: bool) -> None:
        """After a write failed (its transaction rolled back): wait for its append (the next
        one must not race it), cut its chunk off (a batch reported as failed must never be
        replayed) and rebuild the mirror from the catalog if it took the batch already."""
        if pending is not None:
            with contextlib.suppress(BaseException):  # the caller raises the first error
                pending.wait()
        if mirrored:  # whatever runs next reloads everything, even if the reload below fails
            self.cursor, self.version = None, -1
            self.catalog.stamp.renew()
        # cut only a chunk the catalog did not register (an error after the commit, or one
        # reading the catalog, leaves it: cutting a registered chunk would lose the batch)
        try:
            unregistered = appended is not None and \
                self.catalog.guard(self.catalog.growing_end) == appended
        except Exception:  # noqa: BLE001 - the caller raises the first error
            unregistered = False
        if unregistered:
            assert appended is not None
            self.growing_log.cut(*appended)
        if mirrored:
            self.load()

    def delete(self, keys: list[Any]) -> int:
        self.check_alive()  # before the lock: its file goes with a dropped folder
        with self.mutex, self.lock:
            self.refresh()
            with self.catalog.transaction():
                existing = self.catalog.live_seqs(keys)
                self.catalog.delete_seqs(existing.values())
                cursor = self.catalog.cursor()
            self.version = self.catalog.data_version()
            self.cursor = cursor
            gone = list(existing.values())
            self.live.kill_seqs(gone)
            self.publish(gone)
            return len(existing)

    def growing_live(self) -> int:
        g = next(iter(self.growing.values()))
        return int(isin_sorted(g.seqs.view, self.live.live_seqs()).sum()) if len(g) else 0

    def settle(self) -> None:
        """Wait for the background seal an add asked for (see
        :mod:`polyvec.engine.maintenance`): what comes next (a flush, a compaction, a merge,
        an index build) then sees its segment. Its failure is the caller's to meet again:
        a flush seals the same rows and raises its own error."""
        self.maintenance.wait(errors=False)

    def flush(self) -> None:
        self.check_alive()  # before the lock: its file goes with a dropped folder
        self.settle()
        with self.mutex, self.lock:
            self.refresh()
            self.seal()

    def seal(self) -> None:
        """Seal the growing rows still alive now, in the caller (see
        :mod:`polyvec.engine.maintenance`). Writer only (mutex and lock)."""
        plan = plan_seal(self)
        if plan is None:
            return
        if commit_seal(self, plan, write_seal(self, plan)):
            after_seal(self)

    def commit_segments(self, outputs: list[dict[str, np.ndarray]], remove: list[str], *,
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
            name = segment_name(int(seqs[0]), int(seqs[-1]))
            manifest = write_segment(folder, name, arrays)
            hooks.point("segments.written")
            rows.append(SegmentRow(name, len(seqs), int(seqs[0]), int(seqs[-1]), manifest))
        with self.catalog.transaction():
            if register is not None:
                register(rows)
            else:
                self.catalog.register_segments(rows, remove, None)
            cursor = self.catalog.cursor()
            hooks.point("segments.before_commit")
        self.version = self.catalog.data_version()
        self.cursor = cursor
        if reload:
            self.segments = []
            self.load()
        else:
            gone = set(remove)
            kept = [s for s in self.segments if s.row.name not in gone]
            self.segments = sorted(kept + [self.open_segment(r, written=True) for r in rows],
                                   key=lambda s: s.row.min_seq)
            self.publish()
        if remove:
            hooks.point("segments.before_remove")
        for name in remove:
            shutil.rmtree(folder / name, ignore_errors=True)
        return rows

    def compact(self) -> None:
        """Seal, then rewrite the segments with deleted rows (and runs of small segments)
        without them, streaming: memory stays bounded whatever the segments' size."""
        self.check_alive()  # before the lock: its file goes with a dropped folder
        self.settle()
        with self.mutex, self.lock:
            self.refresh()
            self.seal()
            merge.compact(self)
            hooks.point("compact.before_index_remove")
            self.indexes.ensure_indexes()

    def merge(self, *, force: bool = False) -> None:
        """Run the tiered merge policy now, or with ``force`` merge into the fewest segments
        of up to ``merge_policy.max_segment_rows`` rows (as ``create_index`` does first)."""
        self.check_alive()  # before the lock: its file goes with a dropped folder
        self.settle()
        with self.mutex, self.lock:
            self.refresh()
            if force:
                merge.before_index(self, None)
            else:
                merge.after_seal(self)
            self.indexes.ensure_indexes()

    def drop_index_folders(self, segments: Iterable[Segment]) -> None:
        for seg in segments:
            for folder, _ in seg.indexes.values():
                shutil.rmtree(self.path / INDEXES / folder, ignore_errors=True)

    def merge_rows(self, parts: list[tuple[Segment, np.ndarray]]) -> dict[str, np.ndarray]:
        arrays = {"seqs": np.concatenate([s.seqs[r] for s, r in parts]),
                  **sidecar.concat([sidecar.take(s.extras, r) for s, r in parts])}
        for name, spec in self.fields.items():
            kind = kind_of(spec)
            arrays |= kind.sealed_arrays(name, kind.merge(spec, [(s.fields[name], r)
                                                                 for s, r in parts]))
        return arrays

    # -- point reads ----------------------------------------------------------------------
    def vectors_of(self, snap: Snapshot, seq: int) -> dict[str, np.ndarray]:
        """Copies of item ``seq``'s vectors in ``snap``; ``CorruptFile`` when no block holds
        it (the catalog says it is live)."""
        try:
            return snap.vectors_of(seq, self.fields)
        except KeyError:
            raise CorruptFile(str(self.catalog.path), f"item seq={seq} has no vectors") \
                from None

    def close(self) -> None:
        self.maintenance.close()  # after the seal it runs (it needs the mutex to finish)
        with self.mutex:
            self.closed = True
            self.catalog.close()
