"""Segment folders written and read in row chunks, so memory stays bounded by the chunk size.

:func:`write_segment_stream` is :func:`~polyvec.storage.segment.write_segment` for arrays that
arrive in pieces (a merge or a compaction copying live rows out of older segments): each
``.npy`` header is written for the final shape, the chunks are appended, and the manifest's
size and digest are computed as the bytes go out. :class:`NpyRows` reads rows of a ``.npy``
file with plain file reads: pages read through a memory map stay in the process's resident
set, pages read from a file only in the page cache.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import CorruptFile
from .segment import Digest, file_entry, fsync_dir, out_of_space

__all__ = ["NpyRows", "ragged_rows", "write_segment_stream"]

Layout = Mapping[str, tuple[np.dtype, tuple[int, ...]]]


class NpyRows:
    """Rows ``[start, stop)`` of one C-ordered ``.npy`` file, read without a memory map."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f"unsupported .npy version {version}")
                shape, fortran, dtype = read(f)
                self.offset = f.tell()
        except FileNotFoundError:
            raise CorruptFile(str(self.path), "file is missing") from None
        except ValueError as e:
            raise CorruptFile(str(self.path), f"not a readable .npy array: {e}") from None
        if fortran or dtype.hasobject or not shape:
            raise CorruptFile(str(self.path), "expected a C-ordered numeric array with rows")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype = dtype
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, self.shape[0])
        n = max(0, stop - start)
        out = np.fromfile(self.path, dtype=self.dtype, count=n * self.row_items,
                          offset=self.offset + start * self.row_items * self.dtype.itemsize)
        if len(out) != n * self.row_items:
            raise CorruptFile(str(self.path), "file is shorter than its header says")
        return out.reshape((n, *self.shape[1:]))


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype),
                                              "fortran_order": False, "shape": shape})
    return buf.getvalue()


def write_segment_stream(folder: Path, name: str, layout: Layout,
                         chunks: Iterable[Mapping[str, np.ndarray]],
                         derived: Callable[[Path], Mapping[str, np.ndarray]] | None = None
                         ) -> dict[str, list[int]]:
    """Write ``folder/name/<key>.npy`` for every key of ``layout`` (dtype, final shape) from
    ``chunks`` (each maps some keys to rows to append, in order), durably; return the manifest.
    ``derived``: given the folder of the written files, more arrays to write beside them
    (made from them whole: a Sparse field's inverted lists).

    Like ``write_segment``: files go to a temporary sibling folder, are fsync'd and the folder
    is renamed into place, so a crash leaves at most an unregistered folder. Raises
    ``ValueError`` if the chunks do not add up to the layout's shapes.
    """
    final = folder / name
    tmp = folder / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files: dict[str, io.BufferedWriter] = {}
    digests: dict[str, Digest] = {}
    rows: dict[str, int] = {}
    needed = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize + 128
                 for dtype, shape in layout.values())
    with out_of_space(tmp, needed), contextlib.ExitStack() as closing:
        for key, (dtype, shape) in layout.items():
            f = closing.enter_context(open(tmp / f"{key}.npy", "wb"))
            files[key] = f
            head = _header(np.dtype(dtype), tuple(shape))
            f.write(head)
            digests[key], rows[key] = Digest(), 0
            digests[key].update(head)
        for chunk in chunks:
            for key, arr in chunk.items():
                dtype, shape = layout[key]
                data = np.ascontiguousarray(arr, dtype=dtype)
                if data.shape[1:] != tuple(shape[1:]):
                    raise ValueError(f"{key}: chunk rows of shape {data.shape[1:]}, expected "
                                     f"{tuple(shape[1:])}")
                files[key].write(data.data)
                digests[key].update(data.data)
                rows[key] += len(data)
        manifest: dict[str, list[int]] = {}
        for key, f in files.items():
            if rows[key] != layout[key][1][0]:
                raise ValueError(f"{key}: {rows[key]} rows written, the layout says "
                                 f"{layout[key][1][0]}")
            f.flush()
            os.fsync(f.fileno())
            manifest[f"{key}.npy"] = digests[key].entry()
    if derived is not None:
        extra = derived(tmp)
        with out_of_space(tmp, sum(int(a.nbytes) + 128 for a in extra.values())):
            for key, arr in extra.items():
                with open(tmp / f"{key}.npy", "wb") as out:
                    np.save(out, np.ascontiguousarray(arr), allow_pickle=False)
                    out.flush()
                    os.fsync(out.fileno())
                manifest[f"{key}.npy"] = file_entry(tmp / f"{key}.npy")
    fsync_dir(tmp)
    os.replace(tmp, final)
    fsync_dir(folder)
    return manifest


def ragged_rows(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the tokens of rows ``[starts[i], ends[i])``, one row after the other, and
    each row's length (to gather some rows of a ragged ``offsets``/``tokens`` pair)."""
    lengths = ends - starts
    idx = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + \
        np.arange(int(lengths.sum()))
    return idx, lengths
