"""Sealed segments: a folder of immutable ``.npy`` arrays, described by a catalog manifest.

The manifest (kept in the catalog row of the segment) records each file's size and digest, so
``open_segment`` detects truncation and flipped bytes before any array is used. Arrays are
opened memory-mapped; nothing is read into RAM until a search touches it.

A manifest entry is ``[size, digest, XXH3]``: the 64-bit xxh3 of the file's bytes (format 4;
it checks about six times faster than CRC-32, and a new process checks every file it maps
before its first search). Entries written before format 4 are ``[size, crc32]`` and are still
read.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import shutil
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex

import numpy as np
import xxhash

from ..errors import CorruptFile

__all__ = ["Checks", "SegmentFiles", "write_segment", "open_segment", "fsync_dir",
           "file_crc32", "file_entry", "file_matches", "Digest", "XXH3"]

XXH3 = 1  # the third element of a manifest entry digested by xxh3-64 (none: CRC-32)

_CHUNK = 1 << 22
_PART_MIN = 32 << 20  # files above twice this are checked by several threads
_THREADS = max(1, min(4, os.cpu_count() or 1))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_crc32(path: Path) -> int:
    """CRC-32 of a file's bytes, read through a memory map (no copies); a large file is
    checked in parts by a few threads (zlib releases the GIL) and the parts' CRCs combined."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                parts = min(_THREADS, size // _PART_MIN)
                if parts < 2:
                    return _crc_range(m, view, 0, size)
                bounds = [size * i // parts for i in range(parts + 1)]
                with ThreadPoolExecutor(parts) as pool:
                    crcs = list(pool.map(lambda i: _crc_range(m, view, bounds[i],
                                                              bounds[i + 1]), range(parts)))
                crc = crcs[0]
                for i in range(1, parts):
                    crc = crc32_combine(crc, crcs[i], bounds[i + 1] - bounds[i])
                return crc
            finally:
                view.release()


class Digest:
    """A manifest entry's digest, fed the file's bytes in order: ``update`` then ``entry``."""

    def __init__(self) -> None:
        self._h = xxhash.xxh3_64()
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)
        self.size += memoryview(data).nbytes

    def entry(self) -> list[int]:
        return [self.size, self._h.intdigest(), XXH3]


def file_entry(path: Path) -> list[int]:
    """The manifest entry of a written file: ``[size, xxh3-64, XXH3]``."""
    return [os.path.getsize(path), _file_xxh3(path), XXH3]


def file_matches(path: Path, entry: Sequence[int]) -> bool:
    """Whether ``path``'s bytes have the digest of its manifest ``entry`` (either kind)."""
    if len(entry) == 2:
        return file_crc32(path) == entry[1]
    if len(entry) == 3 and entry[2] == XXH3:
        return _file_xxh3(path) == entry[1]
    raise CorruptFile(str(path), f"manifest entry {list(entry)!r}: expected [size, crc32] or "
                                 f"[size, xxh3, {XXH3}]")


def _file_xxh3(path: Path) -> int:
    """xxh3-64 of a file's bytes, through a memory map whose pages are given back as it goes
    (xxhash releases the GIL: a check in a background thread leaves the caller running)."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return h.intdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                for chunk in _chunks(m, view, 0, size):
                    h.update(chunk)
            finally:
                view.release()
    return h.intdigest()


def _crc_range(m: mmap.mmap, view: memoryview, lo: int, hi: int) -> int:
    """CRC of ``view[lo:hi]``; the pages read are given back as it goes (they stay in the page
    cache, but not in this process's resident set: checking a big file costs no RSS)."""
    crc = 0
    for chunk in _chunks(m, view, lo, hi):
        crc = zlib.crc32(chunk, crc)
    return crc


def _chunks(m: mmap.mmap, view: memoryview, lo: int, hi: int) -> Iterator[memoryview]:
    """``view[lo:hi]`` in ``_CHUNK`` pieces; each piece's pages are given back to the kernel
    once the caller has taken it (they stay in the page cache, not in the resident set)."""
    for a in range(lo, hi, _CHUNK):
        b = min(a + _CHUNK, hi)
        piece = view[a:b]
        try:
            yield piece
        finally:
            piece.release()  # the map's view can be released after the last piece
        start = a - a % mmap.PAGESIZE
        m.madvise(mmap.MADV_DONTNEED, start, b - start)


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's
    ``crc32_combine``: multiply by x^(8 len2) over GF(2), by repeated squaring)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)  # first pass: one zero byte
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, row) for row in mat]


