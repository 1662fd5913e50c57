"""The collection catalog: one SQLite file that is the write-ahead log, catalog and payload store.

Tables:

- ``meta(key, value, crc)``: magic name, format version, schema, counters.
- ``items(seq, key, payload, crc)``: one row per *live* item. ``seq`` is a never-reused version
  number; an upsert gives the item a new seq, a delete removes the row. A sealed segment row whose
  seq is not here is a tombstone.
- ``vectors(seq, field, data, crc)``: vectors of the growing segment (items not sealed yet).
- ``segments(name, nrows, min_seq, max_seq, manifest, crc)``: registered sealed segments.
- ``indexes(segment, field, folder, manifest, crc)``: the ANN index of a field over a segment,
  a folder of ``.npy`` files beside the (immutable) segment.

Every row carries a CRC-32 of its content: SQLite's own checks catch broken pages, the row
checksums catch flipped bytes inside a value. WAL journal with ``synchronous=FULL``: a
transaction is durable when ``commit`` returns.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CorruptFile, FormatVersionError, Locked

__all__ = ["Catalog", "IndexRow", "ItemRow", "FORMAT_VERSION", "MAGIC", "Snapshot"]

FORMAT_VERSION = 1
MAGIC = "polyvec-collection"
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE items(seq INTEGER PRIMARY KEY, key UNIQUE NOT NULL, payload TEXT NOT NULL,
                   crc INTEGER NOT NULL);
CREATE TABLE vectors(seq INTEGER NOT NULL, field TEXT NOT NULL, data BLOB NOT NULL,
                     crc INTEGER NOT NULL, PRIMARY KEY(seq, field)) WITHOUT ROWID;
CREATE TABLE segments(name TEXT PRIMARY KEY, nrows INTEGER NOT NULL, min_seq INTEGER NOT NULL,
                      max_seq INTEGER NOT NULL, manifest TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE indexes(segment TEXT NOT NULL, field TEXT NOT NULL, folder TEXT NOT NULL,
                     manifest TEXT NOT NULL, crc INTEGER NOT NULL, PRIMARY KEY(segment, field));
"""


def _crc_text(*parts: object) -> int:
    return zlib.crc32("\x1f".join(f"{type(p).__name__}:{p}" for p in parts).encode())


def item_crc(seq: int, key: int | str, payload: str) -> int:
    return _crc_text(seq, key, payload)


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
class Snapshot:
    """Everything in the catalog, read in one transaction and verified."""

    meta: dict[str, Any]
    items: list[ItemRow]
    vectors: dict[str, list[tuple[int, bytes]]]  # field -> [(seq, data)] in seq order
    segments: list[SegmentRow]
    indexes: list[IndexRow]


