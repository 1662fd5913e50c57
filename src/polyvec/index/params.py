"""Query-time settings of an index and the calibration table that maps recall targets to them.

Both are plain frozen data: :mod:`polyvec.index.base` stores a table with an index and
:mod:`polyvec.index.calibrate` measures one, so neither of those modules imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptFile, InvalidArgument

__all__ = ["QueryParams", "CalibrationTable", "FilteredBand", "UNFILTERED_ABOVE"]

UNFILTERED_ABOVE = 0.75  # a search selecting more of the rows takes the unfiltered row


@dataclass(frozen=True)
class QueryParams:
    """Per-search knobs; ``None`` means the index's default.

    ``ef``: HNSW search breadth; ``nprobe``: IVF cells visited; ``oversample``: candidates
    fetched per result before the exact refine.
    """

    ef: int | None = None
    nprobe: int | None = None
    oversample: float | None = None

    def __post_init__(self) -> None:
        for name in ("ef", "nprobe"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise InvalidArgument(f"QueryParams: expected {name} an int >= 1, got {v!r}")
        o = self.oversample
        if o is not None and (isinstance(o, bool) or not isinstance(o, int | float)
                              or not math.isfinite(o) or o < 1.0):
            raise InvalidArgument(f"QueryParams: expected oversample a number >= 1, got {o!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"ef": self.ef, "nprobe": self.nprobe, "oversample": self.oversample}


@dataclass(frozen=True)
class FilteredBand:
    """A table's rows measured again on filtered searches selecting ``fraction`` of the
    rows at random: per target, the params that reach it there (the unfiltered row's, or
    more where that fell short) and the mean recall measured with them."""

    fraction: float
    params: tuple[QueryParams, ...]
    recalls: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "params": [p.to_dict() for p in self.params],
                "recalls": list(self.recalls)}

    @classmethod
    def from_dict(cls, d: Any) -> FilteredBand:
        return cls(float(d["fraction"]), tuple(QueryParams(**p) for p in d["params"]),
                   tuple(float(r) for r in d["recalls"]))


@dataclass(frozen=True)
class CalibrationTable:
    """Target recall -> the fastest params found that reach it, with what was measured there.

    ``recalls``: mean recall@k of the calibration queries at those params; ``lower``: its
    one-sided lower confidence bound, which had to reach the target; ``seconds``: median
    measured search time per query. ``lower`` and ``seconds`` are empty in tables written
    before they were measured. ``queries``: how many calibration queries (0: not recorded).

    >>> t = CalibrationTable("ef", 10, (0.9, 0.99), (QueryParams(ef=16), QueryParams(ef=64)),
    ...                      (0.91, 0.99))
    >>> t.params_for(0.95).ef
    64
    >>> CalibrationTable.from_dict(t.to_dict()) == t
    True
    """

    knob: str
    k: int
    targets: tuple[float, ...]
    params: tuple[QueryParams, ...]
    recalls: tuple[float, ...]
    lower: tuple[float, ...] = ()
    seconds: tuple[float, ...] = ()
    queries: int = 0
    bands: tuple[FilteredBand, ...] = ()

    def params_for(self, target_recall: float) -> QueryParams:
        """Params for the smallest calibrated target >= ``target_recall`` (else the largest)."""
        return self.params[self.row_for(target_recall)]

    def lookup(self, target_recall: float, fraction: float = 1.0
               ) -> tuple[QueryParams, float]:
        """Params and measured recall for ``target_recall`` on a search selecting
        ``fraction`` of the rows: the unfiltered row from :data:`UNFILTERED_ABOVE` up, else
        the filtered band nearest in ratio to ``fraction``."""
        i = self.row_for(target_recall)
        if fraction >= UNFILTERED_ABOVE or not self.bands:
            return self.params[i], self.recalls[i]
        band = min(self.bands, key=lambda b: abs(math.log(max(fraction, 1e-12) / b.fraction)))
        return band.params[i], band.recalls[i]

    def row_for(self, target_recall: float) -> int:
        """Row of the smallest calibrated target >= ``target_recall`` (else the last row)."""
        if isinstance(target_recall, bool) or not isinstance(target_recall, int | float) \
                or not 0.0 < target_recall <= 1.0:
            raise InvalidArgument(f"params_for: expected a recall in (0, 1], got "
                                  f"{target_recall!r}")
        return next((j for j, t in enumerate(self.targets) if t >= target_recall - 1e-12),
                    len(self.targets) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "k": self.k, "targets": list(self.targets),
                "params": [p.to_dict() for p in self.params], "recalls": list(self.recalls),
                "recall_lower_bounds": list(self.lower),
                "seconds_per_query": list(self.seconds), "queries": self.queries,
                "filtered": [b.to_dict() for b in self.bands]}

    @classmethod
    def from_dict(cls, d: Any) -> CalibrationTable:
        try:
            return cls(str(d["knob"]), int(d["k"]), tuple(float(t) for t in d["targets"]),
                       tuple(QueryParams(**p) for p in d["params"]),
                       tuple(float(r) for r in d["recalls"]),
                       tuple(float(r) for r in d.get("recall_lower_bounds", ())),
                       tuple(float(s) for s in d.get("seconds_per_query", ())),
                       int(d.get("queries", 0)),
                       tuple(FilteredBand.from_dict(b) for b in d.get("filtered", ())))
        except (KeyError, TypeError, ValueError, AttributeError, InvalidArgument) as e:
            raise CorruptFile("index arrays", f"unreadable calibration table: {e}") from None
