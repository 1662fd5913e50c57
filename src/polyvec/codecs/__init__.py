"""Single-vector compression: codecs (vectors <-> uint8 codes) and transforms (projections).

A codec or transform is built from its spec (``polyvec.index_spec``) through a registry,
fitted on a sample of the collection, and persisted as arrays:

>>> import numpy as np
>>> from polyvec.index_spec import SQ8
>>> x = np.random.default_rng(0).standard_normal((100, 16)).astype(np.float32)
>>> codec = make_codec(SQ8()).fit(x)
>>> codes = codec.encode(x)
>>> codes.shape, codes.dtype
((100, 16), dtype('uint8'))
>>> again = load_codec(SQ8(), codec.to_arrays())
>>> bool((again.encode(x) == codes).all())
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgument
from .base import Codec, Transform
from .binary import BinaryCodec
from .leanvec import ProjTransform
from .pq import PQCodec
from .prefix import PrefixTransform
from .scalar import F16Codec, SQ8Codec

__all__ = [
    "Codec", "Transform", "CODECS", "TRANSFORMS", "make_codec", "make_transform",
    "load_codec", "load_transform",
    "F16Codec", "SQ8Codec", "BinaryCodec", "PQCodec", "ProjTransform", "PrefixTransform",
]

CODECS: dict[str, type[Codec]] = {
    "F16": F16Codec, "SQ8": SQ8Codec, "Binary": BinaryCodec, "PQ": PQCodec,
}
TRANSFORMS: dict[str, type[Transform]] = {"Proj": ProjTransform, "Prefix": PrefixTransform}


def _lookup(registry: dict[str, Any], spec: object, what: str) -> Any:
    name = getattr(spec, "name", None)
    if name not in registry:
        raise InvalidArgument(f"expected a {what} spec ({', '.join(registry)}), got {spec!r}")
    return registry[name]


def make_codec(spec: object) -> Codec:
    """An unfitted codec for ``spec`` (``SQ8()``, ``F16()``, ``Binary()``, ``PQ(m, nbits)``)."""
    return _lookup(CODECS, spec, "codec")(spec)


def make_transform(spec: object) -> Transform:
    """An unfitted transform for ``spec`` (``Proj(dim, kind)``, ``Prefix(dim)``)."""
    return _lookup(TRANSFORMS, spec, "transform")(spec)


def load_codec(spec: object, arrays: dict[str, np.ndarray], *,
               where: str = "codec arrays") -> Codec:
    """A fitted codec from ``to_arrays()`` output (raises ``CorruptFile`` naming ``where``)."""
    cls: type[Codec] = _lookup(CODECS, spec, "codec")
    return cls.from_arrays(spec, arrays, where=where)


def load_transform(spec: object, arrays: dict[str, np.ndarray], *,
                   where: str = "transform arrays") -> Transform:
    """A fitted transform from ``to_arrays()`` output."""
    cls: type[Transform] = _lookup(TRANSFORMS, spec, "transform")
    return cls.from_arrays(spec, arrays, where=where)
