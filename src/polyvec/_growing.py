"""In-memory mirror of the growing segment (the registered chunks of ``growing/<gen>.bin``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._buffers import Growable
from ._kernels.sparse import Postings
from .spec import Dense, FieldSpec

__all__ = ["GrowingField", "SparseGrowing", "SparseRows", "TokenSets", "decode_dense",
           "decode_sparse", "decode_sets", "encode_sets", "encode_sparse"]


# -- growing-file chunk parts: a dense part is the (count, dim) array's raw bytes; a token-set
#    part is count int64 token counts followed by the (total, dim) tokens

def encode_sets(sets: list[np.ndarray], dtype: np.dtype) -> bytes:
    counts = np.fromiter((len(s) for s in sets), dtype="<i8", count=len(sets))
    tokens = np.concatenate(sets).astype(dtype, copy=False) if sets else np.zeros(0, dtype)
    return counts.tobytes() + np.ascontiguousarray(tokens).tobytes()


def decode_dense(data: bytes, count: int, dtype: np.dtype, dim: int) -> np.ndarray:
    return np.frombuffer(data, dtype=dtype).reshape(count, dim)


def decode_sets(data: bytes, count: int, dtype: np.dtype, dim: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, tokens)`` of a token-set part; ``ValueError`` if the sizes disagree."""
    counts = np.frombuffer(data, dtype="<i8", count=count)
    tokens = np.frombuffer(data, dtype=dtype, offset=8 * count).reshape(-1, dim)
    if count and (counts.min() <= 0 or int(counts.sum()) != len(tokens)):
        raise ValueError("token counts disagree with the tokens")
    return counts, tokens


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
    """Rows of one vector field not sealed yet, in seq order (dead rows masked by the caller).

    Dense rows are one growable ``(n, dim)`` array; token sets are one growable token array
    plus per-row token counts (offsets made on demand).
    """

    def __init__(self, spec: FieldSpec, dtype: np.dtype) -> None:
        self.spec = spec
        self.dtype = dtype
        self.seqs = Growable(np.int64)
        self._dense = isinstance(spec, Dense)
        self._rows = Growable(dtype, spec.dim)  # dense rows, or the tokens of every set
        self._counts = Growable(np.int64)
        self._packed: TokenSets | None = None

    def __len__(self) -> int:
        return self.seqs.n

    @property
    def row_bytes(self) -> int:
        """Bytes per row that :meth:`reserve` sets aside (a seq, and a dense row or a count)."""
        return 8 + (self.spec.dim * self.dtype.itemsize if self._dense else 8)

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` rows (dense data, seqs, token counts) without copies."""
        self.seqs.reserve(rows)
        if self._dense:
            self._rows.reserve(rows)
        else:
            self._counts.reserve(rows)

    def extend(self, seqs: np.ndarray, data: np.ndarray | list[np.ndarray]) -> None:
        """Append rows: a ``(n, dim)`` array (Dense) or ``n`` token arrays (Multi)."""
        if self._dense:
            self.seqs.extend(seqs)
            self._rows.extend(data)  # type: ignore[arg-type]
            return
        sets = list(data)
        counts = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
        tokens = (np.concatenate(sets) if sets
                  else np.zeros((0, self.spec.dim), self.dtype))
        self.extend_sets(seqs, counts, tokens)

    def extend_sets(self, seqs: np.ndarray, counts: np.ndarray, tokens: np.ndarray) -> None:
        """Append token sets given as per-row counts and their tokens back to back."""
        self.seqs.extend(seqs)
        self._counts.extend(counts)
        self._rows.extend(tokens)
        self._packed = None

    @property
    def data(self) -> np.ndarray | TokenSets:
        if self._dense:
            return self._rows.view
        if self._packed is None:
            offsets = np.zeros(self._counts.n + 1, dtype=np.int64)
            np.cumsum(self._counts.view, out=offsets[1:])
            self._packed = TokenSets(self._rows.view, offsets)
        return self._packed

    def frozen_sets(self) -> Callable[[], TokenSets]:
        """A function making the token sets as of now (Multi): the rows and counts are
        append-only buffers, so the views taken here never change; offsets are made when
        called."""
        if self._packed is not None:
            packed = self._packed
            return lambda: packed
        rows, counts = self._rows.view, self._counts.view

        def pack() -> TokenSets:
            offsets = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            return TokenSets(rows[:offsets[-1]], offsets)

        return pack

    def row(self, i: int) -> np.ndarray:
        if self._dense:
            return self._rows.view[i]
        return self.data[i]

    def after(self, seq: int) -> GrowingField:
        """A new field holding the rows whose seq is greater than ``seq`` (a seal took the
        rest): copied into new buffers, so snapshots holding this one's views keep them."""
        m = int(np.searchsorted(self.seqs.view, seq, side="right"))
        out = GrowingField(self.spec, self.dtype)
        if m == len(self):
            return out
        seqs = self.seqs.view[m:]
        out.reserve(len(seqs))
        if self._dense:
            out.extend(seqs, self._rows.view[m:])
        else:
            counts = self._counts.view
            start = int(counts[:m].sum())
            out.extend_sets(seqs, counts[m:], self._rows.view[start:start + int(counts[m:].sum())])
        return out


# -- sparse rows: a chunk part is count int64 entry counts, then the uint32 indices, then the
#    values (the field's storage dtype), each back to back

class SparseRows:
    """Sparse vectors laid out as CSR: item i's entries are ``indices[indptr[i]:indptr[i+1]]``
    (strictly increasing uint32) and the same slice of ``values``; a BM25 field's rows also
    carry each item's ``lengths`` (its number of terms)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                 lengths: np.ndarray | None = None) -> None:
        self.indptr, self.indices, self.values = indptr, indices, values
        self.lengths = lengths
        self.sealed = False  # a sealed segment's rows: searched through their inverted lists
        self._postings: Postings | None = None
        self._total: int | None = None

    def postings(self) -> Postings | None:
        """The inverted lists of sealed rows (memory-mapped from the segment's files, or
        made on first use from a segment written without them); ``None`` for growing rows,
        which change with every write: they are scanned."""
        if self.sealed and self._postings is None:
            self._postings = Postings(self.inverted(), len(self), self.lengths)
        return self._postings

    def inverted(self) -> dict[str, np.ndarray]:
        """The arrays of these rows' inverted lists (:meth:`Postings.build`)."""
        return Postings.build(self.indptr, self.indices, self.values, self.lengths)

    def total_length(self) -> int:
        """The sum of a BM25 field's lengths (kept once computed: sealed rows only)."""
        if self._total is None or not self.sealed:
            self._total = int(np.asarray(self.lengths).sum(dtype=np.int64))
        return self._total

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_list(cls, rows: list[tuple[np.ndarray, np.ndarray]], dtype: np.dtype,
                  lengths: np.ndarray | None = None) -> SparseRows:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        if rows:
            np.cumsum([len(i) for i, _ in rows], out=indptr[1:])
        indices = (np.concatenate([i for i, _ in rows]).astype(np.uint32, copy=False)
                   if rows else np.zeros(0, np.uint32))
        values = (np.concatenate([w for _, w in rows]).astype(dtype, copy=False)
                  if rows else np.zeros(0, dtype))
        return cls(indptr, indices, values, lengths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[i], self.indptr[i + 1]
        return self.indices[lo:hi], self.values[lo:hi]

    def subset(self, rows: np.ndarray) -> SparseRows:
        return SparseRows.from_list([self[int(i)] for i in rows], self.values.dtype,
                                    None if self.lengths is None else self.lengths[rows])

    def consistent(self) -> bool:
        """Whether the arrays agree (a sealed segment's check on open)."""
        p = self.indptr
        return (p.ndim == 1 and len(p) >= 1 and int(p[0]) == 0
                and int(p[-1]) == len(self.indices) == len(self.values)
                and bool((np.diff(p) >= 0).all())
                and (self.lengths is None or self.lengths.shape == (len(p) - 1,)))


def encode_sparse(rows: SparseRows) -> bytes:
    counts = np.diff(rows.indptr).astype("<i8")
    tail = b"" if rows.lengths is None else np.ascontiguousarray(rows.lengths, "<i4").tobytes()
    return (counts.tobytes() + np.ascontiguousarray(rows.indices, "<u4").tobytes()
            + np.ascontiguousarray(rows.values).tobytes() + tail)


def decode_sparse(data: bytes, count: int, dtype: np.dtype, *, lengths: bool = False
                  ) -> SparseRows:
    """The rows of a sparse part (then ``count`` int32 lengths when ``lengths``);
    ``ValueError`` if the sizes disagree."""
    counts = np.frombuffer(data, dtype="<i8", count=count)
    if count and counts.min() < 0:
        raise ValueError("negative sparse entry counts")
    nnz = int(counts.sum())
    if len(data) != 8 * count + nnz * (4 + dtype.itemsize) + (4 * count if lengths else 0):
        raise ValueError("sparse entry counts disagree with the entries")
    indptr = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.frombuffer(data, dtype="<u4", count=nnz, offset=8 * count)
    at = 8 * count + 4 * nnz
    values = np.frombuffer(data, dtype=dtype, count=nnz, offset=at)
    lens = np.frombuffer(data, dtype="<i4", count=count, offset=at + nnz * dtype.itemsize) \
        if lengths else None
    return SparseRows(indptr, indices, values, lens)


class SparseGrowing:
    """The growing rows of one Sparse (or BM25) field, in seq order: the interface of
    :class:`GrowingField` over append-only buffers (counts, indices, values; lengths)."""

    def __init__(self, spec: FieldSpec, dtype: np.dtype, *, lengths: bool = False) -> None:
        self.spec, self.dtype = spec, dtype
        self.seqs = Growable(np.int64)
        self._counts = Growable(np.int64)
        self._indices = Growable(np.uint32)
        self._values = Growable(dtype)
        self._lengths = Growable(np.int32) if lengths else None

    def __len__(self) -> int:
        return self.seqs.n

    @property
    def row_bytes(self) -> int:
        """Bytes per row that :meth:`reserve` sets aside (a seq and a count; a length)."""
        return 16 if self._lengths is None else 20

    def reserve(self, rows: int) -> None:
        self.seqs.reserve(rows)
        self._counts.reserve(rows)
        if self._lengths is not None:
            self._lengths.reserve(rows)

    def extend(self, seqs: np.ndarray, rows: SparseRows) -> None:
        self.seqs.extend(seqs)
        self._counts.extend(np.diff(rows.indptr))
        self._indices.extend(rows.indices)
        self._values.extend(rows.values)
        if self._lengths is not None:
            assert rows.lengths is not None
            self._lengths.extend(rows.lengths)

    @property
    def data(self) -> SparseRows:
        return self.frozen()()

    def frozen(self) -> Callable[[], SparseRows]:
        """A function making the rows as of now: the buffers are append-only, so the views
        taken here never change; the offsets are made on the first call, then kept."""
        counts, indices, values = self._counts.view, self._indices.view, self._values.view
        lengths = None if self._lengths is None else self._lengths.view
        made: list[SparseRows] = []  # (a search's statistics and its scan share one)

        def pack() -> SparseRows:
            if not made:
                indptr = np.zeros(len(counts) + 1, dtype=np.int64)
                np.cumsum(counts, out=indptr[1:])
                made.append(SparseRows(indptr, indices[:indptr[-1]], values[:indptr[-1]],
                                       lengths))
            return made[0]

        return pack

    def after(self, seq: int) -> SparseGrowing:
        """A new buffer of the rows whose seq is greater than ``seq`` (a seal took the rest)."""
        m = int(np.searchsorted(self.seqs.view, seq, side="right"))
        out = SparseGrowing(self.spec, self.dtype, lengths=self._lengths is not None)
        if m < len(self):
            data = self.data
            out.extend(self.seqs.view[m:], SparseRows(
                data.indptr[m:] - data.indptr[m], data.indices[data.indptr[m]:],
                data.values[data.indptr[m]:], None if data.lengths is None
                else data.lengths[m:]))
        return out
