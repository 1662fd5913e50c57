"""The growing segment's vectors: one append-only file per generation, ``growing/<gen>.bin``.

A write appends one batch as one *chunk*, written and fsync'd once: its *log record* (part
``#log``: a fixed prelude with a magic, the first seq, the count and a CRC, a JSON header naming
every part's ``[offset, length, crc]``, then the batch's ids and payload texts), then every
field's bytes back to back. The fsync of the chunk is what makes the batch durable: the catalog
transaction that registers the chunk (its first seq, count, offset and parts) and inserts the
item rows commits after it without an fsync of its own (``synchronous=NORMAL``). A power loss
can therefore lose the last registered chunks' catalog transactions, never their chunks: the
next writer parses the unregistered tail (:meth:`GrowingLog.tail`), replays every complete,
checksummed record that continues the catalog's seqs, and cuts off the rest (a torn or
unacknowledged chunk). Readers use registered chunks only. Sealing starts a new generation in
the transaction that registers the sealed segment (an fsync'd commit); a generation's file is
removed once no registered chunk is left in it (a background seal leaves the chunks written
while it ran, format 5), after that commit or by the next writer's open. Chunks written
before format 3 (and by a format-1 migration) have no ``#log`` part: they are registered by
fsync'd commits.

What a part holds is its field kind's business (``FieldKind.to_chunk``/``from_chunk``; the byte
layouts are in :mod:`polyvec._growing`): this module only stores, checksums and reads bytes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptFile
from .segment import fsync_dir, no_space

__all__ = ["ChunkRow", "GrowingLog", "LogRecord", "PendingAppend", "TailChunk"]

FOLDER = "growing"
LOG_PART = "#log"  # a chunk's log record (not a field: field names are identifiers)
_MAGIC = b"PVGC0001"
# prelude: magic, first seq, count, header length, items length, crc of (prelude, header, items)
_PRELUDE = struct.Struct("<8sqIII I")
_TAIL_STEP = 1 << 26  # the most bytes of a tail read at once (one record's header and items)


@dataclass(frozen=True)
class LogRecord:
    """What a chunk's ``#log`` part holds beside its vectors: enough to replay the batch."""

    first_seq: int
    keys: Sequence[int | str]
    payloads: Sequence[str]
    replace: bool


@dataclass(frozen=True)
class TailChunk:
    """A complete, checksummed chunk found past the registered end (see :meth:`GrowingLog.tail`)."""

    record: LogRecord
    offset: int
    parts: dict[str, list[int]]

    @property
    def end(self) -> int:
        return self.offset + sum(p[1] for p in self.parts.values())


