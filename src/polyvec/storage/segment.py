"""Sealed segments: a folder of immutable ``.npy`` arrays, described by a catalog manifest.

The manifest (kept in the catalog row of the segment) records each file's size and CRC-32, so
``open_segment`` detects truncation and flipped bytes before any array is used. Arrays are
opened memory-mapped; nothing is read into RAM until a search touches it.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptFile

__all__ = ["SegmentFiles", "write_segment", "open_segment", "fsync_dir", "file_crc32"]

_CHUNK = 1 << 22


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


@dataclass(frozen=True)
class SegmentFiles:
    """The opened arrays of one sealed segment, by name (``seqs`` plus the field arrays)."""

    name: str
    path: Path
    arrays: Mapping[str, np.ndarray]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


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
    tmp.mkdir(parents=True)
    manifest: dict[str, list[int]] = {}
    for key, arr in arrays.items():
        fname = f"{key}.npy"
        with open(tmp / fname, "wb") as f:
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        manifest[fname] = [os.path.getsize(tmp / fname), file_crc32(tmp / fname)]
    fsync_dir(tmp)
    os.replace(tmp, final)
    fsync_dir(folder)
    return manifest


def open_segment(path: Path, manifest: Mapping[str, list[int]], *, verify: bool = True
                 ) -> SegmentFiles:
    """Open every file of the manifest memory-mapped; raise ``CorruptFile`` naming a bad one."""
    arrays: dict[str, np.ndarray] = {}
    for fname, (size, crc) in manifest.items():
        fpath = path / fname
        try:
            arrays[fname.removesuffix(".npy")] = _open_array(fpath, size, crc, verify)
        except FileNotFoundError:  # also when it vanishes between two of the steps
            raise CorruptFile(str(fpath), "file is missing") from None
    return SegmentFiles(path.name, path, arrays)


def _open_array(fpath: Path, size: int, crc: int, verify: bool) -> np.ndarray:
    actual = os.path.getsize(fpath)
    if actual != size:
        raise CorruptFile(str(fpath), f"expected {size} bytes, got {actual} (truncated?)")
    if verify and file_crc32(fpath) != crc:
        raise CorruptFile(str(fpath), "checksum mismatch (bytes changed on disk)")
    try:
        return np.load(fpath, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as e:
        raise CorruptFile(str(fpath), f"not a readable .npy array: {e}") from None
