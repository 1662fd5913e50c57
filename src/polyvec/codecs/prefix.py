"""Matryoshka prefixes: keep the first ``dim`` dimensions of every vector.

Meant for models trained so that prefixes are embeddings themselves ("funnel" search: scan on
the prefix, rescore on all dims). Nothing is fitted but the input dimension, and the prefix
is not re-normalized: for a cosine field the index over prefixes should normalize (it ranks
better on MiniLM, which is not a Matryoshka model), the refine step restores exact scores.

>>> import numpy as np
>>> from polyvec.index_spec import Prefix
>>> PrefixTransform(Prefix(2)).fit(np.eye(3, dtype=np.float32)).transform_docs([[1, 2, 3]])
array([[1., 2.]], dtype=float32)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgument
from ..index_spec import Prefix
from .base import Transform

__all__ = ["PrefixTransform"]


class PrefixTransform(Transform):
    """Truncation to the first ``spec.dim`` dims (queries and documents alike)."""

    spec_type = Prefix
    spec: Prefix

    def _fit(self, x: np.ndarray, queries: np.ndarray | None) -> None:
        pass

    def _docs(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, :self.spec.dim])

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load(self, arrays: dict[str, np.ndarray], get: Any) -> None:
        if self.spec.dim > self.dim_:
            raise InvalidArgument(f"Prefix{self.spec.dim}: expected dim <= the stored input dim "
                                  f"{self.dim_}")
