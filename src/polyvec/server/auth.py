"""API keys: created by ``polyvec keys``, kept hashed in the database folder, checked per request.

A key reads ``pvk_<id>_<secret>``. The folder keeps, per key, its id, scope, collections and a
salted scrypt hash of the whole key; never the key. A request's key is checked by hashing it
with the salt of the key its id names (or of a fixed dummy when no key has that id) and
comparing in constant time, so a wrong key costs the same whatever its prefix. A key that
passed is remembered (by its SHA-256) until the keys file changes, so only a key's first
request pays scrypt's ~50 ms.

Scopes nest: ``read`` (list, info, get, search), ``write`` (also add, upsert, delete, indexes,
maintenance), ``admin`` (also create and drop collections). A key made with ``collections``
sees only those collections.

>>> import tempfile
>>> keys = KeyStore.of(Path(tempfile.mkdtemp()))
>>> secret, key = keys.create("read", collections=["docs"])
>>> keys.check(secret) == key, keys.check(secret + "x")
(True, None)
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptFile, InvalidArgument

__all__ = ["KEYS_FILE", "SCOPES", "ApiKey", "KeyStore", "key_json"]

KEYS_FILE = ".polyvec-keys.json"
SCOPES = ("read", "write", "admin")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_KEY = re.compile(r"^pvk_([0-9a-f]{12})_[A-Za-z0-9_\-]{43}$")
_REMEMBERED = 4096  # keys that passed, kept by digest (cleared when the file changes)


@dataclass(frozen=True)
class ApiKey:
    """A key's record (without its hash): what it may do, and where."""

    id: str
    scope: str
    collections: tuple[str, ...] | None
    created: float
    revoked: bool = False

    def allows(self, scope: str, collection: str | None = None) -> bool:
        """Whether this key covers ``scope`` on ``collection`` (``None``: database-wide)."""
        if self.revoked or SCOPES.index(self.scope) < SCOPES.index(scope):
            return False
        return collection is None or self.collections is None or \
            collection in self.collections


class KeyStore:
    """The keys kept in one file (a database folder's is ``<folder>/.polyvec-keys.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mutex = threading.Lock()
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file read
        self._records: dict[str, dict[str, Any]] = {}
        self._passed: dict[bytes, str] = {}  # sha256(key) -> key id
        self._dummy = {"salt": secrets.token_hex(16), "hash": secrets.token_hex(32)}

    @classmethod
    def of(cls, folder: Path) -> KeyStore:
        """The keys of the database folder ``folder``."""
        return cls(Path(folder) / KEYS_FILE)

    def exists(self) -> bool:
        """Whether the keys file exists (a server then requires keys, even if all are
        revoked)."""
        return self.path.exists()

    # -- administration (the CLI) ---------------------------------------------------------------
    def create(self, scope: str, *, collections: list[str] | None = None) -> tuple[str, ApiKey]:
        """A new key of ``scope`` (``read``/``write``/``admin``), limited to ``collections``
        when given; returns the key itself (shown once, never stored) and its record."""
        if scope not in SCOPES:
            raise InvalidArgument(f"scope: expected one of {list(SCOPES)}, got {scope!r}")
        if collections is not None and (not collections or not all(
                isinstance(c, str) and c for c in collections)):
            raise InvalidArgument(f"collections: expected names, got {collections!r}")
        key_id = secrets.token_hex(6)
        secret = f"pvk_{key_id}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_hex(16)
        record = {"id": key_id, "scope": scope,
                  "collections": None if collections is None else sorted(set(collections)),
                  "created": time.time(), "revoked": False, "salt": salt,
                  "hash": _hash(secret, salt).hex()}
        with self._locked() as records:
            records[key_id] = record
        return secret, _key(record)

    def list(self) -> list[ApiKey]:
        """Every key's record, revoked ones included, oldest first."""
        return sorted((_key(r) for r in self._read().values()), key=lambda k: k.created)

    def revoke(self, key_id: str) -> bool:
        """Revoke the key ``key_id``; whether there was such a key not yet revoked."""
        with self._locked() as records:
            rec = records.get(key_id)
            if rec is None or rec["revoked"]:
                return False
            rec["revoked"] = True
        return True

    def active(self) -> bool:
        """Whether any key is not revoked (a server without one binds to loopback only)."""
        return any(not r["revoked"] for r in self._read().values())

    # -- checking (the server) ------------------------------------------------------------------
    def known(self, presented: str | None) -> ApiKey | None:
        """The record of ``presented`` when it passed :meth:`check` before (and is still
        active, the file unchanged since); ``None`` otherwise, without hashing it: a caller
        on an event loop asks this first and runs :meth:`check` elsewhere."""
        if not presented:
            return None
        with self._mutex:
            self._reload()
            return self._remembered(_digest(presented))[1]

    def check(self, presented: str | None) -> ApiKey | None:
        """The record of the key ``presented``, or ``None`` when it is missing, unknown or
        revoked. One scrypt per first use of a key, outside the mutex (:meth:`known` does
        not wait for it); a wrong key costs one scrypt whatever it shares with a real one."""
        if not presented:
            return None
        digest = _digest(presented)
        with self._mutex:
            self._reload()
            hit, key = self._remembered(digest)
            if hit:
                return key
            m = _KEY.match(presented)
            rec = self._records.get(m.group(1)) if m else None
        target = rec if rec is not None else self._dummy
        ok = hmac.compare_digest(_hash(presented, target["salt"]),
                                 bytes.fromhex(target["hash"]))
        if not ok or rec is None or rec["revoked"]:
            return None
        with self._mutex:
            if len(self._passed) >= _REMEMBERED:
                self._passed.clear()
            self._passed[digest] = rec["id"]  # (revoked since? _remembered reads the file's)
        return _key(rec)

    def _remembered(self, digest: bytes) -> tuple[bool, ApiKey | None]:
        """(whether the key of ``digest`` passed before, its record if still active); the
        caller holds the mutex."""
        known = self._passed.get(digest)
        if known is None:
            return False, None
        rec = self._records.get(known)
        return True, None if rec is None or rec["revoked"] else _key(rec)

    # -- the file -------------------------------------------------------------------------------
    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
            seen: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        if seen != self._seen or seen is None:
            self._records = self._read()
            self._passed.clear()
            self._seen = seen

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            return {r["id"]: r for r in data["keys"]}
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptFile(str(self.path), f"not a keys file ({e})") from None

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The records under the keys file's lock, written back atomically after."""
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self._read()
            yield records
            tmp = self.path.with_suffix(f".tmp-{secrets.token_hex(4)}")
            with open(tmp, "w") as f:
                json.dump({"format": 1, "keys": list(records.values())}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)


def _digest(presented: str) -> bytes:
    return hashlib.sha256(presented.encode("utf-8", "replace")).digest()


def _hash(secret: str, salt: str) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8", "replace"), salt=bytes.fromhex(salt),
                          maxmem=64 * 2**20, **_SCRYPT)


def _key(rec: dict[str, Any]) -> ApiKey:
    cols = rec.get("collections")
    return ApiKey(rec["id"], rec["scope"], None if cols is None else tuple(cols),
                  rec["created"], bool(rec["revoked"]))


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key's record as JSON (for ``polyvec keys list``)."""
    d = asdict(key)
    d["collections"] = None if key.collections is None else list(key.collections)
    return d
