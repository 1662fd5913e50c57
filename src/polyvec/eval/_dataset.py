"""The :class:`Dataset` shape shared by every loader, and the exact-neighbour oracle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import DimensionMismatch, DuplicateId, InvalidArgument
from ..types import Metric

__all__ = ["Dataset", "exact_neighbors"]

Rows = Sequence[int] | slice | np.ndarray


@dataclass(frozen=True, eq=False)
class Dataset:
    """A retrieval data set: texts, judgments, and optionally vectors, neighbours and payloads.

    Row ``i`` of ``base`` and ``payloads`` belongs to ``corpus[i]``; row ``i`` of
    ``query_vectors`` and ``neighbors`` to ``queries[i]``. ``neighbors`` holds corpus *row*
    numbers (int64, best first), ``qrels`` maps query id -> doc id -> relevance (grade > 0 is
    relevant). The arrays are read-only views; copy them to modify.
    """

    name: str
    corpus: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    qrels: dict[str, dict[str, int]]
    base: np.ndarray | None = None
    query_vectors: np.ndarray | None = None
    neighbors: np.ndarray | None = None
    metric: str | None = None
    payloads: list[dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, nq = len(self.corpus), len(self.queries)
        for what, items in (("corpus", self.corpus), ("queries", self.queries)):
            ids = [r["id"] for r in items]
            if len(set(ids)) != len(ids):
                raise DuplicateId(f"Dataset {self.name!r}: {what} ids must be unique")
        if self.metric is not None and self.metric not in {m.value for m in Metric}:
            raise InvalidArgument(
                f"Dataset(metric=...): expected one of {[m.value for m in Metric]}, "
                f"got {self.metric!r}"
            )
        for what, arr, rows in (("base", self.base, n), ("query_vectors", self.query_vectors, nq)):
            if arr is not None and (arr.ndim != 2 or arr.shape[0] != rows):
                raise InvalidArgument(f"Dataset.{what}: expected ({rows}, d), got {arr.shape}")
        if (self.base is not None and self.query_vectors is not None
                and self.base.shape[1] != self.query_vectors.shape[1]):
            raise DimensionMismatch(
                f"Dataset: base is {self.base.shape[1]}-d but query_vectors are "
                f"{self.query_vectors.shape[1]}-d"
            )
        if self.neighbors is not None:
            nb = self.neighbors
            if nb.ndim != 2 or nb.shape[0] != nq:
                raise InvalidArgument(f"Dataset.neighbors: expected ({nq}, k), got {nb.shape}")
            if nb.size and (nb.min() < 0 or nb.max() >= n):
                raise InvalidArgument(f"Dataset.neighbors: row ids must lie in [0, {n})")
        if self.payloads is not None and len(self.payloads) != n:
            raise InvalidArgument(
                f"Dataset.payloads: expected {n} (one per doc), got {len(self.payloads)}"
            )
        for name in ("base", "query_vectors", "neighbors"):
            arr = getattr(self, name)
            if arr is not None:  # a read-only view: the caller's own array stays writable
                view = arr.view()
                view.setflags(write=False)
                object.__setattr__(self, name, view)

    @property
    def dim(self) -> int | None:
        """Dimension of the vectors, or None for a text-only set."""
        return None if self.base is None else int(self.base.shape[1])

    def describe(self) -> str:
        """One line: sizes, judgments, vectors, neighbours, metric, payload fields."""
        judged = [q["id"] for q in self.queries if self.qrels.get(q["id"])]
        rel = sum(sum(g > 0 for g in self.qrels[q].values()) for q in judged)
        parts = [f"{len(self.corpus)} docs", f"{len(self.queries)} queries"]
        if judged:
            parts.append(f"{len(judged)} judged ({rel / len(judged):.1f} rel/query)")
        if self.base is not None:
            parts.append(f"vectors {self.base.shape[1]}-d {self.base.dtype}")
        if self.neighbors is not None:
            parts.append(f"neighbors k={self.neighbors.shape[1]}")
        if self.metric is not None:
            parts.append(f"metric {self.metric}")
        if self.payloads:
            parts.append(f"payloads {sorted(self.payloads[0])}")
        return f"{self.name}: " + ", ".join(parts)

    def head(self, n: int) -> Dataset:
        """The first ``n`` queries over the whole corpus (neighbours stay exact)."""
        return self.subset(queries=slice(0, n))

    def subset(self, *, docs: Rows | None = None, queries: Rows | None = None) -> Dataset:
        """Keep the given corpus rows and/or query rows (indices, a slice or a boolean mask).

        qrels keep only pairs whose query and document remain. When documents are dropped the
        old neighbours no longer hold: they are recomputed exactly (same k, at most the new
        corpus size) when the set has vectors and a metric, and dropped otherwise.
        """
        d_rows = _rows(docs, len(self.corpus))
        q_rows = _rows(queries, len(self.queries))
        corpus = [self.corpus[i] for i in d_rows]
        qs = [self.queries[i] for i in q_rows]
        doc_ids = {d["id"] for d in corpus}
        qrels = {}
        for q in qs:
            kept = {d: g for d, g in self.qrels.get(q["id"], {}).items() if d in doc_ids}
            if kept:
                qrels[q["id"]] = kept
        base = None if self.base is None else self.base[d_rows]
        qv = None if self.query_vectors is None else self.query_vectors[q_rows]
        neighbors = None
        if self.neighbors is not None and docs is None:
            neighbors = self.neighbors[q_rows]
        out = replace(
            self, corpus=corpus, queries=qs, qrels=qrels, base=base, query_vectors=qv,
            neighbors=neighbors,
            payloads=None if self.payloads is None else [self.payloads[i] for i in d_rows],
        )
        exact = base is not None and qv is not None and self.metric is not None and len(corpus)
        if self.neighbors is not None and docs is not None and exact:
            return out.with_neighbors(min(self.neighbors.shape[1], len(corpus)))
        return out

    def with_neighbors(self, k: int, *, backend: str = "numpy") -> Dataset:
        """A copy whose ``neighbors`` are the exact top-``k`` rows of each query vector."""
        if self.base is None or self.query_vectors is None or self.metric is None:
            raise InvalidArgument(f"{self.name}: neighbours need base, query_vectors and metric")
        ids, _ = exact_neighbors(self.base, self.query_vectors, k, metric=self.metric,
                                 backend=backend)
        return replace(self, neighbors=ids)


def _rows(sel: Rows | None, n: int) -> np.ndarray:
    if sel is None:
        return np.arange(n)
    if isinstance(sel, slice):
        return np.arange(n)[sel]
    arr = np.asarray(sel)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InvalidArgument(f"subset: boolean mask must have shape ({n},), got {arr.shape}")
        return np.flatnonzero(arr)
    if arr.size and (arr.min() < -n or arr.max() >= n):
        raise InvalidArgument(f"subset: row numbers must lie in [0, {n})")
    return arr.astype(np.int64).reshape(-1)


# --------------------------------------------------------------------------- exact neighbours


def _scores(base: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """Higher-is-better scores in float64 (exact for integer-valued data such as pixels)."""
    b = base.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "cosine":
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-300)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    s = q @ b.T
    if metric == "l2":
        s = 2 * s - (q * q).sum(1)[:, None] - (b * b).sum(1)[None, :]
    return s


def _top_k_rows(scores: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row by (score desc, row id asc): ties broken by the lower corpus row."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)
        kth = np.take_along_axis(scores, part[:, k - 1 : k], axis=1)
        keep = scores >= kth  # every tie of the k-th score stays a candidate
        width = int(keep.sum(1).max())
        pick = np.argsort(~keep, axis=1, kind="stable")[:, :width]
        scores = np.take_along_axis(scores, pick, axis=1)
        scores = np.where(np.take_along_axis(keep, pick, axis=1), scores, -np.inf)
        cols = np.take_along_axis(np.broadcast_to(cols, keep.shape), pick, axis=1)
    cols = np.broadcast_to(cols, scores.shape)
    order = np.lexsort((cols, -scores), axis=1)[:, :k]
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(scores, order, axis=1)


def exact_neighbors(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    metric: str,
    backend: str = "numpy",
    batch: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` corpus rows of each query: ``(ids int64, scores float64)``, best first.

    Scores are higher-is-better (``l2``: minus the squared distance) computed in float64; ties
    go to the lower row. ``backend="faiss"`` finds ``k + max(16, k // 4)`` candidates with
    faiss' float32 brute force and re-scores them in float64: the same answer, several times
    faster, unless float32 rounding pushes a true neighbour out of that margin.

    Examples
    --------
    >>> base = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    >>> ids, scores = exact_neighbors(base, np.array([[0.9, 0.1]]), 3, metric="l2")
    >>> ids.tolist(), np.round(-scores, 2).tolist()
    ([[1, 0, 2]], [[0.02, 0.82, 1.62]])
    """
    if metric not in {m.value for m in Metric}:
        raise InvalidArgument(f"exact_neighbors: unknown metric {metric!r}")
    if base.ndim != 2 or queries.ndim != 2 or base.shape[1] != queries.shape[1]:
        raise DimensionMismatch(
            f"exact_neighbors: base {base.shape} and queries {queries.shape} must be 2-D with "
            "the same number of columns"
        )
    if not 1 <= k <= len(base):
        raise InvalidArgument(f"exact_neighbors: expected 1 <= k <= {len(base)}, got {k}")
    if backend not in ("numpy", "faiss"):
        raise InvalidArgument(
            f"exact_neighbors: backend must be 'numpy' or 'faiss', got {backend!r}"
        )
    ids = np.empty((len(queries), k), np.int64)
    scores = np.empty((len(queries), k), np.float64)
    cand = _faiss_candidates(base, queries, min(len(base), k + max(16, k // 4)), metric) \
        if backend == "faiss" else None
    for lo in range(0, len(queries), batch):
        q = queries[lo : lo + batch]
        if cand is None:
            cols = np.arange(len(base))[None, :]
            s = _scores(base, q, metric)
        else:
            cols = cand[lo : lo + batch]
            s = np.stack([_scores(base[c], q[i : i + 1], metric)[0] for i, c in enumerate(cols)])
        ids[lo : lo + batch], scores[lo : lo + batch] = _top_k_rows(s, cols, k)
    return ids, scores


def _faiss_candidates(base: np.ndarray, queries: np.ndarray, c: int, metric: str) -> np.ndarray:
    import faiss  # a core dependency, imported only when asked for

    b = np.ascontiguousarray(base, np.float32)
    q = np.ascontiguousarray(queries, np.float32)
    if metric == "cosine":
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    _, idx = faiss.knn(q, b, c, metric=kind)
    return np.asarray(idx, np.int64)
