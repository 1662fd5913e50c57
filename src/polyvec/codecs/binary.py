"""Binary codes: one sign bit per dimension, compared by Hamming distance.

Bit ``j`` of a vector is ``x[j] > 0``, packed least-significant bit first (the order of
faiss's ``fvecs2bitvecs``), and each row is zero-padded to a whole number of 8-byte words so
the Hamming kernel reads it as ``uint64`` without copying. ``scores`` is minus the Hamming
distance between the query's bits and the codes, whatever the metric (it ranks by angle, so
always rescore the candidates with full vectors; ALGORITHMS.md: weak below ~1,024 dims).
``decode`` returns ``+-scale_`` per dimension, ``scale_`` being the mean ``|x[j]|`` of the
fitted sample (the least-squares reconstruction from signs).

>>> import numpy as np
>>> from polyvec.index_spec import Binary
>>> x = np.array([[0.5, -0.2, 0.1], [-0.5, 0.2, 0.3]], dtype=np.float32)
>>> codec = BinaryCodec(Binary()).fit(x)
>>> codec.code_size, codec.encode(x)[:, 0].tolist()
(8, [5, 6])
>>> codec.scores(x[:1], codec.encode(x)).tolist()
[[0.0, -2.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kernels.hamming import hamming_distances
from ..errors import InvalidArgument
from ..index_spec import Binary
from .base import Codec

__all__ = ["BinaryCodec"]

_MIN_SCALE = np.float32(1e-30)  # keeps decode(1-bit) > 0 in dimensions that were always <= 0


class BinaryCodec(Codec):
    """Sign bits; ``scores`` = -Hamming via popcount (``backend`` picks numba or numpy)."""

    spec_type = Binary
    scale_: np.ndarray

    def __init__(self, spec: Binary, *, backend: str = "auto") -> None:
        super().__init__(spec)
        self.backend = backend

    @property
    def code_size(self) -> int:
        self._check_fitted()
        return -(-self.dim_ // 64) * 8

    def _fit(self, x: np.ndarray) -> None:
        self.scale_ = np.maximum(np.abs(x).mean(axis=0), _MIN_SCALE).astype(np.float32)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        bits = np.packbits(x > 0, axis=1, bitorder="little")
        out = np.zeros((len(x), self.code_size), dtype=np.uint8)
        out[:, :bits.shape[1]] = bits
        return out

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        bits = np.unpackbits(codes, axis=1, count=self.dim_, bitorder="little")
        return np.where(bits.astype(bool), self.scale_, -self.scale_).astype(np.float32)

    def _scores(self, q: np.ndarray, codes: np.ndarray, metric: str) -> np.ndarray:
        dist = hamming_distances(self._encode(q), codes, backend=self.backend)
        return (-dist).astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"scale": self.scale_}

    def _load(self, arrays: dict[str, np.ndarray], get: Any) -> None:
        self.scale_ = get("scale", np.float32, (self.dim_,))
        if (self.scale_ <= 0).any():
            raise InvalidArgument("Binary: expected scale > 0 in every dimension")
