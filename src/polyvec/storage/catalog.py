"""The collection catalog: one SQLite file that is the write-ahead log, catalog and payload store.

Tables:

- ``meta(key, value, crc)``: magic name, format version, schema, counters.
- ``items(seq, key, payload, crc)``: one row per *live* item. ``seq`` is a never-reused version
  number; an upsert gives the item a new seq, a delete removes the row. A sealed segment row whose
  seq is not here is a tombstone.
- ``chunks(first_seq, generation, count, offset, parts, crc)``: the batches of the growing
  segment (items not sealed yet), whose vectors live in ``growing/<generation>.bin`` (see
  :mod:`.growing`); ``meta.generation`` names the file new chunks go to (older generations may
  still hold chunks written while a background seal ran, format 5).
- ``deletes(pos, seq, crc)``: the delete log, one row per seq deleted or replaced, in commit
  order (``pos`` autoincrements); a reader catches up from the last position it saw. Sealing
  prunes it to a bounded tail (``meta.deletes_pruned``: positions up to it are gone).
- ``segments(name, nrows, min_seq, max_seq, manifest, crc)``: registered sealed segments.
- ``indexes(segment, field, folder, manifest, crc)``: the ANN index of a field over a segment,
  a folder of ``.npy`` files beside the (immutable) segment.

``meta.epoch`` counts changes of everything but items and chunks (segments, indexes, other
meta keys), so a reader re-reads those small tables only when it moved.

Format 1 kept growing vectors as one blob row per vector (``vectors(seq, field, data, crc)``);
:meth:`Catalog.migrate` turns such a catalog into format 2 in one transaction (the writer does
it on open) and readers of an unmigrated one load the old table.

Format 3 adds a log record to every growing chunk (see :mod:`.growing`): an add commits with
``synchronous=NORMAL`` because its fsync'd chunk can replay it; a format-2 catalog is marked
format 3 before the first such chunk is registered (a format-2 writer would cut the tail off).

Format 4 digests new segment and index files with xxh3-64 instead of CRC-32 (manifest entries
``[size, digest, 1]``, see :mod:`.segment`); older entries keep their CRC-32. The transaction
that registers a segment or an index marks the catalog format 4, so an older polyvec refuses
the folder instead of calling its files corrupt.

Format 5 lets a seal run in the background: it seals the growing rows up to a seq, and the
chunks written while it ran stay registered in their (older) generation's file while the
commit that registers the segment starts the next generation; readers and writers load the
chunks of every generation up to ``meta.generation`` (only the current one can have an
unregistered tail: the fsync'd seal commit made every earlier commit durable). The transaction
that registers a segment marks the catalog format 5, so an older polyvec, which expects the
chunks of one generation, refuses the folder.

Every row carries a CRC-32 of its content: SQLite's own checks catch broken pages, the row
checksums catch flipped bytes inside a value. WAL journal with ``synchronous=FULL``: a
transaction is durable when ``commit`` returns, except one opened with ``durable=False`` (the
add of a batch whose chunk is already fsync'd), which becomes durable with the next fsync'd
commit or checkpoint; a power loss before it may lose it, and only the latest such commits (a
WAL keeps its commits in order).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import sqlite3
import threading
import urllib.parse
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import CorruptFile, FormatVersionError, InvalidArgument, Locked, ReadOnly
from . import sidecar
from .growing import ChunkRow, TailChunk
from .segment import Checks
from .stamp import CommitStamp

__all__ = ["Catalog", "Changes", "Cursor", "IndexRow", "ItemRow", "FORMAT_VERSION", "MAGIC"]

FORMAT_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
DELETE_LOG_TAIL = 100_000  # delete-log rows kept at a seal for readers that are behind
ITEM_BATCH = 65_536  # item rows read per step of a full load (bounds its transient memory)
MAGIC = "polyvec-collection"
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE items(seq INTEGER PRIMARY KEY, key UNIQUE NOT NULL, payload TEXT NOT NULL,
                   crc INTEGER NOT NULL);
CREATE TABLE chunks(first_seq INTEGER PRIMARY KEY, generation INTEGER NOT NULL,
                    count INTEGER NOT NULL, offset INTEGER NOT NULL, parts TEXT NOT NULL,
                    crc INTEGER NOT NULL);
CREATE TABLE deletes(pos INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL,
                     crc INTEGER NOT NULL);
CREATE TABLE segments(name TEXT PRIMARY KEY, nrows INTEGER NOT NULL, min_seq INTEGER NOT NULL,
                      max_seq INTEGER NOT NULL, manifest TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE indexes(segment TEXT NOT NULL, field TEXT NOT NULL, folder TEXT NOT NULL,
                     manifest TEXT NOT NULL, crc INTEGER NOT NULL, PRIMARY KEY(segment, field));
"""


