"""Sealing, in three steps, and the thread that runs it off the write path.

An add that fills the growing segment to ``segment_rows`` returns as soon as its own batch is
durable; the seal then runs on the collection's maintenance thread (:class:`Maintenance`).
``flush``/``compact`` run the same steps in the caller. A seal is:

1. **plan** (:func:`plan_seal`, under the mutex and the write lock, ~ms): the live growing rows
   up to the last seq, the chunks they came in, the published snapshot their ids and indexed
   values are read from, the fields and index specs of the moment;
2. **write** (:func:`write_seal`, no lock): the segment's files, then the index of every
   indexed field over it (partition graphs included), each fsync'd and unregistered; adds,
   deletes and searches go on meanwhile, and another process may write;
3. **commit** (:func:`commit_seal`, mutex and lock, after a refresh): check that nothing the
   plan rests on moved (its chunks still registered, since another writer may have sealed them;
   the fields and index specs unchanged; every file still there, since another process's
   orphan sweep may have run), then register the segment and its indexes in one fsync'd
   transaction that drops the sealed chunks and starts the next growing generation (format 5:
   chunks written meanwhile stay in the old generation's file until the next seal), drop the
   sealed rows from the growing buffers and publish. A plan that no longer holds is dropped
   with its files (its rows are still in their chunks: the next seal takes them).

After the commit the tiered merges run and their outputs are indexed, under the mutex (adds
wait for those, as they did for the whole seal before). A crash at any point leaves the old
state or the new one, plus orphan folders the next open removes: the crash tests kill writers
at every hook point, on this thread too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._live import isin_sorted
from ..errors import CollectionClosed, CollectionDropped, PolyvecWarning
from ..fields import kind_of
from ..storage import segment_name, write_segment
from ..storage.catalog import IndexRow, SegmentRow
from . import hooks, merge

if TYPE_CHECKING:
    from ..spec import FieldSpec
    from .snapshot import Segment, Snapshot
    from .store import SegmentStore

__all__ = ["Maintenance", "SealPlan", "commit_seal", "plan_seal", "write_seal"]

SEGMENTS = "segments"
RETRY_S = 5.0  # a failed background seal is retried no sooner than this


@dataclass(frozen=True)
class SealPlan:
    """What a seal takes: the growing rows ``rows`` (positions in the growing buffers, their
    seqs ``seqs``) up to seq ``upto``, the chunks they came in, and the state they are read
    and indexed from."""

    upto: int
    chunks: list[int]  # first seqs of the chunks sealed
    rows: np.ndarray
    seqs: np.ndarray
    data: dict[str, Any]  # field -> the growing data (append-only views) the rows index
    fields: dict[str, FieldSpec]
    specs: dict[str, dict[str, str]]  # index family -> field -> spec text
    snap: Snapshot


@dataclass
class Written:
    """A plan's files: the segment (``None`` when no row was alive) and its indexes."""

    segment: Segment | None
    indexes: list[tuple[IndexRow, Segment, tuple[str, Any]]]


def plan_seal(st: SegmentStore) -> SealPlan | None:
    """Step 1, under the mutex and the lock: ``None`` when there is nothing to seal."""
    g0 = next(iter(st.growing.values()))
    if len(g0) == 0:
        return None
    assert st.snap is not None
    seqs_all = g0.seqs.view
    upto = int(seqs_all[-1])
    rows = np.flatnonzero(isin_sorted(seqs_all, st.live.live_seqs()))
    plan = SealPlan(upto=upto, chunks=st.catalog.guard(st.catalog.chunk_seqs, upto),
                    rows=rows, seqs=seqs_all[rows],
                    data={name: g.data for name, g in st.growing.items()},
                    fields=st.fields, specs={f: dict(s) for f, s in st.indexes.specs.items()},
                    snap=st.snap)
    hooks.point("seal.planned")
    return plan


