"""Catalog tables of model upgrades: fitted mapping arrays and backfill shadow vectors.

Both tables are created on first use (``CREATE TABLE IF NOT EXISTS``, by the writer inside its
transaction), so catalogs made before them open unchanged and readers treat a missing table
as empty.

- ``model_arrays(owner, name, dtype, shape, data, crc)``: the numeric arrays of a fitted
  mapping (``owner`` names the mapping and its version, e.g. ``map:emb:v2->v1:3``), raw
  little-endian bytes with a CRC-32 over owner, name, dtype, shape and bytes. No pickle.
- ``shadow_vectors(field, model, seq, data, crc)``: vectors of a field re-embedded by a new
  model during a backfill, keyed by the item's seq, with the same CRC scheme as ``vectors``.

Every function runs on the caller's connection: writers inside ``Catalog.transaction()``,
readers inside a read snapshot (``Catalog.read``).
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterable

import numpy as np

from ..errors import CorruptFile
from .catalog import Catalog, ItemRow, item_crc

__all__ = ["ensure_tables", "put_arrays", "get_arrays", "drop_arrays", "put_shadow",
           "get_shadow", "drop_shadow", "items_after"]

_TABLES = (
    "CREATE TABLE IF NOT EXISTS model_arrays(owner TEXT NOT NULL, name TEXT NOT NULL, "
    "dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL, "
    "PRIMARY KEY(owner, name)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS shadow_vectors(field TEXT NOT NULL, model TEXT NOT NULL, "
    "seq INTEGER NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL, "
    "PRIMARY KEY(field, model, seq)) WITHOUT ROWID",
)
_DTYPES = {"f4": np.float32, "f8": np.float64}


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                        (table,)).fetchone() is not None


def ensure_tables(cat: Catalog) -> None:
    """Create the upgrade tables if missing (inside a write transaction)."""
    for statement in _TABLES:
        cat.conn.execute(statement)


def _array_crc(owner: str, name: str, dtype: str, shape: str, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(f"{owner}\x1f{name}\x1f{dtype}\x1f{shape}".encode()))


def put_arrays(cat: Catalog, owner: str, arrays: dict[str, np.ndarray]) -> None:
    """Store float arrays under ``owner`` (replacing any of the same names)."""
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        dtype = "f8" if a.dtype == np.float64 else "f4"
        a = a.astype("<" + dtype, copy=False)
        shape = json.dumps(list(a.shape))
        data = a.tobytes()
        cat.conn.execute(
            "INSERT OR REPLACE INTO model_arrays(owner, name, dtype, shape, data, crc) "
            "VALUES (?, ?, ?, ?, ?, ?)", (owner, name, dtype, shape, data,
                                          _array_crc(owner, name, dtype, shape, data)))


def get_arrays(cat: Catalog, owner: str) -> dict[str, np.ndarray]:
    """The arrays stored under ``owner``, checksums verified (``CorruptFile`` otherwise)."""
    if not _has(cat.conn, "model_arrays"):
        return {}
    out: dict[str, np.ndarray] = {}
    for name, dtype, shape, data, crc in cat.conn.execute(
            "SELECT name, dtype, shape, data, crc FROM model_arrays WHERE owner=?", (owner,)):
        if (not isinstance(data, bytes) or dtype not in _DTYPES
                or _array_crc(owner, name, dtype, shape, data) != crc):
            raise CorruptFile(str(cat.path), f"mapping array {owner}/{name}: checksum mismatch")
        dims = json.loads(shape)
        try:
            out[name] = np.frombuffer(data, dtype="<" + dtype).reshape(dims).astype(
                _DTYPES[dtype])
        except ValueError:
            raise CorruptFile(str(cat.path), f"mapping array {owner}/{name}: {len(data)} bytes "
                              f"do not fit shape {dims}") from None
    return out


def drop_arrays(cat: Catalog, owner_prefix: str, keep: str | None = None) -> None:
    """Delete arrays whose owner starts with ``owner_prefix`` (except owner ``keep``)."""
    cat.conn.execute("DELETE FROM model_arrays WHERE substr(owner, 1, ?) = ? AND owner != ?",
                     (len(owner_prefix), owner_prefix, keep or ""))


def _shadow_crc(seq: int, field: str, model: str, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(f"{seq}\x1f{field}\x1f{model}".encode()))


def put_shadow(cat: Catalog, field: str, model: str, rows: Iterable[tuple[int, bytes]]) -> None:
    cat.conn.executemany(
        "INSERT OR REPLACE INTO shadow_vectors(field, model, seq, data, crc) "
        "VALUES (?, ?, ?, ?, ?)",
        ((field, model, s, d, _shadow_crc(s, field, model, d)) for s, d in rows))


def get_shadow(cat: Catalog, field: str, model: str, dim: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(seqs, vectors)`` of the shadow rows of ``field``/``model`` in seq order (float32)."""
    if not _has(cat.conn, "shadow_vectors"):
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    seqs, blobs = [], []
    for seq, data, crc in cat.conn.execute(
            "SELECT seq, data, crc FROM shadow_vectors WHERE field=? AND model=? ORDER BY seq",
            (field, model)):
        if not isinstance(data, bytes) or _shadow_crc(seq, field, model, data) != crc:
            raise CorruptFile(str(cat.path), f"shadow vector seq={seq} field={field!r}: "
                              "checksum mismatch")
        seqs.append(seq)
        blobs.append(data)
    try:
        vecs = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(seqs), dim)
    except ValueError:
        raise CorruptFile(str(cat.path), f"shadow vectors of {field!r}: wrong size") from None
    return np.array(seqs, dtype=np.int64), vecs.astype(np.float32)


def drop_shadow(cat: Catalog, field: str) -> None:
    if _has(cat.conn, "shadow_vectors"):
        cat.conn.execute("DELETE FROM shadow_vectors WHERE field=?", (field,))


def items_after(cat: Catalog, seq: int, limit: int) -> list[ItemRow]:
    """Up to ``limit`` live items with a seq above ``seq``, in seq order, checksums verified."""
    out = []
    for s, key, payload, crc in cat.conn.execute(
            "SELECT seq, key, payload, crc FROM items WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit)):
        if item_crc(s, key, payload) != crc:
            raise CorruptFile(str(cat.path), f"item row seq={s}: checksum mismatch")
        out.append(ItemRow(s, key, payload))
    return out