class Checks:
    """Integrity checks run in background threads while the caller does other work (an open
    reads the catalog while the segment files are checksummed): :meth:`wait` returns when
    all are done and raises the first failure (a ``CorruptFile`` naming the file).

    zlib and SQLite release the GIL, so on two cores the checks cost little wall time next
    to the catalog's Python-bound reading. Nothing checked here may be *used* before
    :meth:`wait` returns: segment arrays are only memory-mapped (their ``.npy`` headers are
    parsed, and a bad one raises at once); an index file is deserialized, so index files are
    checked in line, before loading.
    """

    def __init__(self, threads: int = 2) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="polyvec-check")
        self._jobs: list[Future[None]] = []

    def call(self, fn: Callable[[], None]) -> None:
        """Run the check ``fn`` (raising ``CorruptFile`` on damage) in the background."""
        self._jobs.append(self._pool.submit(fn))

    def file(self, fpath: Path, entry: Sequence[int]) -> None:
        """Check ``fpath`` against its manifest ``entry`` in the background."""
        self.call(lambda: _check_file(fpath, entry))

    def done(self) -> bool:
        """Whether every check submitted so far has finished."""
        return all(job.done() for job in self._jobs)

    def wait_passed(self) -> bool:
        """Wait for the checks submitted so far; whether all passed (raises nothing)."""
        try:
            return all(job.exception() is None for job in list(self._jobs))
        except CancelledError:  # dropped by close: something else failed first
            return False

    def wait(self) -> None:
        """Wait for every check; raise the first failure in submission order."""
        try:
            for job in self._jobs:
                job.result()
        finally:
            self.close()

    def close(self) -> None:
        """Drop the checks not started (the caller gave up: something else failed first)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _check_file(fpath: Path, entry: Sequence[int]) -> None:
    try:
        ok = file_matches(fpath, entry)
    except FileNotFoundError:
        raise CorruptFile(str(fpath), "file is missing") from None
    if not ok:
        raise CorruptFile(str(fpath), "checksum mismatch (bytes changed on disk)")


@dataclass(frozen=True)
class SegmentFiles:
    """The opened arrays of one sealed segment, by name (``seqs`` plus the field arrays)."""

    name: str
    path: Path
    arrays: Mapping[str, np.ndarray]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


def no_space(path: Path, needed: int) -> OSError:
    """``OSError(ENOSPC)`` naming ``path``, the bytes needed and the bytes free."""
    try:
        free = f"{shutil.disk_usage(path if path.exists() else path.parent).free:,}"
    except OSError:
        free = "unknown"
    return OSError(errno.ENOSPC, f"No space left on device: writing {path} needs {needed:,} "
                   f"bytes, {free} bytes free", str(path))


@contextlib.contextmanager
def out_of_space(path: Path, needed: int) -> Iterator[None]:
    """Turn a full disk while writing ``needed`` bytes under ``path`` (ENOSPC/EDQUOT, or
    numpy's short-write ``OSError`` without an errno) into :func:`no_space`, removing the
    partial temporary folder ``path``."""
    try:
        yield
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT) or (
            e.errno is None and "requested and" in str(e) and "written" in str(e))
        if not full:
            raise
        shutil.rmtree(path, ignore_errors=True)
        raise no_space(path, needed) from e


def segment_name(lo: int, hi: int) -> str:
    """A new segment folder's name: its seq range and a nonce (names are never reused)."""
    return f"seg-{lo:012d}-{hi:012d}-{token_hex(4)}"


def write_segment(folder: Path, name: str, arrays: Mapping[str, np.ndarray]
                  ) -> dict[str, list[int]]:
    """Write ``arrays`` as ``folder/name/<key>.npy``, durably, and return the manifest.

    Files are written into a temporary sibling folder, fsync'd, then renamed into place; a
    crash leaves at most an unregistered folder, which the catalog owner deletes on open.
    """
    final = folder / name
    tmp = folder / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    manifest: dict[str, list[int]] = {}
    with out_of_space(tmp, sum(int(np.asarray(a).nbytes) + 128 for a in arrays.values())):
        tmp.mkdir(parents=True)
        for key, arr in arrays.items():
            fname = f"{key}.npy"
            with open(tmp / fname, "wb") as f:
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            manifest[fname] = file_entry(tmp / fname)
    fsync_dir(tmp)
    os.replace(tmp, final)
    fsync_dir(folder)
    return manifest


def open_segment(path: Path, manifest: Mapping[str, list[int]], *, verify: bool = True,
                 checks: Checks | None = None) -> SegmentFiles:
    """Open every file of the manifest memory-mapped; raise ``CorruptFile`` naming a bad one.

    Sizes and ``.npy`` headers are checked at once; with ``verify`` the digests too, in line,
    or handed to ``checks`` (the caller waits for them before using the arrays)."""
    arrays: dict[str, np.ndarray] = {}
    for fname, entry in manifest.items():
        fpath = path / fname
        if verify and checks is not None:
            checks.file(fpath, entry)
        try:
            arrays[fname.removesuffix(".npy")] = _open_array(fpath, entry,
                                                             verify and checks is None)
        except FileNotFoundError:  # also when it vanishes between two of the steps
            raise CorruptFile(str(fpath), "file is missing") from None
    return SegmentFiles(path.name, path, arrays)


def _open_array(fpath: Path, entry: Sequence[int], verify: bool) -> np.ndarray:
    actual = os.path.getsize(fpath)
    if actual != entry[0]:
        raise CorruptFile(str(fpath), f"expected {entry[0]} bytes, got {actual} (truncated?)")
    if verify and not file_matches(fpath, entry):
        raise CorruptFile(str(fpath), "checksum mismatch (bytes changed on disk)")
    try:
        # a plain ndarray view of the map (the map stays open as its base): np.memmap, a
        # subclass, costs every numpy call and every numba kernel call a slower dispatch
        return np.load(fpath, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged header makes numpy's parser raise
        # anything (ValueError, SyntaxError, tokenize.TokenError, ...): the file is corrupt
        raise CorruptFile(str(fpath), f"not a readable .npy array: {type(e).__name__}: {e}"
                          ) from None
