"""In-memory mirror of the growing segment (the rows of the ``vectors`` table)."""

from __future__ import annotations

import numpy as np

from ._buffers import Growable
from .spec import Dense, FieldSpec

__all__ = ["GrowingField", "TokenSets"]


class TokenSets:
    """Token sets laid out contiguously: ``tokens[offsets[i]:offsets[i+1]]`` is item i's set."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens = tokens
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_list(cls, sets: list[np.ndarray], dim: int, dtype: np.dtype) -> TokenSets:
        offsets = np.zeros(len(sets) + 1, dtype=np.int64)
        if sets:
            np.cumsum([len(s) for s in sets], out=offsets[1:])
            tokens = np.concatenate(sets).astype(dtype, copy=False)
        else:
            tokens = np.zeros((0, dim), dtype=dtype)
        return cls(tokens, offsets)

    def subset(self, rows: np.ndarray) -> TokenSets:
        return TokenSets.from_list([self[i] for i in rows], self.tokens.shape[1],
                                   self.tokens.dtype)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]


class GrowingField:
    """Rows of one vector field not sealed yet, in seq order (dead rows masked by the caller)."""

    def __init__(self, spec: FieldSpec, dtype: np.dtype) -> None:
        self.spec = spec
        self.dtype = dtype
        self.seqs = Growable(np.int64)
        self._dense = Growable(dtype, spec.dim) if isinstance(spec, Dense) else None
        self._sets: list[np.ndarray] = []
        self._packed: TokenSets | None = None

    def __len__(self) -> int:
        return self.seqs.n

    def extend(self, seqs: np.ndarray, data: np.ndarray | list[np.ndarray]) -> None:
        self.seqs.extend(seqs)
        if self._dense is not None:
            self._dense.extend(data)  # type: ignore[arg-type]
        else:
            self._sets.extend(data)
            self._packed = None

    @property
    def data(self) -> np.ndarray | TokenSets:
        if self._dense is not None:
            return self._dense.view
        if self._packed is None:
            self._packed = TokenSets.from_list(self._sets, self.spec.dim, self.dtype)
        return self._packed

    def row(self, i: int) -> np.ndarray:
        return self._dense.view[i] if self._dense is not None else self._sets[i]
