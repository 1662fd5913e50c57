"""Named fault-injection points of the engine.

The engine calls :func:`point` at the moments a crash matters (a segment's files written but
not registered, a catalog transaction about to commit, retired folders about to be removed,
...). Disarmed, a point costs one call and one test of an empty dict. Tests arm a point to run
an action there — announce it, raise, or kill the process — so crash tests aim at named moments
instead of patching internal functions, and a renamed internal cannot disable a probe silently:
arming a name that is not in :data:`POINTS` raises, and ``tests/test_hooks.py`` checks that every
name in :data:`POINTS` is called somewhere in the engine and no call uses another name.

A child process is armed without code through the environment, read once when this module is
imported: ``POLYVEC_FAULT=segments.before_commit`` kills the process with SIGKILL the first
time that point is reached; ``name@3`` the third time; several comma-separated entries arm
several points.

This module is a leaf: it imports nothing from polyvec but :mod:`polyvec.errors`.

Examples
--------
>>> from polyvec.engine import hooks
>>> seen = []
>>> with hooks.armed("segments.written", seen.append):
...     hooks.point("segments.written")
>>> seen
['segments.written']
>>> hooks.arm("segments.writen", seen.append)
Traceback (most recent call last):
...
polyvec.engine.hooks.UnknownHookPoint: unknown hook point 'segments.writen'; known: ...
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import InvalidArgument

__all__ = ["POINTS", "ENV", "UnknownHookPoint", "point", "arm", "disarm", "armed", "kill"]

ENV = "POLYVEC_FAULT"

#: Every hook point the engine calls, with the state a crash there leaves behind.
POINTS: dict[str, str] = {
    "write.before_commit": "a batch's growing chunk is written and fsynced and its rows are "
                           "inserted inside the catalog transaction; its commit (no fsync) is "
                           "next (a crash leaves a complete chunk past the registered end, "
                           "which the next writer replays: the in-flight batch appears whole)",
    "seal.planned": "a seal chose its growing rows; nothing is written yet (in the "
                    "background, adds go on from here while the seal writes)",
    "segments.written": "one new segment's files are written and fsynced; not registered yet "
                        "(a crash leaves an orphan folder that open removes)",
    "segments.before_commit": "new segments are registered (and retired ones unregistered) "
                              "inside the catalog transaction; its commit is next",
    "segments.before_remove": "the segment swap is committed; the retired segment folders are "
                              "about to be removed",
    "compact.before_index_remove": "a compaction committed; the index folders of the retired "
                                   "segments are about to be removed",
    "index.written": "an index's files for one segment are written; not registered yet",
    "index.before_commit": "an index is registered inside the catalog transaction; its commit "
                           "is next",
    "merge.written": "a merged segment's files (and its indexes) are written; not registered "
                     "yet",
    "merge.before_commit": "a merged segment is registered and its sources retired inside the "
                           "catalog transaction; its commit is next",
    "merge.committed": "a merge is committed; the sources' folders are about to be removed",
    "backfill.before_write": "a backfill batch's new-model vectors are embedded; its "
                             "transaction is about to write them",
    "backfill.batch_committed": "a backfill batch is committed",
    "backfill.before_switch": "every item is backfilled; the switch to the new model begins",
}


class UnknownHookPoint(InvalidArgument):
    """A hook point name that the engine does not call (see :data:`POINTS`)."""


_armed: dict[str, Callable[[str], None]] = {}


def point(name: str) -> None:
    """Mark the hook point ``name``: run its action if one is armed, else do nothing."""
    if _armed:
        action = _armed.get(name)
        if action is not None:
            action(name)


def _check(name: str) -> None:
    if name not in POINTS:
        raise UnknownHookPoint(f"unknown hook point {name!r}; known: {', '.join(sorted(POINTS))}")


def kill(name: str) -> None:
    """Action: end this process at once with SIGKILL (no cleanup, no flush), as a crash would."""
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # pragma: no cover - platforms without SIGKILL


def arm(name: str, action: Callable[[str], None] = kill, *, at: int = 1) -> None:
    """Run ``action(name)`` when point ``name`` is reached for the ``at``-th time and after.

    Raises :class:`UnknownHookPoint` for a name not in :data:`POINTS`.
    """
    _check(name)
    if at < 1:
        raise InvalidArgument(f"at: expected a hit count >= 1, got {at}")
    if at == 1:
        _armed[name] = action
        return
    hits = 0

    def counted(n: str) -> None:
        nonlocal hits
        hits += 1
        if hits >= at:
            action(n)

    _armed[name] = counted


def disarm(name: str | None = None) -> None:
    """Disarm point ``name``, or every point."""
    if name is None:
        _armed.clear()
    else:
        _check(name)
        _armed.pop(name, None)


@contextmanager
def armed(name: str, action: Callable[[str], None] = kill, *, at: int = 1) -> Iterator[None]:
    """Arm ``name`` for the duration of a ``with`` block."""
    arm(name, action, at=at)
    try:
        yield
    finally:
        disarm(name)


def _arm_from_env(value: str) -> None:
    """Arm the points of a ``POLYVEC_FAULT`` value: ``name[@n]`` entries, comma-separated."""
    for entry in filter(None, (e.strip() for e in value.split(","))):
        name, _, at = entry.partition("@")
        try:
            n = int(at) if at else 1
        except ValueError:
            raise InvalidArgument(f"{ENV}: expected name or name@count, got {entry!r}") from None
        arm(name, kill, at=n)


if os.environ.get(ENV):
    _arm_from_env(os.environ[ENV])
