"""The growing segment's vectors: one append-only file per generation, ``growing/<gen>.bin``.

A write appends one batch as one *chunk*: every field's bytes back to back, written and
fsync'd once, before the catalog transaction that registers the chunk (its first seq, count,
offset and per-field ``[offset, length, crc]``) commits. Readers use registered chunks only;
a crash leaves at most an unregistered tail, which the next writer truncates before it
appends. Sealing starts a new generation in the transaction that registers the sealed segment;
the files of older generations are removed after it (or by the next writer's open).

What a part holds is its field kind's business (``FieldKind.to_chunk``/``from_chunk``; the byte
layouts are in :mod:`polyvec._growing`): this module only stores, checksums and reads bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptFile
from .segment import fsync_dir, no_space

__all__ = ["ChunkRow", "GrowingLog", "PendingAppend"]

FOLDER = "growing"


@dataclass(frozen=True)
class ChunkRow:
    """One registered batch of the growing segment: seqs ``first_seq .. first_seq+count-1``."""

    first_seq: int
    generation: int
    count: int
    offset: int
    parts: Mapping[str, list[int]]  # field -> [offset in the chunk, length, crc32]

    @property
    def end(self) -> int:
        """File offset just past this chunk."""
        return self.offset + sum(p[1] for p in self.parts.values())


class GrowingLog:
    """The growing files of one collection folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / FOLDER

    def path(self, generation: int) -> Path:
        return self.folder / f"{generation:08d}.bin"

    # -- writing (the writer, inside its catalog write transaction) ------------------------------

    def append(self, generation: int, end: int, parts: Mapping[str, bytes]
               ) -> dict[str, list[int]]:
        """Write ``parts`` at ``end`` (the registered end: a crashed writer's tail is cut off),
        fsync once, and return the per-field ``[offset in the chunk, length, crc]``."""
        path = self.path(generation)
        fresh = not path.exists()
        if fresh and not self.folder.is_dir():
            self.folder.mkdir()
            fsync_dir(self.folder.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != end:
                os.ftruncate(fd, end)
            layout: dict[str, list[int]] = {}
            pos = 0
            for name, data in parts.items():
                layout[name] = [pos, len(data), zlib.crc32(data)]
                pos += len(data)
            try:
                written = os.pwritev(fd, list(parts.values()), end)
                os.fdatasync(fd)
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                written = -1
            if written != pos:  # a short write: the disk is full (the tail is cut off later)
                raise no_space(path, pos)
        finally:
            os.close(fd)
        if fresh:
            fsync_dir(self.folder)
        return layout

    def append_in_background(self, generation: int, end: int, parts: Mapping[str, bytes]
                             ) -> PendingAppend:
        """:meth:`append` in a thread (its checksum, write and fsync release the GIL), so the
        caller prepares its catalog rows meanwhile; :meth:`PendingAppend.wait` joins it."""
        return PendingAppend(self, generation, end, parts)

    def remove_other_generations(self, keep: int) -> None:
        """Delete the files of every generation but ``keep`` (sealed ones, or a crash's)."""
        if not self.folder.is_dir():
            return
        for p in self.folder.iterdir():
            if p != self.path(keep):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    # -- reading ---------------------------------------------------------------------------------

    def read(self, chunks: list[ChunkRow]) -> list[dict[str, bytes]]:
        """Each chunk's parts, checksums verified; ``CorruptFile`` names a bad file."""
        out: list[dict[str, bytes]] = []
        fds: dict[int, int] = {}
        try:
            for c in chunks:
                path = self.path(c.generation)
                if c.generation not in fds:
                    try:
                        fds[c.generation] = os.open(path, os.O_RDONLY)
                    except FileNotFoundError:
                        raise CorruptFile(str(path), "file is missing") from None
                parts: dict[str, bytes] = {}
                for name, (off, length, crc) in c.parts.items():
                    data = os.pread(fds[c.generation], length, c.offset + off)
                    if len(data) != length:
                        raise CorruptFile(str(path), f"chunk at seq {c.first_seq}: expected "
                                          f"{length} bytes of {name!r}, got {len(data)} "
                                          "(truncated?)")
                    if zlib.crc32(data) != crc:
                        raise CorruptFile(str(path), f"chunk at seq {c.first_seq}, field "
                                          f"{name!r}: checksum mismatch")
                    parts[name] = data
                out.append(parts)
        finally:
            for fd in fds.values():
                os.close(fd)
        return out


class PendingAppend:
    """A :meth:`GrowingLog.append` running in a thread. :meth:`wait` must be called (also when
    the caller fails) before the next append, and before the chunk is registered: the
    catalog commit that registers it must come after its fsync."""

    def __init__(self, log: GrowingLog, generation: int, end: int,
                 parts: Mapping[str, bytes]) -> None:
        self._layout: dict[str, list[int]] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(log, generation, end, parts),
                                        name="polyvec-growing-append")
        self._thread.start()

    def _run(self, log: GrowingLog, generation: int, end: int,
             parts: Mapping[str, bytes]) -> None:
        try:
            self._layout = log.append(generation, end, parts)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread by wait
            self._error = e

    def wait(self) -> dict[str, list[int]]:
        """Join the append; its layout, or its exception re-raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._layout is not None
        return self._layout
