"""Progress bars for long work (index builds, merges and compaction, backfill, CLI add).

On a terminal a tqdm bar; otherwise (a log file, a pipe, CI) one line every
:data:`LINE_SECONDS` seconds, also while a single long step (one faiss build) runs, so a
long job is never silent. ``POLYVEC_PROGRESS=0`` turns them off, ``=1`` on for any size.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["bar", "LINE_SECONDS", "report", "reporting"]

LINE_SECONDS = 5.0


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into lines (not a terminal)."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, s: str) -> None:
        text = s.replace("\r", "").strip()
        if text:
            self.out.write(text + "\n")

    def flush(self) -> None:
        self.out.flush()


class _Ticker(threading.Thread):
    """Redraws ``bar`` every ``every`` seconds until stopped (elapsed time keeps moving)."""

    def __init__(self, bar: Any, every: float) -> None:
        super().__init__(daemon=True)
        self.bar, self.every, self.done = bar, every, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.bar.refresh()


def bar(total: int, desc: str, *, unit: str = "rows", initial: int = 0,
        enabled: bool | None = None, min_total: int = 0) -> Any:
    """A started progress bar (``update``/``close``), or ``None`` when off: ``enabled=False``,
    ``POLYVEC_PROGRESS=0``, or ``total < min_total`` (unless ``POLYVEC_PROGRESS=1``)."""
    env = os.environ.get("POLYVEC_PROGRESS", "").strip()
    if enabled is False or env == "0" or (env != "1" and total < min_total):
        return None
    from tqdm import tqdm  # lazy: importing polyvec does no work

    err = sys.stderr
    tty = hasattr(err, "isatty") and err.isatty()
    b = tqdm(total=total, initial=min(initial, total), desc=desc, unit=unit,
             file=err if tty else _Lines(err), mininterval=0.1 if tty else LINE_SECONDS,
             dynamic_ncols=tty, ascii=not tty, leave=True)
    ticker = _Ticker(b, 1.0 if tty else LINE_SECONDS)
    ticker.start()
    close = b.close

    def close_all() -> None:
        ticker.done.set()
        close()

    b.close = close_all
    return b


# the bar that a long step deep below (one index build) advances as it goes, if any
_sink: ContextVar[Any] = ContextVar("polyvec_progress_sink", default=None)


@contextlib.contextmanager
def reporting(b: Any) -> Iterator[Any]:
    """Within the block, :func:`report` advances ``b`` (which may be ``None``: then nothing
    does). Yields a counter of the rows reported, so the caller can settle the remainder."""
    done = [0]

    def add(rows: int) -> None:
        done[0] += rows
        if b is not None:
            b.update(rows)

    token = _sink.set(add)
    try:
        yield done
    finally:
        _sink.reset(token)


def report(rows: int) -> None:
    """Advance the progress of the enclosing :func:`reporting` block by ``rows``, if any."""
    add = _sink.get()
    if add is not None:
        add(rows)
