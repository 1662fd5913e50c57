"""The commit stamp: a cheap "did anyone commit?" check for readers.

SQLite answers that question with ``PRAGMA data_version`` (a statement per search, ~5-10 µs of
a ~130 µs indexed query). The stamp answers it with one read of shared memory: an 8-byte file
beside the catalog, memory-mapped by every process that opens the collection, which every write
transaction overwrites with fresh random bytes right after its ``COMMIT``. A reader remembers the
stamp it read *before* its last full check; while the stamp still reads the same, no commit
finished since, and the reader skips SQLite.

Random bytes rather than a counter: writers never read-modify-write it, so two writers racing
cannot both write the same value, and a torn read only costs a needless full check.
A writer killed between its ``COMMIT`` and the stamp leaves the stamp stale: readers then see
that commit at their next full check, which :meth:`CommitStamp.unchanged` forces at least every
``FULL_CHECK_S`` seconds, or at the next stamped commit.
Where the file cannot be created or mapped (a read-only folder), every check is a full one.
"""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

__all__ = ["CommitStamp", "FULL_CHECK_S", "STAMP_FILE"]

STAMP_FILE = "commit.stamp"
FULL_CHECK_S = 0.1  # a reader asks SQLite at least this often, stamp or not
_SIZE = 8


class CommitStamp:
    """The stamp file of one collection, mapped shared (``None``-safe: see :meth:`open`)."""

    def __init__(self, mm: mmap.mmap | None) -> None:
        self._mm = mm
        self._seen: bytes | None = None
        self._checked = 0.0

    @classmethod
    def open(cls, folder: Path) -> CommitStamp:
        """Map ``folder/commit.stamp``, creating it if needed; a stamp that checks nothing
        (every check full) where the folder cannot hold it."""
        path = folder / STAMP_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return cls(None)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.pwrite(fd, os.urandom(_SIZE), 0)
            return cls(mmap.mmap(fd, _SIZE))
        except (OSError, ValueError):
            return cls(None)
        finally:
            os.close(fd)

    def read(self) -> bytes | None:
        """The stamp as it reads now (read it before a full check begins, and hand it to
        :meth:`checked` after)."""
        return None if self._mm is None else self._mm[:_SIZE]

    def unchanged(self) -> bool:
        """Whether no stamped commit finished since :meth:`checked` (and a full check is not
        due): the caller may skip asking SQLite."""
        return (self._mm is not None and self._mm[:_SIZE] == self._seen
                and time.monotonic() - self._checked < FULL_CHECK_S)

    def checked(self, stamp: bytes | None) -> None:
        """A full check that began after reading ``stamp`` is done."""
        self._seen = stamp
        self._checked = time.monotonic()

    def renew(self) -> None:
        """After a commit: new random bytes, so every reader's next check is a full one."""
        if self._mm is not None:
            self._mm[:_SIZE] = os.urandom(_SIZE)

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