def write_seal(st: SegmentStore, plan: SealPlan) -> Written:
    """Step 2, no lock needed: the segment's files and its indexes, fsync'd, unregistered."""
    if not len(plan.rows):
        return Written(None, [])
    snap = plan.snap
    arrays: dict[str, np.ndarray] = {"seqs": plan.seqs, **snap.sidecar(plan.seqs)}
    for name, spec in plan.fields.items():
        kind = kind_of(spec)
        arrays |= kind.sealed_arrays(name, kind.take(plan.data[name], plan.rows))
    seqs = plan.seqs
    name = segment_name(int(seqs[0]), int(seqs[-1]))
    st.in_flight.add(name)
    try:
        manifest = write_segment(st.path / SEGMENTS, name, arrays)
        hooks.point("segments.written")
        row = SegmentRow(name, len(seqs), int(seqs[0]), int(seqs[-1]), manifest)
        seg = st.open_segment(row, written=True, fields=plan.fields)
        built = st.indexes.build_segment(seg, plan.specs, plan.fields, snap)
    except BaseException:
        discard(st, Written(None, []), name)
        raise
    return Written(seg, built)


def commit_seal(st: SegmentStore, plan: SealPlan, written: Written) -> bool:
    """Step 3, under the mutex and the lock, the mirror refreshed: register the plan's files
    and drop its rows from the growing segment; ``False`` (its files removed) when the state
    moved under it."""
    seg = written.segment
    if (st.fields != plan.fields
            or st.catalog.guard(st.catalog.chunk_seqs, plan.upto) != plan.chunks
            or not _files_present(st, written)):
        discard(st, written)
        return False
    current = {f: dict(s) for f, s in st.indexes.specs.items()}
    built = [b for b in written.indexes
             if current.get(_family(st, b[0].field), {}).get(b[0].field)
             == plan.specs.get(_family(st, b[0].field), {}).get(b[0].field)]
    stale = [b for b in written.indexes if b not in built]
    try:
        with st.catalog.transaction():
            st.catalog.register_segments([] if seg is None else [seg.row], [], plan.upto)
            if built:
                st.catalog.put_indexes([r for r, _, _ in built])
            cursor = st.catalog.cursor()
            hooks.point("segments.before_commit")
    except BaseException:
        discard(st, written)  # rolled back: nothing refers to the files
        raise
    st.version = st.catalog.data_version()
    st.cursor = cursor
    if seg is not None:
        for row, _, entry in built:
            seg.with_index(row.field, entry)
        st.segments = sorted([*st.segments, seg], key=lambda s: s.row.min_seq)
    st.growing = {n: g.after(plan.upto) for n, g in st.growing.items()}
    st.publish()
    if seg is not None:
        st.in_flight.discard(seg.row.name)
    for _, _, (folder, _) in stale:
        shutil.rmtree(st.indexes.index_dir() / folder, ignore_errors=True)
    st.remove_sealed_generations()
    st.catalog.reclaim()
    for field in {r.field for r, _, _ in built}:
        if st.indexes.engine_of(st.fields[field]).calibrated:
            st.indexes.calibrate(field)
    return True


def after_seal(st: SegmentStore) -> None:
    """What follows a committed seal (mutex and lock): the tiered merges, and an index on
    every segment that lacks one (merge outputs; a seal whose index spec moved)."""
    merge.after_seal(st)
    st.indexes.ensure_indexes()


def discard(st: SegmentStore, written: Written, name: str | None = None) -> None:
    """Remove a plan's files (a failed or stale seal): its rows stay in their chunks."""
    if written.segment is not None:
        name = written.segment.row.name
    if name is not None:
        for p in (st.path / SEGMENTS / name, st.path / SEGMENTS / f"{name}.tmp"):
            shutil.rmtree(p, ignore_errors=True)
        st.in_flight.discard(name)
    for _, _, (folder, _) in written.indexes:
        shutil.rmtree(st.indexes.index_dir() / folder, ignore_errors=True)


def _family(st: SegmentStore, field: str) -> str:
    spec = st.fields.get(field)
    return "" if spec is None else kind_of(spec).index_family


def _files_present(st: SegmentStore, written: Written) -> bool:
    """Whether every file of the plan is still there at its size (another process's orphan
    sweep may have removed an unregistered folder while it was written)."""
    folders = [] if written.segment is None else \
        [(st.path / SEGMENTS / written.segment.row.name, written.segment.row.manifest)]
    folders += [(st.indexes.index_dir() / row.folder, row.manifest)
                for row, _, _ in written.indexes]
    try:
        return all(os.stat(folder / rel).st_size == entry[0]
                   for folder, manifest in folders for rel, entry in manifest.items())
    except FileNotFoundError:
        return False


