"""Recall calibration: the cheapest query knob that reaches each recall target.

For a built index, held-out queries (the user's sample, or pseudo-queries: sampled rows plus
small Gaussian noise) are searched exactly (the flat oracle) and through the index with a
growing value of the index's knob (``ef`` for HNSW, ``nprobe`` for IVF, ``oversample`` for a
refined flat scan); the smallest value whose mean recall@k reaches each target is kept. The
table is frozen, stored with the index (``to_arrays``), and answers ``params_for(target)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CorruptFile, InvalidArgument
from .base import QueryParams, VectorIndex, exact_topk

__all__ = ["CalibrationTable", "calibrate", "recall_at_k", "knob_params", "KNOB_GRIDS"]

KNOB_GRIDS: dict[str, tuple[float, ...]] = {
    "ef": tuple(range(10, 64, 2)) + tuple(range(64, 128, 8)) + tuple(range(128, 513, 32)),
    "nprobe": tuple(range(1, 33)) + tuple(range(36, 129, 4)) + (160, 192, 256, 384, 512),
    "oversample": (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 24.0,
                   32.0),
}
NOISE = 0.5  # pseudo-query noise norm, as a fraction of the mean row norm


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-query recall: the fraction of ``truth`` rows (``-1`` ignored) that ``found`` holds."""
    out = np.empty(len(truth))
    for i, (f, t) in enumerate(zip(found, truth, strict=True)):
        t = t[t >= 0]
        out[i] = len(np.intersect1d(f, t)) / max(len(t), 1)
    return out


@dataclass(frozen=True)
class CalibrationTable:
    """Target recall -> the cheapest params found, with the mean recall@k measured there."""

    knob: str
    k: int
    targets: tuple[float, ...]
    params: tuple[QueryParams, ...]
    recalls: tuple[float, ...]

    def params_for(self, target_recall: float) -> QueryParams:
        """Params for the smallest calibrated target >= ``target_recall`` (else the largest).

        >>> t = CalibrationTable("ef", 10, (0.9, 0.99), (QueryParams(ef=16), QueryParams(ef=64)),
        ...                      (0.91, 0.99))
        >>> t.params_for(0.95).ef
        64
        """
        if isinstance(target_recall, bool) or not isinstance(target_recall, int | float) \
                or not 0.0 < target_recall <= 1.0:
            raise InvalidArgument(f"params_for: expected a recall in (0, 1], got "
                                  f"{target_recall!r}")
        i = next((j for j, t in enumerate(self.targets) if t >= target_recall - 1e-12),
                 len(self.targets) - 1)
        return self.params[i]

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "k": self.k, "targets": list(self.targets),
                "params": [p.to_dict() for p in self.params], "recalls": list(self.recalls)}

    @classmethod
    def from_dict(cls, d: Any) -> CalibrationTable:
        try:
            return cls(str(d["knob"]), int(d["k"]), tuple(float(t) for t in d["targets"]),
                       tuple(QueryParams(**p) for p in d["params"]),
                       tuple(float(r) for r in d["recalls"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptFile("index arrays", f"unreadable calibration table: {e}") from None


def knob_params(index: VectorIndex, value: float, k: int) -> QueryParams:
    """Params for one knob value; a refined HNSW reranks all ``ef`` candidates of its walk."""
    if index.knob == "oversample":
        return QueryParams(oversample=float(value))
    if index.knob == "ef":
        return QueryParams(ef=int(value), oversample=max(1.0, value / k) if index.refines
                           else None)
    return QueryParams(nprobe=int(value))


def pseudo_queries(vectors: np.ndarray, nq: int, seed: int, metric: str) -> np.ndarray:
    """Sampled rows plus Gaussian noise (re-normalized under cosine)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=min(nq, len(vectors)), replace=False)
    x = np.asarray(vectors[np.sort(rows)], dtype=np.float32)
    scale = NOISE * float(np.linalg.norm(x, axis=1).mean()) / math.sqrt(x.shape[1])
    q = x + rng.normal(0.0, scale, size=x.shape).astype(np.float32)
    if metric == "cosine":
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q


def calibrate(index: VectorIndex, vectors: np.ndarray, *, queries: np.ndarray | None = None,
              targets: tuple[float, ...] = (0.9, 0.95, 0.99), k: int = 10, nq: int = 200,
              seed: int = 0) -> CalibrationTable:
    """Measure ``index`` on held-out queries and store the resulting table on it.

    ``vectors`` are the index's full rows (the oracle, and the rerank vectors).
    """
    targets = tuple(sorted(float(t) for t in targets))
    if not targets or not all(0.0 < t <= 1.0 for t in targets):
        raise InvalidArgument(f"calibrate: expected targets in (0, 1], got {targets!r}")
    q = pseudo_queries(vectors, nq, seed, index.metric) if queries is None else \
        np.ascontiguousarray(queries, dtype=np.float32)
    _, truth = exact_topk(q, vectors, k, index.metric)
    grid = [v for v in KNOB_GRIDS[index.knob] if index.knob != "ef" or v >= k]
    if index.knob == "nprobe":
        grid = [v for v in grid if v <= index.faiss_index.nlist]  # type: ignore[attr-defined]
    cache: dict[int, float] = {}

    def measure(i: int) -> float:
        if i not in cache:
            _, rows = index.search(q, k, params=knob_params(index, grid[i], k), rerank=vectors)
            cache[i] = float(recall_at_k(rows, truth).mean())
        return cache[i]

    values: list[QueryParams] = []
    recalls: list[float] = []
    lo = 0
    for t in targets:  # binary search: recall grows with the knob
        a, b = lo, len(grid) - 1
        if measure(b) < t:
            a = b
        while a < b:
            mid = (a + b) // 2
            if measure(mid) >= t:
                b = mid
            else:
                a = mid + 1
        lo = a
        values.append(knob_params(index, grid[a], k))
        recalls.append(measure(a))
    table = CalibrationTable(index.knob, k, targets, tuple(values), tuple(recalls))
    index.calibration = table
    return table
