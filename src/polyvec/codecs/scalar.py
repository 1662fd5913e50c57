"""Scalar quantization: every dimension coded on its own (float16, uint8).

``SQ8`` follows faiss's ``ScalarQuantizer`` ``QT_8bit`` (non-uniform, min/max range)
exactly: with ``t = clip((x - vmin) / vdiff, 0, 1)`` the code is ``floor(255 t)`` and the
reconstruction is ``vmin + (code + 0.5) / 255 * vdiff``. A faiss ``ScalarQuantizer`` whose
``trained`` vector is ``[vmin_..., vdiff_...]`` produces the same bytes, so an index built
with faiss's SQ8 storage can share this codec's fitted ranges.

>>> import numpy as np
>>> from polyvec.index_spec import SQ8
>>> x = np.array([[0.0, -1.0], [1.0, 1.0]], dtype=np.float32)
>>> codec = SQ8Codec(SQ8()).fit(x)
>>> codec.encode(x).tolist()
[[0, 0], [255, 255]]
>>> codec.encode(codec.decode(codec.encode(x))).tolist()
[[0, 0], [255, 255]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgument
from ..index_spec import F16, SQ8
from .base import Codec

__all__ = ["F16Codec", "SQ8Codec"]

_F16_MAX = float(np.finfo(np.float16).max)
_MIN_RANGE = np.float32(1e-30)  # a constant dimension gets this range: codes 0, decodes to vmin


class F16Codec(Codec):
    """IEEE half precision, little-endian, 2 bytes per dimension. Nothing to fit but ``dim_``."""

    spec_type = F16

    @property
    def code_size(self) -> int:
        self._check_fitted()
        return 2 * self.dim_

    def _fit(self, x: np.ndarray) -> None:
        pass

    def _encode(self, x: np.ndarray) -> np.ndarray:
        big = np.abs(x) > _F16_MAX
        if big.any():
            raise InvalidArgument(f"F16: expected values within +-{_F16_MAX:g}, got "
                                  f"{float(np.abs(x[big]).max()):g}")
        return x.astype("<f2").view(np.uint8)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return codes.view("<f2").astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load(self, arrays: dict[str, np.ndarray], get: Any) -> None:
        pass


class SQ8Codec(Codec):
    """Uniform 8-bit codes over per-dimension [min, max] ranges fitted on the collection.

    Fitted: ``vmin_`` and ``vdiff_`` (float32, one per dimension). Values outside the fitted
    range are clipped to its ends.
    """

    spec_type = SQ8
    vmin_: np.ndarray
    vdiff_: np.ndarray

    @property
    def code_size(self) -> int:
        self._check_fitted()
        return self.dim_

    def _fit(self, x: np.ndarray) -> None:
        vmin = x.min(axis=0)
        self.vmin_ = vmin.astype(np.float32)
        self.vdiff_ = np.maximum(x.max(axis=0) - vmin, _MIN_RANGE).astype(np.float32)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        t = (x - self.vmin_) / self.vdiff_
        np.clip(t, 0.0, 1.0, out=t)
        t *= np.float32(255.0)
        return t.astype(np.uint8)  # truncation = floor on [0, 255]

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        t = (codes.astype(np.float32) + np.float32(0.5)) / np.float32(255.0)
        return (self.vmin_ + t * self.vdiff_).astype(np.float32, copy=False)

    def faiss_trained(self) -> np.ndarray:
        """The ``trained`` vector of the equivalent faiss ``ScalarQuantizer(d, QT_8bit)``."""
        self._check_fitted()
        return np.concatenate([self.vmin_, self.vdiff_])

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"vmin": self.vmin_, "vdiff": self.vdiff_}

    def _load(self, arrays: dict[str, np.ndarray], get: Any) -> None:
        self.vmin_ = get("vmin", np.float32, (self.dim_,))
        self.vdiff_ = get("vdiff", np.float32, (self.dim_,))
        if (self.vdiff_ <= 0).any():
            raise InvalidArgument("SQ8: expected vdiff > 0 in every dimension")
