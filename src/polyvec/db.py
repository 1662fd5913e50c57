"""A database: a folder holding one sub-folder per collection.

Each collection has its own catalog and segments, so damage to one never affects another.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from secrets import token_hex
from typing import Any

from .collection import CATALOG, DEFAULT_SEGMENT_ROWS, Collection
from .engine.upgrade import check_compatible
from .errors import (
    CollectionExists,
    CorruptFile,
    InvalidArgument,
    NotADatabase,
    UnknownCollection,
    UnknownField,
)
from .spec import CollectionSchema, FieldSpec
from .storage.lock import WriteLock
from .storage.segment import fsync_dir
from .storage.stamp import CommitStamp

__all__ = ["Database", "connect"]

MARKER = "polyvec.json"
DB_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")


def connect(path: str | os.PathLike[str], *, create: bool | None = None,
            lock_timeout: float = 10.0) -> Database:
    """Open the database folder at ``path``, creating it in a new or empty folder.

    ``create=None`` (the default) makes a database only where ``path`` does not exist or is an
    empty folder; ``create=True`` also in a folder holding other files; ``create=False`` never
    (read-only tools). Anything else raises ``NotADatabase`` and writes nothing.

    >>> import tempfile, polyvec as pv
    >>> db = pv.connect(tempfile.mkdtemp())
    >>> db.list_collections()
    []
    """
    if isinstance(path, str) and not path.strip():
        raise InvalidArgument(f"path: expected a database folder, got {path!r} (use '.' for "
                              "the current folder)")
    return Database(Path(path), lock_timeout=lock_timeout, create=create)


def check_name(name: object) -> str:
    """``name`` if it is a valid collection name (a folder's, a sharded layout's)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(f"collection name: expected letters, digits, '_' or '-' "
                              f"(1-128 chars, not starting with '_'/'-'), got {name!r}")
    return name


class Database:
    def __init__(self, path: Path, *, lock_timeout: float = 10.0,
                 create: bool | None = None) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        marker = path / MARKER
        if path.exists() and not path.is_dir():
            raise NotADatabase(str(path), "expected a database folder, got a file")
        if not marker.exists():
            if create is False:
                got = "a folder without one" if path.exists() else "nothing"
                raise NotADatabase(str(path), f"expected a polyvec database (a folder with "
                                   f"{MARKER}), got {got}")
            if create is None and path.exists() and any(path.iterdir()):
                raise NotADatabase(str(path), f"expected a polyvec database or an empty "
                                   f"folder, got a folder holding other files without {MARKER} "
                                   "(pass create=True to make a database in it)")
            path.mkdir(parents=True, exist_ok=True)
            tmp = path / f".{MARKER}.{token_hex(4)}"
            tmp.write_text(json.dumps({"magic": "polyvec-db", "format_version": DB_FORMAT}))
            os.replace(tmp, marker)
            fsync_dir(path)
        else:
            try:
                meta = json.loads(marker.read_text())
                ok = meta.get("magic") == "polyvec-db" and meta.get("format_version") == DB_FORMAT
            except (ValueError, AttributeError):
                ok = False
            if not ok:
                raise CorruptFile(str(marker), f"expected a polyvec-db marker of format "
                                  f"{DB_FORMAT}")
        self._open: dict[str, Collection] = {}

    def _dir(self, name: str) -> Path:
        return self.path / check_name(name)

    def list_collections(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir()
                      if p.is_dir() and _NAME.match(p.name) and (p / CATALOG).exists())

    def create_collection(self, name: str, vectors: dict[str, FieldSpec], *,
                          indexed: list[str] | tuple[str, ...] = (),
                          segment_rows: int = DEFAULT_SEGMENT_ROWS,
                          embedders: dict[str, Any] | None = None,
                          exist_ok: bool = False) -> Collection:
        """Create a collection with named vector fields and indexed payload paths.

        ``embedders`` (field -> Embedder) attach models to fields: the collection records each
        model's spec, and :meth:`Collection.add_texts` / ``search_text`` use them.
        """
        final = self._dir(name)
        schema = CollectionSchema.build(vectors, indexed)
        for fname, embedder in (embedders or {}).items():
            if fname not in schema.fields:
                raise UnknownField(f"embedders: no vector field {fname!r}; have "
                                   f"{list(schema.fields)}")
            check_compatible(fname, schema.fields[fname], embedder.spec)
        if isinstance(segment_rows, bool) or not isinstance(segment_rows, int) or segment_rows < 1:
            raise InvalidArgument(f"segment_rows: expected an int >= 1, got {segment_rows!r}")
        if final.exists():
            if exist_ok:
                coll = self.get_collection(name)
                for fname, embedder in (embedders or {}).items():
                    coll.use_embedder(fname, embedder)
                if coll.schema != schema:
                    raise CollectionExists(f"collection {name!r} exists with another schema: "
                                           f"{coll.schema.to_dict()}")
                return coll
            raise CollectionExists(f"collection {name!r} already exists")
        tmp = self.path / f".creating-{name}-{token_hex(4)}"
        tmp.mkdir()
        try:
            Collection.create(tmp, schema, segment_rows=segment_rows,
                              lock_timeout=self.lock_timeout).close()
            os.rename(tmp, final)  # atomic; fails if a racing creator won
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists():
                raise CollectionExists(f"collection {name!r} already exists") from None
            raise
        fsync_dir(self.path)
        coll = self.get_collection(name)
        for fname, embedder in (embedders or {}).items():
            coll.use_embedder(fname, embedder)
        return coll

    def get_collection(self, name: str) -> Collection:
        path = self._dir(name)
        coll = self._open.get(name)
        if coll is not None:
            if coll.alive:
                return coll
            del self._open[name]  # dropped or replaced since: never hand out the stale handle
            coll.close()
        if not (path / CATALOG).exists():
            if path.exists():
                raise CorruptFile(str(path / CATALOG), "catalog file is missing")
            raise UnknownCollection(f"no collection {name!r} in {self.path}; have "
                                    f"{self.list_collections()}")
        coll = Collection(path, lock_timeout=self.lock_timeout)
        self._open[name] = coll
        return coll

    __getitem__ = get_collection

    def drop_collection(self, name: str) -> None:
        path = self._dir(name)
        if not path.exists():
            raise UnknownCollection(f"no collection {name!r} in {self.path}")
        coll = self._open.pop(name, None)
        if coll is not None:
            coll._store.dropped = True
            coll.close()
        trash = self.path / f".dropped-{name}-{token_hex(4)}"
        # under the collection's write lock: a writer that holds it commits first (its write
        # goes with the collection); one that waits for it then finds the folder gone
        with WriteLock(path / "LOCK", self.lock_timeout):
            stamp = CommitStamp.open(path)  # readers of this collection check at once
            stamp.renew()
            stamp.close()
            os.rename(path, trash)
            fsync_dir(self.path)
        shutil.rmtree(trash, ignore_errors=True)

    def close(self) -> None:
        for coll in self._open.values():
            coll.close()
        self._open.clear()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r}, collections={self.list_collections()})"