class Catalog:
    """A connection to one collection's catalog file."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

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

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any], *, busy_timeout: float = 10.0) -> Catalog:
        conn = cls._connect(path, busy_timeout, new=True)
        cat = cls(path, conn)
        with cat.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            cat.set_meta({"magic": MAGIC, "format_version": FORMAT_VERSION, "next_seq": 0, **meta})
        return cat

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = 10.0) -> Catalog:
        """Open and check an existing catalog; raise ``CorruptFile`` naming it if it is bad."""
        if not path.is_file():
            raise CorruptFile(str(path), "catalog file is missing")
        try:
            conn = cls._connect(path, busy_timeout)
            # integrity_check, not quick_check: it also verifies indexes against their tables
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        except sqlite3.OperationalError as e:
            if "locked" in str(e):
                raise Locked(f"{path}: {e}") from None
            raise CorruptFile(str(path), f"sqlite cannot open it: {e}") from None
        except sqlite3.DatabaseError as e:
            raise CorruptFile(str(path), f"sqlite cannot open it: {e}") from None
        if problems != ["ok"]:
            conn.close()
            raise CorruptFile(str(path),
                              "sqlite integrity check failed: " + "; ".join(problems[:3]))
        cat = cls(path, conn)
        meta = cat.guard(cat.read_meta)
        if meta.get("magic") != MAGIC:
            conn.close()
            raise CorruptFile(str(path), f"expected magic {MAGIC!r}, got {meta.get('magic')!r}")
        if meta.get("format_version") != FORMAT_VERSION:
            conn.close()
            raise FormatVersionError(
                str(path), f"format version {meta.get('format_version')!r}; this polyvec reads "
                f"version {FORMAT_VERSION}")
        return cat

    def close(self) -> None:
        self.conn.close()

    def guard(self, fn, *args):
        """Run ``fn``; sqlite failures become ``CorruptFile``/``Locked`` naming this file."""
        try:
            return fn(*args)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise Locked(f"{self.path}: {e}") from None
            raise CorruptFile(str(self.path), f"sqlite error: {e}") from None
        except sqlite3.DatabaseError as e:
            raise CorruptFile(str(self.path), f"sqlite error: {e}") from None

    # -- transactions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (or deferred, for reads) ... ``COMMIT``; rollback on error."""
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

    def reclaim(self) -> None:
        """Return free pages (e.g. of sealed vectors) to the file system."""
        # the pragma frees one page per step; executescript steps it to the end
        self.guard(self.conn.executescript, "PRAGMA incremental_vacuum;")

    def data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- meta ----------------------------------------------------------------------------------

    def set_meta(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            text = json.dumps(v, sort_keys=True)
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value, crc) VALUES (?, ?, ?)",
                              (k, text, _crc_text(k, text)))

    def read_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, text, crc in self.conn.execute("SELECT key, value, crc FROM meta"):
            if _crc_text(k, text) != crc:
                raise CorruptFile(str(self.path), f"meta row {k!r}: checksum mismatch")
            try:
                out[k] = json.loads(text)
            except ValueError:
                raise CorruptFile(str(self.path), f"meta row {k!r}: not JSON") from None
        return out

    # -- reading everything --------------------------------------------------------------------

    def snapshot(self) -> tuple[int, Snapshot]:
        """Read and verify the whole catalog in one read transaction.

        Returns the data version the snapshot was read at, with the snapshot.
        """
        return self.read(self._snapshot)

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

    def _snapshot(self) -> Snapshot:
        meta = self.read_meta()
        items = []
        for seq, key, payload, crc in self.conn.execute(
                "SELECT seq, key, payload, crc FROM items ORDER BY seq"):
            if not isinstance(key, int | str) or item_crc(seq, key, payload) != crc:
                raise CorruptFile(str(self.path), f"item row seq={seq}: checksum mismatch")
            items.append(ItemRow(seq, key, payload))
        vectors: dict[str, list[tuple[int, bytes]]] = {}
        for seq, field, data, crc in self.conn.execute(
                "SELECT seq, field, data, crc FROM vectors ORDER BY field, seq"):
            if not isinstance(data, bytes) or vector_crc(seq, field, data) != crc:
                raise CorruptFile(str(self.path), f"vector row seq={seq} field={field!r}: "
                                  "checksum mismatch")
            vectors.setdefault(field, []).append((seq, data))
        segments = []
        for name, nrows, lo, hi, manifest, crc in self.conn.execute(
                "SELECT name, nrows, min_seq, max_seq, manifest, crc FROM segments "
                "ORDER BY min_seq"):
            if _crc_text(name, nrows, lo, hi, manifest) != crc:
                raise CorruptFile(str(self.path), f"segment row {name!r}: checksum mismatch")
            segments.append(SegmentRow(name, nrows, lo, hi, json.loads(manifest)))
        indexes = []
        for seg, field, folder, manifest, crc in self.conn.execute(
                "SELECT segment, field, folder, manifest, crc FROM indexes ORDER BY segment"):
            if _crc_text(seg, field, folder, manifest) != crc:
                raise CorruptFile(str(self.path), f"index row {seg!r}/{field!r}: checksum "
                                  "mismatch")
            indexes.append(IndexRow(seg, field, folder, json.loads(manifest)))
        return Snapshot(meta, items, vectors, segments, indexes)

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
        rows = [(s,) for s in seqs]
        self.conn.executemany("DELETE FROM items WHERE seq=?", rows)
        self.conn.executemany("DELETE FROM vectors WHERE seq=?", rows)

    def insert_items(self, rows: Iterable[ItemRow]) -> None:
        self.conn.executemany(
            "INSERT INTO items(seq, key, payload, crc) VALUES (?, ?, ?, ?)",
            ((r.seq, r.key, r.payload, item_crc(r.seq, r.key, r.payload)) for r in rows))

    def insert_vectors(self, field: str, rows: Iterable[tuple[int, bytes]]) -> None:
        self.conn.executemany(
            "INSERT INTO vectors(seq, field, data, crc) VALUES (?, ?, ?, ?)",
            ((s, field, d, vector_crc(s, field, d)) for s, d in rows))

    def register_segments(self, add: list[SegmentRow], remove: list[str],
                          drop_vectors_upto: int | None) -> None:
        """Swap segments in one transaction; drop growing vectors that are now sealed."""
        for r in add:
            text = json.dumps(r.manifest, sort_keys=True)
            self.conn.execute(
                "INSERT INTO segments(name, nrows, min_seq, max_seq, manifest, crc) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (r.name, r.nrows, r.min_seq, r.max_seq, text,
                 _crc_text(r.name, r.nrows, r.min_seq, r.max_seq, text)))
        self.conn.executemany("DELETE FROM segments WHERE name=?", [(n,) for n in remove])
        self.conn.executemany("DELETE FROM indexes WHERE segment=?", [(n,) for n in remove])
        if drop_vectors_upto is not None:
            self.conn.execute("DELETE FROM vectors WHERE seq <= ?", (drop_vectors_upto,))

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