_ALL: weakref.WeakSet[Maintenance] = weakref.WeakSet()


@atexit.register
def _finish_at_exit() -> None:
    """A process that exits right after the add that asked for a seal still seals: the
    thread is a daemon (an interpreter exit must not hang on it), so exit waits here."""
    for m in list(_ALL):
        with contextlib.suppress(BaseException):
            m.wait(errors=False)


class Maintenance:
    """The collection's maintenance thread: seals the growing rows when an add asks for it
    (:meth:`request`), one seal at a time, started on the first request."""

    def __init__(self, store: SegmentStore) -> None:
        self.store = store
        self._cond = threading.Condition()
        self._wanted = False
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._failed_at = 0.0
        self.error: BaseException | None = None  # the last failure, until wait() raises it
        self.seals = 0  # seals committed here
        self.stale = 0  # plans dropped because the state moved under them
        _ALL.add(self)

    def request(self) -> None:
        """Ask for a seal (cheap; called by the add that filled the growing segment)."""
        with self._cond:
            if self._closed or (self.error is not None
                                and time.monotonic() - self._failed_at < RETRY_S):
                return
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"polyvec-maintenance-{self.store.name}",
                    daemon=True)
                self._thread.start()
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        return self._wanted or self._busy

    def info(self) -> dict[str, Any]:
        """For ``Collection.info``: whether a seal is asked for or running, how many this
        handle committed and dropped (stale), and the last failure not yet raised."""
        error = self.error
        return {"sealing": self.busy, "seals": self.seals, "stale": self.stale,
                "error": None if error is None else f"{type(error).__name__}: {error}"}

    def wait(self, timeout: float | None = None, *, errors: bool = True) -> bool:
        """Until no seal is asked for or running (``False`` on timeout); then raise the
        error the last one failed with, once (``errors=False``: forget it; the caller seals
        itself and raises its own)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (self._wanted or self._busy) and self._thread is not None \
                    and self._thread is not threading.current_thread():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            error, self.error = self.error, None
        if error is not None and errors:
            raise error
        return True

    def close(self) -> None:
        """Finish the seal asked for or running, then stop the thread (a closed handle leaves
        its collection sealed as its adds asked)."""
        self.wait(errors=False)
        with self._cond:
            self._closed = True
            self._wanted = False
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._cond.notify_all()
                    return
                self._wanted, self._busy = False, True
            try:
                self._seal()
            except BaseException as e:  # noqa: BLE001 - kept for wait(), reported now
                st = self.store
                if isinstance(e, CollectionClosed | CollectionDropped) or self._closed \
                        or st.closed or st.dropped:
                    continue  # the handle went away: its seal is moot (rows in their chunks)
                with self._cond:
                    self.error, self._failed_at = e, time.monotonic()
                warnings.warn(PolyvecWarning(
                    f"{self.store.name}: a background seal failed ({type(e).__name__}: {e}); "
                    f"the rows stay in the growing segment, durable; retried on a later add "
                    f"(flush() seals now and raises)"), stacklevel=1)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _seal(self) -> None:
        """Plan, write, commit. The write lock is held from the plan to the commit (taken and
        released under the mutex, as every holder of this handle does): other processes wait
        as they did for a seal inside an add, and no other open sweeps the unregistered files
        as a crash's orphans; this handle's adds, deletes and searches go on."""
        st = self.store
        with st.mutex:
            st.lock.acquire()
            try:
                st.refresh()
                plan = plan_seal(st) if st.wants_seal() else None
            except BaseException:
                st.lock.release()
                raise
            if plan is None:
                st.lock.release()
                return
        try:
            written = write_seal(st, plan)
        except BaseException:
            with st.mutex:
                st.lock.release()
            raise
        with st.mutex:
            try:
                try:
                    st.refresh()
                except BaseException:
                    discard(st, written)
                    raise
                if not commit_seal(st, plan, written):
                    self.stale += 1
                    return
                self.seals += 1
                after_seal(st)
            finally:
                st.lock.release()

