"""Inter-process write lock: ``flock`` on a file in the collection folder.

Held for the duration of one write operation, so writers in several processes take turns;
a writer that cannot get it within the timeout gets :class:`~polyvec.errors.Locked`.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..errors import CollectionDropped, Locked, ReadOnly

__all__ = ["WriteLock"]


class WriteLock:
    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None
        self._depth = 0

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False if another process holds it."""
        if self._depth:
            self._depth += 1
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise ReadOnly(str(self.path), "expected a collection folder this process may "
                           "write, got a read-only one (it is opened read-only: reads and "
                           "searches work, writes do not)") from None
        except FileNotFoundError:  # the folder went away under a handle (a drop)
            raise CollectionDropped(f"{self.path.parent.name}: expected the collection folder "
                                    f"{self.path.parent}, got none (dropped)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd, self._depth = fd, 1
        return True

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._depth > 0

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise Locked(
                    f"{self.path.parent.name}: another process holds the write lock "
                    f"(waited {self.timeout:g} s); retry later or raise lock_timeout"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