@contextlib.contextmanager
def _opening(path: Path) -> Iterator[None]:
    """SQLite's failures while opening or checking ``path``: ``Locked`` when busy, else
    ``CorruptFile`` naming it (a damaged schema can make even the error message
    undecodable)."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            raise Locked(f"{path}: {e}") from None
        raise CorruptFile(str(path), f"sqlite cannot open it: {e}") from None
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise CorruptFile(str(path), f"sqlite cannot open it: {e}") from None


def _crc_text(*parts: object) -> int:
    return zlib.crc32("\x1f".join(f"{type(p).__name__}:{p}" for p in parts).encode())


def item_crc(seq: int, key: int | str, payload: str) -> int:
    """``_crc_text(seq, key, payload)`` for an int seq and a str payload, in one format."""
    return zlib.crc32(f"int:{seq}\x1f{type(key).__name__}:{key}\x1fstr:{payload}".encode())


_DELETE_CRC_SQL = "(pos * 1000003 + seq) % 4294967296"  # the delete log's row check


def _delete_crc(pos: int, seq: int) -> int:
    return (pos * 1000003 + seq) % 4294967296


# rows per INSERT: 8,000 parameters under the 32,766 of SQLite 3.32+, else 800 (under 999)
_ROWS_PER_INSERT = 2_000 if sqlite3.sqlite_version_info >= (3, 32) else 200


@functools.cache
def _insert_items_sql(rows: int) -> str:
    return "INSERT INTO items(seq, key, payload, crc) VALUES " + ",".join(["(?,?,?,?)"] * rows)


def vector_crc(seq: int, field: str, data: bytes) -> int:
    return zlib.crc32(data, _crc_text(seq, field))


@dataclass(frozen=True)
class ItemRow:
    seq: int
    key: int | str
    payload: str


@dataclass(frozen=True)
class SegmentRow:
    name: str
    nrows: int
    min_seq: int
    max_seq: int
    manifest: dict[str, list[int]]


@dataclass(frozen=True)
class IndexRow:
    segment: str
    field: str
    folder: str
    manifest: dict[str, list[int]]


@dataclass(frozen=True)
class ItemColumns:
    """Item rows as columns, in seq order (checksums verified)."""

    seqs: np.ndarray
    keys: list[int | str]
    payloads: list[str]


@dataclass(frozen=True)
class SealedItems:
    """Which rows of the sealed segments are alive, for an open that takes their ids and
    indexed values from the segments' sidecars (:mod:`.sidecar`) instead of the item rows.

    ``count`` live items have a seq up to ``upto`` (the sealed segments' last seq). Which ones:
    every sealed row when ``count`` is the segments' row count; else the rows whose seq is not
    in ``dead`` (the whole delete log, when it was never pruned), else those in ``alive``."""

    upto: int
    count: int
    dead: np.ndarray | None = None
    alive: np.ndarray | None = None


@dataclass(frozen=True)
class Cursor:
    """What a reader has seen: where to catch up from (see :meth:`Catalog.changes_since`)."""

    seq: int  # every item seq up to this one was seen
    deletes: int  # delete-log position last applied
    epoch: int  # meta epoch (segments, indexes, other meta) last read
    generation: int  # growing generation
    chunk_seq: int  # first seq of the last growing chunk read (-1: none)
    schema: str  # the schema's JSON text: a change forces a full reload


@dataclass(frozen=True)
class Changes:
    """The catalog's content, or what changed in it since a :class:`Cursor`.

    ``full``: everything (``items``/``chunks`` are all of them). Otherwise ``items`` are the
    live items newer than the cursor, ``deleted`` the seqs deleted or replaced since, ``chunks``
    the new growing chunks (all chunks of a new generation when ``new_generation``), and
    ``meta``/``segments``/``indexes`` are ``None`` unless the epoch moved.
    """

    full: bool
    cursor: Cursor
    meta: dict[str, Any] | None
    items: ItemColumns
    deleted: list[int]
    new_generation: bool
    chunks: list[ChunkRow]
    segments: list[SegmentRow] | None
    indexes: list[IndexRow] | None
    legacy_vectors: dict[str, list[tuple[int, bytes]]] | None = None  # format 1, unmigrated
    # full reads of segments with item sidecars: ``items`` are then only the growing ones
    sealed: SealedItems | None = None


class Catalog:
    """A connection to one collection's catalog file."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.stamp = CommitStamp.open(path.parent)  # renewed after every write COMMIT
        self.readonly = False  # opened read-only: this process may not write the folder
        self._readers = threading.local()  # per thread: this catalog on its own connection
        # closers of the views' connections: a view goes with its thread, and its finalizer
        # closes the connection then (a dropped connection alone kept its file open)
        self._closers: list[weakref.finalize] = []

    # -- opening -------------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path, busy_timeout: float, *, new: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout,
                               check_same_thread=False)
        if new:  # before anything initializes the file: lets seals give pages back
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @staticmethod
    def _connect_ro(path: Path, busy_timeout: float) -> sqlite3.Connection:
        """A read-only connection (the folder or the file is not writable by this process).

        SQLite reads a WAL database read-only when it can use the ``-shm`` file; in a folder
        it cannot write, a catalog closed cleanly (no ``-wal`` left) is opened as immutable."""
        uri = "file:" + urllib.parse.quote(str(path.resolve()))
        wal = path.with_name(path.name + "-wal")
        tries = [f"{uri}?mode=ro"]
        if not wal.exists() or wal.stat().st_size == 0:
            tries.append(f"{uri}?immutable=1")
        for u in tries:
            conn = sqlite3.connect(u, uri=True, isolation_level=None, timeout=busy_timeout,
                                   check_same_thread=False)
            try:
                conn.execute("PRAGMA data_version").fetchone()
                conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError:
                conn.close()
        raise ReadOnly(str(path), "expected a folder this process may write, or a catalog "
                       "closed cleanly; got a read-only folder whose write-ahead log "
                       f"({wal.name}) SQLite cannot read without writing")

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any], *, busy_timeout: float = 10.0) -> Catalog:
        conn = cls._connect(path, busy_timeout, new=True)
        cat = cls(path, conn)
        with cat.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            cat.set_meta({"magic": MAGIC, "format_version": FORMAT_VERSION, "next_seq": 0,
                          "generation": 0, "epoch": 0, "deletes_pruned": 0, **meta})
        return cat

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = 10.0,
             checks: Checks | None = None) -> Catalog:
        """Open and check an existing catalog; raise ``CorruptFile`` naming it if it is bad.

        SQLite's ``integrity_check`` reads the whole file: with ``checks`` it runs there, on
        a connection of its own, in the background (the caller waits for it before trusting
        what it read), else in line."""
        if not path.is_file():
            raise CorruptFile(str(path), "catalog file is missing")
        readonly = not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
        if checks is not None:
            checks.call(lambda: cls._integrity(path, busy_timeout, readonly))
        else:
            cls._integrity(path, busy_timeout, readonly)
        with _opening(path):
            conn = cls._connect_ro(path, busy_timeout) if readonly else cls._connect(
                path, busy_timeout)
        cat = cls(path, conn)
        cat.readonly = readonly
        meta = cat.guard(cat.read_meta)
        if meta.get("magic") != MAGIC:
            conn.close()
            raise CorruptFile(str(path), f"expected magic {MAGIC!r}, got {meta.get('magic')!r}")
        if meta.get("format_version") not in READABLE_VERSIONS:
            conn.close()
            raise FormatVersionError(
                str(path), f"format version {meta.get('format_version')!r}; this polyvec reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))}")
        return cat

    @classmethod
    def _integrity(cls, path: Path, busy_timeout: float, readonly: bool) -> None:
        """SQLite's ``integrity_check`` (not ``quick_check``: it also verifies indexes
        against their tables), on a connection of its own."""
        conn = None
        try:
            with _opening(path):  # read-only: racing the opening connection, it must not write
                if readonly:
                    conn = cls._connect_ro(path, busy_timeout)
                else:
                    conn = sqlite3.connect("file:" + urllib.parse.quote(str(path.resolve()))
                                           + "?mode=ro", uri=True, timeout=busy_timeout,
                                           check_same_thread=False)
                problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        finally:
            if conn is not None:
                conn.close()
        if problems != ["ok"]:
            raise CorruptFile(str(path),
                              "sqlite integrity check failed: " + "; ".join(problems[:3]))

    def reader(self) -> Catalog:
        """This catalog on the calling thread's own read-only connection (opened on first
        use, closed with the catalog), for reads that must not wait for the writer that
        owns :attr:`conn`. It sees the last commit; nothing may write through it."""
        view = getattr(self._readers, "view", None)
        if view is None:
            uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=ro"
            with _opening(self.path):
                conn = (self._connect_ro(self.path, 10.0) if self.readonly else
                        sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0,
                                        check_same_thread=False))
            view = copy.copy(self)
            view.conn = conn
            self._readers.view = view
            self._closers = [c for c in self._closers if c.alive]
            self._closers.append(weakref.finalize(view, conn.close))
        return view

    def close(self) -> None:
        for close in self._closers:  # the readers first: the last connection to close
            close()  # checkpoints the WAL into the file (a read-only one cannot)
        self.conn.close()
        self.stamp.close()

    def guard(self, fn, *args):
        """Run ``fn``; sqlite failures become ``CorruptFile``/``Locked`` naming this file."""
        try:
            return fn(*args)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise Locked(f"{self.path}: {e}") from None
            if "readonly" in str(e):
                raise ReadOnly(str(self.path), f"expected a writable catalog, got: {e}"
                               ) from None
            if "too large" in str(e) or "too many" in str(e):  # a limit, not damage
                raise InvalidArgument(f"{self.path}: SQLite refused a query past one of its "
                                      f"limits: {e}") from None
            raise CorruptFile(str(self.path), f"sqlite error: {e}") from None
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            raise CorruptFile(str(self.path), f"sqlite error: {e}") from None

    # -- transactions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True, durable: bool = True
                    ) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (or deferred, for reads) ... ``COMMIT``; rollback on error.

        ``durable=False``: the commit makes no fsync (``synchronous=NORMAL``); only for a
        transaction the growing file's fsync'd log record can replay (see :mod:`.growing`)."""
        if not durable:  # the level cannot change inside a transaction
            self.conn.execute("PRAGMA synchronous=NORMAL")
        try:
            try:
                self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as e:
                raise Locked(f"{self.path}: {e}") from None
            try:
                yield self.conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise
            self.guard(self.conn.execute, "COMMIT")
        finally:
            if not durable:
                self.conn.execute("PRAGMA synchronous=FULL")
        if write:
            self.stamp.renew()

    def reclaim(self) -> None:
        """Return free pages (e.g. of sealed vectors) to the file system."""
        # the pragma frees one page per step; executescript steps it to the end
        self.guard(self.conn.executescript, "PRAGMA incremental_vacuum;")

    def data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- meta ----------------------------------------------------------------------------------

    def set_meta(self, values: dict[str, Any]) -> None:
        """Write meta rows; any key but the seq counter moves the epoch (readers re-read meta)."""
        if values.keys() - {"next_seq", "epoch"}:
            self._bump()
        self._put_meta(values)

    def _bump(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        self._put_meta({"epoch": (int(json.loads(row[0])) if row else 0) + 1})

    def _put_meta(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            text = json.dumps(v, sort_keys=True)
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value, crc) VALUES (?, ?, ?)",
                              (k, text, _crc_text(k, text)))

    def read_meta(self) -> dict[str, Any]:
        return self._meta_rows(None)

    # -- reading everything --------------------------------------------------------------------

    def changes_since(self, cursor: Cursor | None, *, sidecars: bool = True
                      ) -> tuple[int, Changes]:
        """What changed since ``cursor`` (everything when ``None``), read and verified in one
        read snapshot; returns the data version it was read at, with the changes.

        The cost is proportional to what changed: items newer than ``cursor.seq``, delete-log
        rows after ``cursor.deletes``, new growing chunks, and the small segment/index/meta
        tables only when the epoch moved. A full read is returned instead when the delete log
        was pruned past the cursor, the schema changed, or the catalog is of format 1; with
        ``sidecars`` and every segment carrying item sidecars, it reads the item rows of the
        growing segment only, and :class:`SealedItems` for the sealed ones.
        """
        return self.read(self._changes, cursor, sidecars)

    def _changes(self, cursor: Cursor | None, sidecars: bool = True) -> Changes:
        head = self._meta_rows(("next_seq", "epoch", "generation", "deletes_pruned",
                                "format_version", "schema"))
        if head.get("format_version") == 1:
            return self._full_v1()
        epoch, generation = int(head["epoch"]), int(head["generation"])
        schema = json.dumps(head.get("schema"), sort_keys=True)
        # payload texts are kept only for the indexed payload columns (else checked, dropped)
        keep = bool((head.get("schema") or {}).get("indexed"))
        if (cursor is None or cursor.deletes < int(head["deletes_pruned"])
                or cursor.schema != schema):
            return self._full(schema, keep, sidecars)
        deleted = self._deleted_after(cursor.deletes)
        new_gen = generation != cursor.generation
        chunks = self._chunks(generation, -1 if new_gen else cursor.chunk_seq)
        moved = epoch != cursor.epoch
        new = Cursor(
            seq=int(head["next_seq"]) - 1,
            deletes=deleted[-1][0] if deleted else cursor.deletes,
            epoch=epoch, generation=generation,
            chunk_seq=chunks[-1].first_seq if chunks else (-1 if new_gen else cursor.chunk_seq),
            schema=schema)
        return Changes(
            full=False, cursor=new, meta=self.read_meta() if moved else None,
            items=self._items("WHERE seq > ?", (cursor.seq,), keep),
            deleted=[s for _, s in deleted], new_generation=new_gen, chunks=chunks,
            segments=self._segments() if moved else None,
            indexes=self._indexes() if moved else None)

    def _full(self, schema: str, keep_payloads: bool, sidecars: bool = True) -> Changes:
        meta = self.read_meta()
        segments = self._segments()
        n_paths = len((meta.get("schema") or {}).get("indexed") or ())
        sealed = self._sealed_items(segments, meta, n_paths) if sidecars else None
        generation = int(meta["generation"])
        chunks = self._chunks(generation, -1)
        (last_delete,) = self.conn.execute("SELECT COALESCE(MAX(pos), 0) FROM deletes"
                                           ).fetchone()
        cursor = Cursor(seq=int(meta["next_seq"]) - 1, deletes=max(int(last_delete),
                                                                   int(meta["deletes_pruned"])),
                        epoch=int(meta["epoch"]), generation=generation,
                        chunk_seq=chunks[-1].first_seq if chunks else -1, schema=schema)
        items = (self._items("", (), keep_payloads) if sealed is None else
                 self._items("WHERE seq > ?", (sealed.upto,), keep_payloads))
        return Changes(full=True, cursor=cursor, meta=meta, items=items,
                       deleted=[], new_generation=True, chunks=chunks,
                       segments=segments, indexes=self._indexes(), sealed=sealed)

    def _sealed_items(self, segments: list[SegmentRow], meta: dict[str, Any],
                      n_paths: int) -> SealedItems | None:
        """Which sealed rows are alive, read without their item rows; ``None`` when some
        segment has no item sidecars (its items are read from the item rows)."""
        if not segments or not all(sidecar.has_sidecars(r.manifest, n_paths)
                                   for r in segments):
            return None
        upto = max(r.max_seq for r in segments)
        # all items (counted on the key index, a fraction of the table's pages) less the
        # growing ones (a range of the table)
        (total,) = self.conn.execute("SELECT COUNT(*) FROM items").fetchone()
        (newer,) = self.conn.execute("SELECT COUNT(*) FROM items WHERE seq > ?",
                                     (upto,)).fetchone()
        count = int(total) - int(newer)
        if count == sum(r.nrows for r in segments):
            return SealedItems(upto, int(count))
        if int(meta.get("deletes_pruned", 0)) == 0:
            dead = np.array([seq for _, seq in self._deleted_after(0) if seq <= upto],
                            dtype=np.int64)
            return SealedItems(upto, int(count), dead=np.unique(dead))
        alive = np.fromiter((r[0] for r in self.conn.execute(
            "SELECT seq FROM items WHERE seq <= ? ORDER BY seq", (upto,))), dtype=np.int64)
        return SealedItems(upto, int(count), alive=alive)

    def _full_v1(self) -> Changes:
        meta = self.read_meta()
        vectors: dict[str, list[tuple[int, bytes]]] = {}
        for seq, field, data, crc in self.conn.execute(
                "SELECT seq, field, data, crc FROM vectors ORDER BY field, seq"):
            if not isinstance(data, bytes) or vector_crc(seq, field, data) != crc:
                raise CorruptFile(str(self.path), f"vector row seq={seq} field={field!r}: "
                                  "checksum mismatch")
            vectors.setdefault(field, []).append((seq, data))
        cursor = Cursor(-1, -1, -1, -1, -1, "")  # never caught up from: always a full read
        return Changes(full=True, cursor=cursor, meta=meta, items=self._items("", ()),
                       deleted=[], new_generation=True, chunks=[],
                       segments=self._segments(), indexes=self._indexes(),
                       legacy_vectors=vectors)

    def _meta_rows(self, keys: tuple[str, ...] | None) -> dict[str, Any]:
        """The meta rows named by ``keys`` (``None``: all), checksums verified."""
        out: dict[str, Any] = {}
        q = "SELECT key, value, crc FROM meta"
        if keys is not None:
            q += f" WHERE key IN ({','.join('?' * len(keys))})"
        for k, text, crc in self.conn.execute(q, keys or ()):
            if _crc_text(k, text) != crc:
                raise CorruptFile(str(self.path), f"meta row {k!r}: checksum mismatch")
            try:
                out[k] = json.loads(text)
            except ValueError:
                raise CorruptFile(str(self.path), f"meta row {k!r}: not JSON") from None
        return out

    def _items(self, where: str, params: tuple[Any, ...], keep_payloads: bool = True
               ) -> ItemColumns:
        """Item rows ``where`` as columns, checked, read :data:`ITEM_BATCH` rows at a time: a
        full load holds the columns and one batch of row tuples, not a tuple per item. Without
        ``keep_payloads`` the payload texts are checked and dropped (``payloads`` is empty):
        a collection without indexed payload columns needs none of them in memory."""
        crc32 = zlib.crc32
        cur = self.conn.execute(
            f"SELECT seq, key, payload, crc FROM items {where} ORDER BY seq", params)
        seqs: list[np.ndarray] = []
        keys: list[int | str] = []
        payloads: list[str] = []
        while rows := cur.fetchmany(ITEM_BATCH):
            try:  # item_crc, inlined: a full load checks every row
                bad = [r for r in rows if crc32(
                    f"int:{r[0]}\x1f{type(r[1]).__name__}:{r[1]}\x1fstr:{r[2]}".encode()) != r[3]
                    or type(r[1]) not in (int, str) or type(r[2]) is not str]
            except UnicodeEncodeError:  # a lone surrogate from a damaged row
                bad = rows
            if bad:
                raise CorruptFile(str(self.path), f"item row seq={bad[0][0]}: checksum mismatch")
            seqs.append(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
            keys += [r[1] for r in rows]
            if keep_payloads:
                payloads += [r[2] for r in rows]
        return ItemColumns(np.concatenate(seqs) if seqs else np.zeros(0, np.int64), keys,
                           payloads)

    def verify_items(self) -> int:
        """Read every item row and check its checksum; returns how many there are."""
        return len(self._items("", (), False).seqs)

    def _deleted_after(self, pos: int) -> list[tuple[int, int]]:
        out = []
        for p, seq, crc in self.conn.execute(
                "SELECT pos, seq, crc FROM deletes WHERE pos > ? ORDER BY pos", (pos,)):
            if _delete_crc(p, seq) != crc:
                raise CorruptFile(str(self.path), f"delete log row {p}: checksum mismatch")
            out.append((p, seq))
        return out

    def _chunks(self, generation: int, after_seq: int) -> list[ChunkRow]:
        out = []
        for first, gen, count, offset, parts, crc in self.conn.execute(
                "SELECT first_seq, generation, count, offset, parts, crc FROM chunks "
                "WHERE first_seq > ? ORDER BY first_seq", (after_seq,)):
            if _crc_text(first, gen, count, offset, parts) != crc:
                raise CorruptFile(str(self.path), f"chunk row seq={first}: checksum mismatch")
            if gen > generation:  # older generations: chunks a seal has not reached yet
                raise CorruptFile(str(self.path), f"chunk row seq={first}: generation {gen}, "
                                  f"expected at most {generation}")
            out.append(ChunkRow(first, gen, count, offset, json.loads(parts)))
        return out

    def _segments(self) -> list[SegmentRow]:
        segments = []
        for name, nrows, lo, hi, manifest, crc in self.conn.execute(
                "SELECT name, nrows, min_seq, max_seq, manifest, crc FROM segments "
                "ORDER BY min_seq"):
            if _crc_text(name, nrows, lo, hi, manifest) != crc:
                raise CorruptFile(str(self.path), f"segment row {name!r}: checksum mismatch")
            segments.append(SegmentRow(name, nrows, lo, hi, json.loads(manifest)))
        return segments

    def _indexes(self) -> list[IndexRow]:
        indexes = []
        for seg, field, folder, manifest, crc in self.conn.execute(
                "SELECT segment, field, folder, manifest, crc FROM indexes ORDER BY segment"):
            if _crc_text(seg, field, folder, manifest) != crc:
                raise CorruptFile(str(self.path), f"index row {seg!r}/{field!r}: checksum "
                                  "mismatch")
            indexes.append(IndexRow(seg, field, folder, json.loads(manifest)))
        return indexes

    def read(self, fn: Callable[..., T], *args: Any) -> tuple[int, T]:
        """Run ``fn(*args)`` in one read snapshot; returns ``(data_version, result)``.

        Inside an open transaction (see :meth:`pinned`) it reads that snapshot; otherwise in a
        read transaction of its own. The data version names the state ``fn`` saw: compare it
        with the version an in-memory mirror was built at to detect staleness.
        """
        if self.conn.in_transaction:
            return self._pinned_version(), self.guard(fn, *args)
        with self.transaction(write=False):
            version = self._pinned_version()
            result = self.guard(fn, *args)
        return version, result

    def pinned(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A read transaction: every :meth:`read` inside it sees one snapshot."""
        return self.transaction(write=False)

    def _pinned_version(self) -> int:
        self.guard(self.conn.execute, "SELECT 1 FROM meta LIMIT 1")  # starts the WAL snapshot
        return self.data_version()

    # -- writing (inside a transaction) ---------------------------------------------------------

    def allocate_seqs(self, n: int) -> int:
        """Reserve ``n`` new seqs; returns the first."""
        (text,) = self.conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        first = int(json.loads(text))
        self.set_meta({"next_seq": first + n})
        return first

    def live_seqs(self, keys: Iterable[int | str]) -> dict[int | str, int]:
        """Current seq of each key that exists."""
        out: dict[int | str, int] = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = f"SELECT key, seq FROM items WHERE key IN ({','.join('?' * len(part))})"
            out.update((k, s) for k, s in self.conn.execute(q, part))
        return out

    def delete_seqs(self, seqs: Iterable[int]) -> None:
        """Remove the items of ``seqs`` and append them to the delete log."""
        rows = [(s,) for s in seqs]
        if not rows:
            return
        self.conn.executemany("DELETE FROM items WHERE seq=?", rows)
        (last,) = self.conn.execute("SELECT COALESCE(MAX(pos), 0) FROM deletes").fetchone()
        self.conn.executemany("INSERT INTO deletes(seq, crc) VALUES (?, 0)", rows)
        # the check covers the autoincremented position too
        self.conn.execute(f"UPDATE deletes SET crc = {_DELETE_CRC_SQL} WHERE pos > ?", (last,))

    def insert_item_columns(self, seqs: Sequence[int], keys: Sequence[int | str],
                            payloads: Sequence[str]) -> None:
        """Insert item rows given as columns, ``_ROWS_PER_INSERT`` rows per ``INSERT``
        statement (a multi-row ``VALUES``: a third of ``executemany``'s cost per row)."""
        crc32 = zlib.crc32
        n = len(keys)
        flat: list[Any] = [None] * (4 * n)
        flat[0::4] = seqs
        flat[1::4] = keys
        flat[2::4] = payloads
        # item_crc, inlined (one f-string and one crc per row; int keys without the type name
        # lookup)
        if all(type(k) is int for k in keys):
            flat[3::4] = [crc32(f"int:{s}\x1fint:{k}\x1fstr:{t}".encode())
                          for s, k, t in zip(seqs, keys, payloads, strict=True)]
        else:
            flat[3::4] = [crc32(f"int:{s}\x1f{type(k).__name__}:{k}\x1fstr:{t}".encode())
                          for s, k, t in zip(seqs, keys, payloads, strict=True)]
        for lo in range(0, n, _ROWS_PER_INSERT):
            hi = min(n, lo + _ROWS_PER_INSERT)
            self.conn.execute(_insert_items_sql(hi - lo), flat[4 * lo:4 * hi])

    def growing_end(self) -> tuple[int, int]:
        """``(generation, end offset of its registered chunks)`` of the growing file."""
        generation = int(self._meta_rows(("generation",))["generation"])  # checked
        row = self.conn.execute("SELECT first_seq, generation, count, offset, parts, crc "
                                "FROM chunks WHERE generation = ? ORDER BY first_seq DESC "
                                "LIMIT 1", (generation,)).fetchone()
        if row is None:
            return generation, 0
        if _crc_text(*row[:5]) != row[5]:  # read before the full load checks every row
            raise CorruptFile(str(self.path), f"chunk row seq={row[0]}: checksum mismatch")
        return generation, ChunkRow(0, generation, 0, row[3], json.loads(row[4])).end

    def replay(self, generation: int, chunk: TailChunk) -> bool:
        """Apply a growing chunk whose registering commit was lost (see :mod:`.growing`), as
        its writer did; ``False`` (nothing done) when it does not continue the catalog's seqs
        or its ids contradict the catalog (then it is not one of its lost commits)."""
        rec = chunk.record
        (text,) = self.conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        if int(json.loads(text)) != rec.first_seq:
            return False
        existing = self.live_seqs(rec.keys)
        if existing and not rec.replace:
            return False
        n = len(rec.keys)
        self.delete_seqs(existing.values())
        self.allocate_seqs(n)
        self.insert_item_columns(range(rec.first_seq, rec.first_seq + n), rec.keys,
                                 rec.payloads)
        self.insert_chunk(ChunkRow(rec.first_seq, generation, n, chunk.offset, chunk.parts))
        return True

    def insert_chunk(self, chunk: ChunkRow) -> None:
        text = json.dumps(chunk.parts, sort_keys=True)
        self.conn.execute(
            "INSERT INTO chunks(first_seq, generation, count, offset, parts, crc) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (chunk.first_seq, chunk.generation, chunk.count, chunk.offset, text,
             _crc_text(chunk.first_seq, chunk.generation, chunk.count, chunk.offset, text)))

    def cursor(self) -> Cursor:
        """The cursor of the current state (a writer's, right after its own commit)."""
        head = self._meta_rows(("next_seq", "epoch", "generation", "deletes_pruned", "schema"))
        (last_delete,) = self.conn.execute("SELECT COALESCE(MAX(pos), 0) FROM deletes"
                                           ).fetchone()
        (last_chunk,) = self.conn.execute("SELECT COALESCE(MAX(first_seq), -1) FROM chunks"
                                          ).fetchone()
        return Cursor(seq=int(head["next_seq"]) - 1,
                      deletes=max(int(last_delete), int(head["deletes_pruned"])),
                      epoch=int(head["epoch"]), generation=int(head["generation"]),
                      chunk_seq=int(last_chunk),
                      schema=json.dumps(head.get("schema"), sort_keys=True))

    def chunk_seqs(self, upto: int) -> list[int]:
        """First seqs of the registered chunks up to seq ``upto`` (in order)."""
        return [s for (s,) in self.conn.execute(
            "SELECT first_seq FROM chunks WHERE first_seq <= ? ORDER BY first_seq", (upto,))]

    def chunk_generations(self) -> set[int]:
        """The growing generations that still hold registered chunks."""
        return {int(g) for (g,) in self.conn.execute("SELECT DISTINCT generation FROM chunks")}

    def register_segments(self, add: list[SegmentRow], remove: list[str],
                          sealed_upto: int | None) -> None:
        """Swap segments in one transaction. ``sealed_upto`` (not ``None``): the growing rows
        up to that seq were sealed, so their chunks are dropped, a new growing generation
        starts (the chunks after them, written while a background seal ran, stay where they
        are until the next seal) and the delete log is pruned to its tail."""
        for r in add:
            text = json.dumps(r.manifest, sort_keys=True)
            self.conn.execute(
                "INSERT INTO segments(name, nrows, min_seq, max_seq, manifest, crc) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (r.name, r.nrows, r.min_seq, r.max_seq, text,
                 _crc_text(r.name, r.nrows, r.min_seq, r.max_seq, text)))
        if add:
            self._mark_format()
        self.conn.executemany("DELETE FROM segments WHERE name=?", [(n,) for n in remove])
        self.conn.executemany("DELETE FROM indexes WHERE segment=?", [(n,) for n in remove])
        self._bump()
        if sealed_upto is not None:
            generation, _ = self.growing_end()
            self.conn.execute("DELETE FROM chunks WHERE first_seq <= ?", (sealed_upto,))
            self._put_meta({"generation": generation + 1})
            (last,) = self.conn.execute("SELECT COALESCE(MAX(pos), 0) FROM deletes").fetchone()
            cut = int(last) - DELETE_LOG_TAIL
            if cut > 0:
                self.conn.execute("DELETE FROM deletes WHERE pos <= ?", (cut,))
                self._put_meta({"deletes_pruned": cut})

    def migrate(self, write_growing: Callable[[int, int, dict[str, bytes]],
                                              dict[str, list[int]]],
                encode: Callable[[str, list[bytes]], bytes]) -> bool:
        """Turn a format-1 catalog into format 2 (inside the caller's write transaction).

        The growing rows of the ``vectors`` table become chunks of generation 0 (one per run
        of consecutive seqs): ``encode(field, blobs)`` makes a field's part from its rows'
        blobs, ``write_growing(generation, end, parts)`` appends it durably and returns the
        layout. Returns whether anything was migrated.
        """
        meta = self.read_meta()
        if meta.get("format_version") != 1:
            return False
        rows: dict[int, dict[str, bytes]] = {}
        for seq, field, data, crc in self.conn.execute(
                "SELECT seq, field, data, crc FROM vectors ORDER BY seq, field"):
            if not isinstance(data, bytes) or vector_crc(seq, field, data) != crc:
                raise CorruptFile(str(self.path), f"vector row seq={seq} field={field!r}: "
                                  "checksum mismatch")
            rows.setdefault(seq, {})[field] = data
        for statement in _SCHEMA.split(";"):
            if "chunks" in statement or "deletes" in statement:
                self.conn.execute(statement)
        seqs = sorted(rows)
        end = 0
        start = 0
        for i in range(1, len(seqs) + 1):
            if i < len(seqs) and seqs[i] == seqs[i - 1] + 1:
                continue
            run = seqs[start:i]
            fields = sorted(rows[run[0]])
            parts = {f: encode(f, [rows[s][f] for s in run]) for f in fields}
            layout = write_growing(0, end, parts)
            chunk = ChunkRow(run[0], 0, len(run), end, layout)
            self.insert_chunk(chunk)
            end = chunk.end
            start = i
        self.conn.execute("DROP TABLE vectors")
        self.set_meta({"format_version": FORMAT_VERSION, "generation": 0, "deletes_pruned": 0})
        return True

    def put_indexes(self, rows: list[IndexRow], *, drop_field: str | None = None) -> None:
        """Register index folders (replacing a segment's previous index of that field)."""
        if drop_field is not None:
            self.conn.execute("DELETE FROM indexes WHERE field=?", (drop_field,))
        for r in rows:
            text = json.dumps(r.manifest, sort_keys=True)
            self.conn.execute(
                "INSERT OR REPLACE INTO indexes(segment, field, folder, manifest, crc) "
                "VALUES (?, ?, ?, ?, ?)",
                (r.segment, r.field, r.folder, text, _crc_text(r.segment, r.field, r.folder,
                                                               text)))
        if rows:
            self._mark_format()

    def _mark_format(self) -> None:
        """Mark the catalog the current format (in the caller's write transaction) before
        registering files only it can verify."""
        if self._meta_rows(("format_version",)).get("format_version") != FORMAT_VERSION:
            self._put_meta({"format_version": FORMAT_VERSION})

    def index_folders(self) -> set[str]:
        return {f for (f,) in self.conn.execute("SELECT folder FROM indexes")}

    def item_seqs_matching(self, where_sql: str, params: list[Any]) -> list[int]:
        return [s for (s,) in self.conn.execute(
            f"SELECT seq FROM items WHERE {where_sql}", params)]

    def items_by_seqs(self, seqs: list[int]) -> dict[int, tuple[int | str, str]]:
        """``seq -> (key, payload)`` of the seqs that are live, checksums verified.

        Looked up by rowid in the table itself, not through the key index.
        """
        out: dict[int, tuple[int | str, str]] = {}
        for i in range(0, len(seqs), 500):
            part = seqs[i:i + 500]
            q = (f"SELECT seq, key, payload, crc FROM items "
                 f"WHERE seq IN ({','.join('?' * len(part))})")
            for seq, key, payload, crc in self.conn.execute(q, part):
                if item_crc(seq, key, payload) != crc:
                    raise CorruptFile(str(self.path), f"item row seq={seq}: checksum mismatch")
                out[seq] = (key, payload)
        return out
