"""Dense query knobs, checked and frozen once per combination of values and types."""

from __future__ import annotations

import functools
from typing import Any

from ..index import QueryParams

__all__ = ["query_params"]


def query_params(ef: Any, nprobe: Any, oversample: Any) -> QueryParams:
    """Checked, immutable query knobs, made once per combination of values and types."""
    try:
        return _cached_params(ef, nprobe, oversample)
    except TypeError:  # unhashable: QueryParams says what is wrong with it
        return QueryParams(ef=ef, nprobe=nprobe, oversample=oversample)


@functools.lru_cache(maxsize=256, typed=True)  # typed: True and 1, 32.0 and 32 stay apart
def _cached_params(ef: Any, nprobe: Any, oversample: Any) -> QueryParams:
    return QueryParams(ef=ef, nprobe=nprobe, oversample=oversample)
