"""ANN indexes over sealed segments: built per segment, persisted beside it, searched per call.

A field's index spec (a factory string such as ``"HNSW32,SQ8,Refine"``) is recorded in the
catalog. ``create_index`` first merges the sealed segments into few large ones
(:mod:`polyvec.engine.merge`); every sealed segment of the field gets its own index, built and
calibrated when the index is created, when a segment is sealed, when a merge writes one (before
it is registered) and when compaction writes new segments; it lives in
``indexes/<segment>.<field>.<nonce>/`` and is registered in the catalog in one transaction. A
segment without an index (too small, or its build was interrupted) is searched exactly; the
growing segment is always searched exactly. Compressed indexes rerank from the segment's own
memory-mapped vectors.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _validate as v
from .engine.merge import before_index
from .errors import InvalidArgument
from .factory import format_index, parse_index
from .index_spec import IndexSpec
from .spec import Dense, FieldSpec
from .storage import open_segment, write_segment
from .storage.catalog import IndexRow

if TYPE_CHECKING:
    from .index import QueryParams, VectorIndex
    from .storage import Catalog, WriteLock

__all__ = ["IndexingMixin", "INDEXES", "MIN_INDEX_ROWS"]

INDEXES = "indexes"
MIN_INDEX_ROWS = 1_000  # smaller segments are scanned exactly: an index would not pay
QUERIES = "_queries"  # pseudo-segment name of the stored sample queries of a field
LID_SAMPLE = 500  # rows whose LID is estimated for info() at each (re)calibration


class IndexingMixin:
    """Mixed into :class:`~polyvec.collection.Collection`."""

    path: Path
    _fields: dict[str, FieldSpec]
    _segments: list[Any]
    _catalog: Catalog
    _lock: WriteLock
    _mutex: Any
    _version: int
    _index_specs: dict[str, str]
    _samples: dict[str, np.ndarray]
    _calibration: dict[str, Any]
    _lid: dict[str, Any]
    _field: Callable[[str | None], tuple[str, FieldSpec]]
    _refresh: Callable[[], None]
    _search: Callable[..., tuple[np.ndarray, np.ndarray, dict[str, Any]]]

    def create_index(self, field: str, spec: str | IndexSpec, *,
                     sample_queries: np.ndarray | None = None) -> None:
        """Build ``spec`` (e.g. ``"HNSW32,SQ8,Refine"``) over every sealed segment of ``field``.

        Each segment's index is calibrated on ``sample_queries`` (recommended: real queries;
        they are stored and reused for segments sealed later) or, without them, on
        pseudo-queries drawn from the data, which overestimate recall for queries unlike the
        documents.
        """
        name, fspec = self._field(field)
        if not isinstance(fspec, Dense):
            raise InvalidArgument(f"create_index: field {name!r} is {type(fspec).__name__}; "
                                  "single-vector indexes are for Dense fields")
        ispec = parse_index(spec) if isinstance(spec, str) else spec
        if not isinstance(ispec, IndexSpec):
            raise InvalidArgument(f"create_index: expected a factory string or IndexSpec, got "
                                  f"{type(spec).__name__}")
        ispec.check_dim(fspec.dim)
        samples: np.ndarray | None = None
        if sample_queries is not None:
            checked, _ = v.check_query(fspec, np.atleast_2d(sample_queries))
            samples = np.asarray(checked, dtype=np.float32)
        with self._mutex, self._lock:
            self._refresh()
            before_index(self, name)  # few, large segments first: one graph per merged segment
            old = [(s, s.indexes.pop(name)) for s in self._segments if name in s.indexes]
            self._index_specs = {**self._index_specs, name: format_index(ispec)}
            rows = []
            if samples is not None:
                folder = f"{QUERIES}.{name}.{token_hex(4)}"
                manifest = write_segment(self._index_dir(), folder, {"queries": samples})
                rows.append(IndexRow(QUERIES, name, folder, manifest))
                self._samples[name] = samples
            else:
                self._samples.pop(name, None)
            built = self._build_missing(name)
            rows += [r for r, _, _ in built]
            with self._catalog.transaction():
                self._catalog.set_meta({"indexes": self._index_specs})
                self._catalog.put_indexes(rows, drop_field=name)
            self._version = self._catalog.data_version()
            for _, seg, idx in built:
                seg.indexes[name] = idx
            for _, (folder, _) in old:
                shutil.rmtree(self._index_dir() / folder, ignore_errors=True)
            self._calibrate_collection(name)

    def _index_dir(self) -> Path:
        d = self.path / INDEXES
        d.mkdir(exist_ok=True)
        return d

    def _build_missing(self, field: str, segments: list[Any] | None = None
                       ) -> list[tuple[IndexRow, Any, tuple[str, VectorIndex]]]:
        """Build (not register) the field's index on every big-enough segment lacking one
        (of ``segments``, default all)."""
        from .index import build_index, calibrate

        spec = parse_index(self._index_specs[field])
        metric = self._fields[field].metric
        samples = self._samples.get(field)
        out = []
        for seg in self._segments if segments is None else segments:
            if field in seg.indexes or seg.row.nrows < MIN_INDEX_ROWS:
                continue
            x = np.asarray(seg.fields[field], dtype=np.float32)
            idx = build_index(x, spec, metric, sample_queries=samples)
            calibrate(idx, x, queries=samples)
            folder = f"{seg.row.name}.{field}.{token_hex(4)}"
            manifest = write_segment(self._index_dir(), folder, idx.to_arrays())
            out.append((IndexRow(seg.row.name, field, folder, manifest), seg, (folder, idx)))
        return out

    def _ensure_indexes(self) -> None:
        """After a seal or compaction: index the new segments (one transaction). Writer only."""
        built = [b for field in self._index_specs for b in self._build_missing(field)]
        if not built:
            return
        with self._catalog.transaction():
            self._catalog.put_indexes([r for r, _, _ in built])
        self._version = self._catalog.data_version()
        for row, seg, idx in built:
            seg.indexes[row.field] = idx
        for field in {row.field for row, _, _ in built}:
            self._calibrate_collection(field)

    def _calibrate_collection(self, field: str, *, k: int = 10, nq: int = 200) -> None:
        """Calibrate ``target_recall`` on the whole search (every segment, merged).

        Per-segment tables would be conservative: each segment of several only has to find
        its share of the true top-k. The sweep measures mean recall@k of the merged search
        against the exact one, on the stored sample queries (else pseudo-queries), and the
        table is persisted in the catalog.
        """
        from .index.calibrate import KNOB_GRIDS, CalibrationTable, knob_params, pseudo_queries
        from .index.order import sample_lid

        indexed = [s.indexes[field][1] for s in self._segments if field in s.indexes]
        if not indexed:
            self._calibration.pop(field, None)
            self._lid.pop(field, None)
            return
        spec = self._fields[field]
        q = self._samples.get(field)
        if q is None:
            rows = np.concatenate([np.asarray(s.fields[field][: max(1, nq // len(
                self._segments))], dtype=np.float32) for s in self._segments])
            q = pseudo_queries(rows, nq, 0, spec.metric)
        exact, _, _ = self._search(q, k, field, spec, None, None, None, use_index=False)
        probe = indexed[0]
        grid = [g for g in KNOB_GRIDS[probe.knob] if probe.knob != "ef" or g >= k]
        if probe.knob == "nprobe":
            grid = [g for g in grid if g <= min(i.faiss_index.nlist for i in indexed)]
        cache: dict[int, float] = {}

        def measure(i: int) -> float:
            if i not in cache:
                got, _, _ = self._search(q, k, field, spec, None, None,
                                         knob_params(probe, grid[i], k))
                cache[i] = float(np.mean([len(set(a) & set(b)) / max(1, len(set(b) - {None}))
                                          for a, b in zip(got.tolist(), exact.tolist(),
                                                          strict=True)]))
            return cache[i]

        targets, params, recalls, lo = (0.9, 0.95, 0.99), [], [], 0
        for t in targets:  # binary search: recall grows with the knob
            a, b = lo, len(grid) - 1
            if measure(b) < t:
                a = b
            while a < b:
                mid = (a + b) // 2
                a, b = (a, mid) if measure(mid) >= t else (mid + 1, b)
            lo = a
            params.append(knob_params(probe, grid[a], k))
            recalls.append(measure(a))
        table = CalibrationTable(probe.knob, k, targets, tuple(params), tuple(recalls))
        self._calibration[field] = table
        self._lid[field] = sample_lid([s.fields[field] for s in self._segments],
                                      sample=LID_SAMPLE)
        with self._catalog.transaction():
            self._catalog.set_meta({"calibration": {f: t.to_dict()
                                                    for f, t in self._calibration.items()},
                                    "lid": dict(self._lid)})
        self._version = self._catalog.data_version()

    def _load_indexes(self, rows: list[IndexRow], meta: dict[str, Any]) -> None:
        """Attach the registered indexes to the loaded segments (reusing ones already open)."""
        from .index import CalibrationTable, load_index

        self._index_specs = dict(meta.get("indexes", {}))
        self._calibration = {f: CalibrationTable.from_dict(d)
                             for f, d in meta.get("calibration", {}).items()}
        self._lid = dict(meta.get("lid", {}))
        self._samples = {}
        by_name = {s.row.name: s for s in self._segments}
        wanted: dict[tuple[str, str], IndexRow] = {}
        for r in rows:
            if r.segment == QUERIES:
                files = open_segment(self.path / INDEXES / r.folder, r.manifest)
                self._samples[r.field] = np.asarray(files["queries"])
            elif r.segment in by_name and r.field in self._index_specs:
                wanted[(r.segment, r.field)] = r
        for seg in self._segments:
            for field in list(seg.indexes):
                have = wanted.get((seg.row.name, field))
                if have is None or have.folder != seg.indexes[field][0]:
                    del seg.indexes[field]
        for (segname, field), r in wanted.items():
            seg = by_name[segname]
            if field in seg.indexes:
                continue
            files = open_segment(self.path / INDEXES / r.folder, r.manifest)
            idx = load_index(parse_index(self._index_specs[field]), dict(files.arrays),
                             self._fields[field].metric)
            seg.indexes[field] = (r.folder, idx)

    def _index_params(self, field: str, idx: VectorIndex, target_recall: float | None,
                      params: QueryParams | None) -> tuple[QueryParams | None, float | None]:
        """Per-call params: explicit ones, or the calibrated ones for ``target_recall`` (the
        collection-wide table, else the segment's own)."""
        table = self._calibration.get(field) or idx.calibration
        if target_recall is None or table is None:
            return params, None
        p = table.params_for(target_recall)
        i = table.params.index(p)
        return p, float(table.recalls[i])

    def index_info(self) -> dict[str, Any]:
        """Per indexed field: spec, segments indexed, RAM bytes per vector, calibration, and
        the LID distribution of a sample of the sealed vectors (measured at calibration)."""
        out: dict[str, Any] = {}
        for field, spec in self._index_specs.items():
            segs = [s for s in self._segments if field in s.indexes]
            n = sum(s.row.nrows for s in segs)
            ram = sum(s.indexes[field][1].bytes_in_ram() for s in segs)
            out[field] = {
                "spec": spec,
                "segments_indexed": len(segs),
                "segments_exact": len(self._segments) - len(segs),
                "ram_bytes_per_vector": ram / n if n else None,
                "calibrated_on": "sample queries" if field in self._samples else
                                 "pseudo-queries from the data",
                "calibration": (self._calibration[field].to_dict()
                                if field in self._calibration else None),
                "lid": self._lid.get(field),
            }
        return out


def index_orphans(path: Path, registered: set[str]) -> list[Path]:
    d = path / INDEXES
    return [p for p in d.iterdir() if p.name not in registered] if d.exists() else []