def _encode_record(record: LogRecord, parts: Mapping[str, bytes]
                   ) -> tuple[bytes, dict[str, list[int]]]:
    """The ``#log`` part of a chunk holding ``parts``, and the chunk's layout."""
    # the ids as JSON, then one payload text per line (JSON text has no raw newline); a list
    # of both as JSON if a text holds one anyway
    n = len(record.keys)
    text = json.dumps(list(record.keys), ensure_ascii=False, separators=(",", ":")) + "\n" + \
        "\n".join(record.payloads)
    lines = text.count("\n") == n
    if not lines:
        text = json.dumps([list(record.keys), list(record.payloads)], ensure_ascii=False)
    items = text.encode("utf-8", "surrogatepass")
    layout: dict[str, list[int]] = {}
    pos = 0
    for name, data in parts.items():
        layout[name] = [pos, len(data), zlib.crc32(data)]
        pos += len(data)
    # offsets in the header are relative to the first field part; the header's length is not
    # known before it is written
    header = json.dumps({"parts": layout, "replace": record.replace, "lines": lines},
                        separators=(",", ":"), sort_keys=True).encode()
    crc = zlib.crc32(items, zlib.crc32(header, zlib.crc32(struct.pack(
        "<8sqIII", _MAGIC, record.first_seq, len(record.keys), len(header), len(items)))))
    log = _PRELUDE.pack(_MAGIC, record.first_seq, len(record.keys), len(header), len(items),
                        crc) + header + items
    base = len(log)
    out = {LOG_PART: [0, base, zlib.crc32(log)]}
    for name, (off, length, c) in layout.items():
        out[name] = [base + off, length, c]
    return log, out


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

    def append(self, generation: int, end: int, parts: Mapping[str, bytes],
               record: LogRecord | None = None) -> dict[str, list[int]]:
        """Write ``parts`` at ``end`` (the registered end: the caller replayed or cut off what
        lies past it), after their log ``record`` when given, fsync once, and return the
        chunk's layout: per part ``[offset in the chunk, length, crc]``."""
        path = self.path(generation)
        fresh = not path.exists()
        if fresh and not self.folder.is_dir():
            self.folder.mkdir()
            fsync_dir(self.folder.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != end:
                os.ftruncate(fd, end)
            buffers = list(parts.values())
            if record is not None:
                log, layout = _encode_record(record, parts)
                buffers.insert(0, log)
                pos = layout[LOG_PART][1] + sum(len(b) for b in parts.values())
            else:
                layout = {}
                pos = 0
                for name, data in parts.items():
                    layout[name] = [pos, len(data), zlib.crc32(data)]
                    pos += len(data)
            try:
                written = os.pwritev(fd, buffers, end)
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

    def append_in_background(self, generation: int, end: int, parts: Mapping[str, bytes],
                             record: LogRecord | None = None) -> PendingAppend:
        """:meth:`append` in a thread (its checksum, write and fsync release the GIL), so the
        caller prepares its catalog rows meanwhile; :meth:`PendingAppend.wait` joins it."""
        return PendingAppend(self, generation, end, parts, record)

    def size(self, generation: int) -> int:
        """The file's size (0 when it does not exist)."""
        try:
            return os.stat(self.path(generation)).st_size
        except FileNotFoundError:
            return 0

    def cut(self, generation: int, end: int) -> None:
        """Cut the file back to ``end`` and fsync (drops a torn or unacknowledged tail)."""
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self.path(generation), os.O_WRONLY)
            try:
                if os.fstat(fd).st_size > end:
                    os.ftruncate(fd, end)
                    os.fdatasync(fd)
            finally:
                os.close(fd)

    def tail(self, generation: int, end: int) -> list[TailChunk]:
        """The complete chunks with a log record past ``end``, in order, up to the first one
        that is torn, damaged or has none (the rest of the file is not trusted)."""
        out: list[TailChunk] = []
        try:
            fd = os.open(self.path(generation), os.O_RDONLY)
        except FileNotFoundError:
            return out
        try:
            size = os.fstat(fd).st_size
            pos = end
            while pos + _PRELUDE.size <= size:
                chunk = self._parse(fd, pos, size)
                if chunk is None:
                    break
                out.append(chunk)
                pos = chunk.end
        finally:
            os.close(fd)
        return out

    @staticmethod
    def _parse(fd: int, pos: int, size: int) -> TailChunk | None:
        prelude = os.pread(fd, _PRELUDE.size, pos)
        magic, first, count, hlen, ilen, crc = _PRELUDE.unpack(prelude)
        if magic != _MAGIC or pos + _PRELUDE.size + hlen + ilen > size \
                or hlen + ilen > _TAIL_STEP:
            return None
        body = os.pread(fd, hlen + ilen, pos + _PRELUDE.size)
        if len(body) != hlen + ilen or zlib.crc32(body, zlib.crc32(prelude[:-4])) != crc:
            return None
        try:
            head = json.loads(body[:hlen])
            text = body[hlen:].decode("utf-8", "surrogatepass")
            if head["lines"]:
                ids, _, rest = text.partition("\n")
                keys, payloads = json.loads(ids), rest.split("\n")
            else:
                keys, payloads = json.loads(text)
            base = _PRELUDE.size + hlen + ilen
            parts: dict[str, list[int]] = {LOG_PART: [0, base, zlib.crc32(prelude + body)]}
            for name, (off, length, c) in head["parts"].items():
                parts[name] = [base + int(off), int(length), int(c)]
            replace = bool(head["replace"])
        except (ValueError, TypeError, KeyError):
            return None
        if len(keys) != count or len(payloads) != count:
            return None
        for off, length, c in list(parts.values())[1:]:
            if pos + off + length > size:
                return None
            data = os.pread(fd, length, pos + off)
            if len(data) != length or zlib.crc32(data) != c:
                return None
        return TailChunk(LogRecord(first, keys, payloads, replace), pos, parts)

    def remove_other_generations(self, keep: set[int]) -> None:
        """Delete the files of every generation but ``keep`` (the current one, and any older
        one still holding registered chunks): sealed ones, or a crash's."""
        if not self.folder.is_dir():
            return
        kept = {self.path(g) for g in keep}
        for p in self.folder.iterdir():
            if p not in kept:
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
                    if name == LOG_PART:  # the ids and payloads: the catalog has them
                        continue
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
    catalog commit that registers it must come after its fsync.

    The threads are kept between appends (:func:`_appenders`): starting one per batch cost
    ~2 ms of GIL hand-offs on a busy two-core machine, a tenth of a batch's whole add."""

    def __init__(self, log: GrowingLog, generation: int, end: int,
                 parts: Mapping[str, bytes], record: LogRecord | None) -> None:
        self._job = _appenders().submit(log.append, generation, end, parts, record)

    def wait(self) -> dict[str, list[int]]:
        """Join the append; its layout, or its exception re-raised."""
        return self._job.result()


@functools.cache
def _appenders() -> ThreadPoolExecutor:
    """The threads appends run in (one per collection writing at the same time, up to 4)."""
    return ThreadPoolExecutor(4, thread_name_prefix="polyvec-growing-append")


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's pool threads
    os.register_at_fork(after_in_child=_appenders.cache_clear)
