"""Hamming distances between packed bit codes, and a streaming Hamming top-k.

Codes are ``uint8`` rows of equal length. Rows whose length is a multiple of 8 bytes (the
layout :class:`~polyvec.codecs.binary.BinaryCodec` writes) are read by the numba kernel as
``uint64`` words without a copy; other lengths are zero-padded first (zero bits never add to
a distance). ``hamming_numpy`` is the reference twin.

>>> import numpy as np
>>> a = np.array([[0b1011, 0]], dtype=np.uint8)
>>> b = np.array([[0b0001, 0], [0b1011, 255]], dtype=np.uint8)
>>> hamming_numpy(a, b).tolist()
[[2, 8]]
>>> hamming_distances(a, b, backend="numba").tolist()
[[2, 8]]
"""

from __future__ import annotations

import numpy as np

from ._numba import lazy_njit, resolve_backend
from .topk import TopK

prange = range  # replaced by numba.prange when the kernel is compiled

__all__ = ["hamming_numpy", "hamming_distances", "hamming_topk"]

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)
_BLOCK_BYTES = 32 << 20  # xor bytes held at once by the numpy twin; code rows per top-k block
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_S1, _S2, _S4, _S56 = np.uint64(1), np.uint64(2), np.uint64(4), np.uint64(56)


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.dtype != np.uint8 or b.dtype != np.uint8 or a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"hamming: expected two 2-D uint8 arrays, got {a.dtype}{a.shape} "
                         f"and {b.dtype}{b.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"hamming: expected codes of equal length, got {a.shape[1]} and "
                         f"{b.shape[1]} bytes")


def hamming_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference: int32 (na, nb) distances by a byte popcount table."""
    _check(a, b)
    out = np.empty((len(a), len(b)), dtype=np.int32)
    block = max(1, _BLOCK_BYTES // max(1, len(a) * a.shape[1]))
    for lo in range(0, len(b), block):
        x = a[:, None, :] ^ b[None, lo:lo + block, :]
        out[:, lo:lo + block] = _POPCOUNT8[x].sum(axis=2)
    return out


def _hamming_loop(a, b, out):  # pragma: no cover
    na, w = a.shape
    nb = b.shape[0]
    for j in prange(nb):  # database rows: usually far more of them than queries
        for i in range(na):
            total = np.uint64(0)
            for t in range(w):
                x = a[i, t] ^ b[j, t]
                x = x - ((x >> _S1) & _M1)  # SWAR popcount (LLVM emits popcnt where it can)
                x = (x & _M2) + ((x >> _S2) & _M2)
                x = (x + (x >> _S4)) & _M4
                total += (x * _H01) >> _S56
            out[i, j] = total


_hamming_parallel = lazy_njit(parallel=True)(_hamming_loop)
_hamming_serial = lazy_njit()(_hamming_loop)
_PARALLEL_MIN_WORK = 1 << 16  # word comparisons per call below which threads do not pay


def _words(c: np.ndarray) -> np.ndarray:
    pad = -c.shape[1] % 8
    if pad:
        c = np.pad(c, ((0, 0), (0, pad)))
    return np.ascontiguousarray(c).view(np.uint64)


def hamming_distances(a: np.ndarray, b: np.ndarray, *, backend: str = "auto",
                      parallel: bool | None = None) -> np.ndarray:
    """int32 (na, nb) Hamming distances between the rows of ``a`` and ``b``.

    ``parallel=None`` picks the threaded kernel for large inputs; True/False forces it.
    """
    if resolve_backend(backend) == "numpy":
        return hamming_numpy(a, b)
    _check(a, b)
    out = np.empty((len(a), len(b)), dtype=np.int32)
    if out.size:
        wa, wb = _words(a), _words(b)
        if parallel is None:
            parallel = out.size * wa.shape[1] >= _PARALLEL_MIN_WORK
        (_hamming_parallel if parallel else _hamming_serial)(wa, wb, out)
    return out


def hamming_topk(q: np.ndarray, codes: np.ndarray, k: int, *, ids: np.ndarray | None = None,
                 backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest codes of each query code: ``(scores, ids)``, each (nq, k).

    Scores are minus the Hamming distance (higher is better), best first; ``ids`` defaults
    to row numbers. Distances are computed block by block, so memory stays bounded.
    """
    row_ids = np.arange(len(codes), dtype=np.int64) if ids is None else np.asarray(ids)
    if row_ids.shape != (len(codes),):
        raise ValueError(f"hamming_topk: expected ids of shape ({len(codes)},), got "
                         f"{row_ids.shape}")
    top = TopK(len(q), k, backend=backend)
    block = max(1024, _BLOCK_BYTES // max(1, 4 * len(q)))
    for lo in range(0, len(codes), block):
        d = hamming_distances(q, codes[lo:lo + block], backend=backend)
        top.push(-d.astype(np.float32), row_ids[lo:lo + block])
    return top.result()
