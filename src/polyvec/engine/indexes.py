"""The index manager: one per-segment index interface, one registry of index engines.

A field's index spec (a factory string such as ``"HNSW32,SQ8,Refine"``, or
``"FDE(r=20,k=5,d=16),HNSW32"`` / ``"TokenIndex(nbits=2)"`` for a Multi field) is recorded in
the catalog meta (``indexes`` for the dense family, ``mv_indexes`` for the multi-vector one, as
before). Every sealed segment big enough gets its own index, built when the index is created,
when a segment is sealed and when compaction writes new segments; it lives in
``indexes/<segment>.<field>.<nonce>/`` and is registered in the catalog in one transaction.
A segment without an index (too small, or its build was interrupted) is searched exactly; the
growing segment is always searched exactly. Compressed dense indexes rerank from the segment's
own memory-mapped vectors; multi-vector indexes rerank by exact MaxSim.

Each family is an :class:`IndexEngine` registered in :data:`ENGINES` under the
``index_family`` of the field kinds it serves (see :mod:`polyvec.fields`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _progress as progress
from ..errors import CorruptFile, InvalidArgument, PolyvecWarning
from ..factory import format_index, format_multi_index, parse_index, parse_multi_index
from ..fields import kind_of
from ..index_spec import IndexSpec, MultiIndexSpec
from ..spec import FieldSpec
from ..storage import open_segment, write_segment
from ..storage.catalog import IndexRow
from ..storage.segment import file_entry, file_matches, fsync_dir
from . import hooks, merge

if TYPE_CHECKING:
    from ..index import QueryParams, VectorIndex
    from ..index.parts import Group
    from .snapshot import Segment, Snapshot
    from .store import SegmentStore

__all__ = ["ENGINES", "INDEXES", "IndexEngine", "IndexManager", "MIN_INDEX_ROWS",
           "index_orphans"]

INDEXES = "indexes"
MIN_INDEX_ROWS = 1_000  # smaller segments are scanned exactly: an index would not pay
PROGRESS_ROWS = 50_000  # index builds over at least this many rows show progress
QUERIES = "_queries"  # pseudo-segment name of the stored sample queries of a field
LID_SAMPLE = 500  # rows whose LID is estimated for info() at each (re)calibration


class IndexEngine:
    """One family of per-segment indexes (build, persist, load, search one segment)."""

    family: str
    meta_key: str  # catalog meta key: field -> spec string
    calibrated: bool = False  # whether target_recall applies (collection-wide calibration)

    def parse(self, name: str, fspec: FieldSpec, spec: Any) -> Any:
        raise NotImplementedError

    def format(self, spec: Any) -> str:
        raise NotImplementedError

    def min_rows(self) -> int:
        raise NotImplementedError

    def partitioned(self, spec: Any) -> bool:
        """Whether ``spec`` builds partition graphs (its build takes the groups)."""
        return False

    def build(self, data: Any, spec: Any, fspec: FieldSpec, samples: np.ndarray | None,
              groups: list[Group]) -> Any:
        """The index over one segment's ``data``; ``groups``: its rows sharing a value of an
        indexed payload column (for partition graphs, :mod:`polyvec.index.parts`)."""
        raise NotImplementedError

    def save(self, parent: Path, folder: str, idx: Any) -> dict[str, list[int]]:
        raise NotImplementedError

    def load(self, path: Path, row: IndexRow, spec: str, fspec: FieldSpec, verify: bool) -> Any:
        raise NotImplementedError

    def search(self, idx: Any, queries: Any, k: int, data: Any, mask: np.ndarray | None,
               params: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(scores, rows, what this segment's search used); rows ``-1`` pad the end."""
        raise NotImplementedError

    def prepare(self, idx: Any, k: int, data: Any, mask: np.ndarray | None, params: Any
                ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """``queries -> (scores, rows)``: :meth:`search` with every other argument bound,
        for a search executor's plan that repeats one call (``None``: the engine has no such
        call, and the executor takes the general path)."""
        return None

    def info(self, name: str, spec: str, segments: list[Segment], n_segments: int
             ) -> dict[str, Any]:
        raise NotImplementedError


class DenseEngine(IndexEngine):
    """Single-vector indexes (:mod:`polyvec.index`), recall-calibrated."""

    family = "dense"
    meta_key = "indexes"
    calibrated = True

    def parse(self, name: str, fspec: FieldSpec, spec: Any) -> IndexSpec:
        ispec = parse_index(spec) if isinstance(spec, str) else spec
        if not isinstance(ispec, IndexSpec):
            raise InvalidArgument(f"create_index: expected a factory string or IndexSpec, got "
                                  f"{type(spec).__name__}")
        ispec.check_dim(fspec.dim)
        return ispec

    def format(self, spec: Any) -> str:
        return format_index(spec)

    def min_rows(self) -> int:
        return MIN_INDEX_ROWS

    def partitioned(self, spec: Any) -> bool:
        from ..index import INDEXES

        return INDEXES[spec.index.name].partitioned

    def build(self, data: Any, spec: Any, fspec: FieldSpec, samples: np.ndarray | None,
              groups: list[Group]) -> Any:
        from ..index import build_index

        x = np.asarray(data, dtype=np.float32)
        return build_index(x, spec, fspec.metric, sample_queries=samples,  # calibrated once,
                           groups=groups)  # for the collection (calibrate)

    def save(self, parent: Path, folder: str, idx: Any) -> dict[str, list[int]]:
        return write_segment(parent, folder, idx.to_arrays())

    def load(self, path: Path, row: IndexRow, spec: str, fspec: FieldSpec, verify: bool) -> Any:
        """The index, its files checked; a partition graph's files (all but its rows) are
        opened and checked when a search first needs that partition."""
        from ..index import load_index

        folder = path / row.folder
        lazy = {f for f in row.manifest if f.startswith("part.") and not f.endswith(".rows.npy")}
        files = open_segment(folder, {f: e for f, e in row.manifest.items() if f not in lazy})

        def part_arrays(i: int) -> dict[str, np.ndarray]:
            pre = f"part.{i}."
            return dict(open_segment(folder, {f: e for f, e in row.manifest.items()
                                              if f in lazy and f.startswith(pre)}).arrays)

        return load_index(parse_index(spec), dict(files.arrays), fspec.metric,
                          part_arrays=part_arrays)

    def search(self, idx: Any, queries: Any, k: int, data: Any, mask: np.ndarray | None,
               params: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        p, estimate = params
        report: dict[str, Any] | None = None if mask is None else {}
        s, rows = idx.search(queries, k, params=p, selection=mask, rerank=data, report=report)
        used = {"params": None if p is None else p.to_dict(), "recall_estimate": estimate}
        if report:
            used["plan"] = report
        return s, rows, used

    def prepare(self, idx: Any, k: int, data: Any, mask: np.ndarray | None, params: Any
                ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        return idx.bind(k, params=params[0], selection=mask, rerank=data)

    def info(self, name: str, spec: str, segments: list[Segment], n_segments: int
             ) -> dict[str, Any]:
        n = sum(s.row.nrows for s in segments)
        ram = sum(s.indexes[name][1].bytes_in_ram() for s in segments)
        parts = [p for s in segments for p in s.indexes[name][1].partitions()]
        return {"spec": spec, "segments_indexed": len(segments),
                "segments_exact": n_segments - len(segments),
                "ram_bytes_per_vector": ram / n if n else None,
                "partitions": {"graphs": len(parts),
                               "paths": sorted({p["path"] for p in parts})}}


class MultiEngine(IndexEngine):
    """Multi-vector indexes (:mod:`polyvec.multivector.planner`): a first stage + exact MaxSim."""

    family = "multi"
    meta_key = "mv_indexes"

    def parse(self, name: str, fspec: FieldSpec, spec: Any) -> MultiIndexSpec:
        try:
            mspec = parse_multi_index(spec) if isinstance(spec, str) else spec
        except InvalidArgument as e:
            raise InvalidArgument(f"create_index: field {name!r} is Multi: {e}") from None
        if not isinstance(mspec, MultiIndexSpec):
            raise InvalidArgument(f"create_index: field {name!r} is Multi; expected a factory "
                                  f"string such as 'FDE(r=20,k=5,d=16),HNSW32' or "
                                  f"'TokenIndex(nbits=2)', or a MultiIndexSpec, got {spec!r}")
        if mspec.fde is not None and mspec.stack is not None:
            mspec.stack.check_dim(mspec.fde.dim_out(fspec.dim))
        return mspec

    def format(self, spec: Any) -> str:
        return format_multi_index(spec)

    def min_rows(self) -> int:
        from ..multivector import planner

        return planner.EXACT_SEGMENT_ROWS  # read at call time (tests lower it)

    def build(self, data: Any, spec: Any, fspec: FieldSpec, samples: np.ndarray | None,
              groups: list[Group]) -> Any:
        from ..multivector.planner import build_multi_index

        return build_multi_index(data.tokens, data.offsets, spec)

    def save(self, parent: Path, folder: str, idx: Any) -> dict[str, list[int]]:
        return _write_folder(parent, folder, idx.save)

    def load(self, path: Path, row: IndexRow, spec: str, fspec: FieldSpec, verify: bool) -> Any:
        from ..multivector.planner import load_multi_index

        folder = path / row.folder
        for rel, entry in row.manifest.items():
            f, size = folder / rel, entry[0]
            if not f.is_file():
                raise CorruptFile(str(f), "file is missing")
            if f.stat().st_size != size:
                raise CorruptFile(str(f), f"expected {size} bytes, got {f.stat().st_size} "
                                          "(truncated?)")
            if verify and not file_matches(f, entry):
                raise CorruptFile(str(f), "checksum mismatch (bytes changed on disk)")
        return load_multi_index(parse_multi_index(spec), folder)

    def search(self, idx: Any, queries: Any, k: int, data: Any, mask: np.ndarray | None,
               params: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        return idx.search(queries, k, data.tokens, data.offsets, params=params, selection=mask)

    def info(self, name: str, spec: str, segments: list[Segment], n_segments: int
             ) -> dict[str, Any]:
        tokens = sum(len(s.fields[name].tokens) for s in segments)
        ram = sum(s.indexes[name][1].nbytes_ram for s in segments)
        return {"spec": spec, "segments_indexed": len(segments),
                "segments_exact": n_segments - len(segments),
                "ram_bytes_per_token": ram / tokens if tokens else None}


class SparseEngine(IndexEngine):
    """Sparse fields have no index family yet: every segment is scanned exactly."""

    family = "sparse"
    meta_key = "sparse_indexes"

    def parse(self, name: str, fspec: FieldSpec, spec: Any) -> Any:
        raise InvalidArgument(f"create_index: field {name!r} ({type(fspec).__name__}) is "
                              "searched exactly (it has no index yet)")

    def min_rows(self) -> int:
        return 2**62


ENGINES: dict[str, IndexEngine] = {e.family: e for e in (DenseEngine(), MultiEngine(),
                                                         SparseEngine())}


class IndexManager:
    """The indexes of a collection's fields over its sealed segments (writer side: build,
    register, calibrate; reader side: per-call parameters). Uses the store's state."""

    def __init__(self, store: SegmentStore) -> None:
        self.store = store
        self.specs: dict[str, dict[str, str]] = {f: {} for f in ENGINES}  # family -> field -> spec
        self.samples: dict[str, np.ndarray] = {}
        self.calibration: dict[str, Any] = {}
        self.lid: dict[str, Any] = {}
        # set by the facade: search(snapshot, queries, k, name, spec, selected, target_recall,
        # params, use_index=...) -> (ids, scores, info), for calibration
        self.search: Callable[..., tuple[np.ndarray, np.ndarray, dict[str, Any]]] | None = None

    def engine_of(self, fspec: FieldSpec) -> IndexEngine:
        return ENGINES[kind_of(fspec).index_family]

    def spec_of(self, field: str) -> str | None:
        return next((s[field] for s in self.specs.values() if field in s), None)

    def index_dir(self) -> Path:
        d = self.store.path / INDEXES
        d.mkdir(exist_ok=True)
        return d

    # -- creating -------------------------------------------------------------------------
    def create_index(self, field: str, spec: Any, *,
                     sample_queries: np.ndarray | None = None) -> None:
        """Build ``spec`` over every sealed segment of ``field``, the growing rows sealed
        first when there are enough of them to index (see
        :meth:`polyvec.collection.Collection.create_index`)."""
        st = self.store
        name, fspec = st.field(field)
        engine = self.engine_of(fspec)
        ispec = engine.parse(name, fspec, spec)
        samples: np.ndarray | None = None
        if sample_queries is not None:
            if not engine.calibrated:
                raise InvalidArgument(f"create_index: field {name!r} is Multi; sample_queries "
                                      "(recall calibration) apply to Dense fields only")
            checked, _ = kind_of(fspec).check_query(fspec, np.atleast_2d(sample_queries))
            samples = np.asarray(checked, dtype=np.float32)
        st.settle()  # a seal an add asked for first: its segment gets this index too
        with st.mutex, st.lock:
            st.refresh()
            if st.growing_live() >= engine.min_rows():  # indexable rows are indexed now, not
                st.seal()  # scanned on every search until the growing segment fills up
            merge.before_index(st, name)  # few, large segments first: one index per segment
            old = [(s, s.indexes[name]) for s in st.segments if name in s.indexes]
            for s, _ in old:
                s.with_index(name, None)
            self.specs[engine.family] = {**self.specs[engine.family],
                                         name: engine.format(ispec)}
            rows = []
            if engine.calibrated:
                if samples is not None:
                    folder = f"{QUERIES}.{name}.{token_hex(4)}"
                    manifest = write_segment(self.index_dir(), folder, {"queries": samples})
                    rows.append(IndexRow(QUERIES, name, folder, manifest))
                    self.samples[name] = samples
                else:
                    self.samples.pop(name, None)
            built = self._build_missing(name)
            rows += [r for r, _, _ in built]
            with st.catalog.transaction():
                st.catalog.set_meta({engine.meta_key: self.specs[engine.family]})
                st.catalog.put_indexes(rows, drop_field=name)
                hooks.point("index.before_commit")
            st.version = st.catalog.data_version()
            for _, seg, idx in built:
                seg.with_index(name, idx)
            st.publish()
            for _, (folder, _) in old:
                shutil.rmtree(self.index_dir() / folder, ignore_errors=True)
            if engine.calibrated:
                self.calibrate(name)
            if not any(name in seg.indexes for seg in st.segments):
                warnings.warn(PolyvecWarning(self._unindexed_note(name, engine)), stacklevel=3)

    def _unindexed_note(self, name: str, engine: Any) -> str:
        rows = max((s.row.nrows for s in self.store.segments), default=0)
        return (f"index on {name!r} indexes nothing yet: it needs a sealed segment of at least "
                f"{engine.min_rows():,} rows, the largest has {rows:,} (the growing rows are "
                "never indexed); searches stay exact until one is sealed (flush() seals)")

    def _build_missing(self, field: str, segments: list[Segment] | None = None
                       ) -> list[tuple[IndexRow, Segment, tuple[str, Any]]]:
        """Build (not register) the field's index on every big-enough segment lacking one
        (of ``segments``, default all)."""
        fspec = self.store.fields[field]
        engine = self.engine_of(fspec)
        spec = engine.parse(field, fspec, self.specs[engine.family][field])
        samples = self.samples.get(field)
        out = []
        todo = [(seg, self._groups(seg) if engine.partitioned(spec) else [])
                for seg in (self.store.segments if segments is None else segments)
                if field not in seg.indexes and seg.row.nrows >= engine.min_rows()]
        rows = [seg.row.nrows + sum(len(g.rows) for g in groups) for seg, groups in todo]
        bar = progress.bar(sum(rows), f"indexing {field!r}", min_total=PROGRESS_ROWS)
        try:
            for (seg, groups), n in zip(todo, rows, strict=True):
                with progress.reporting(bar) as done:  # builds report rows as they add them
                    out.append(self._build_one(engine, field, seg, spec, fspec, samples,
                                               groups))
                if bar is not None:
                    bar.update(max(0, n - done[0]))
        finally:
            if bar is not None:
                bar.close()
        return out

    def _build_one(self, engine: Any, field: str, seg: Segment, spec: Any, fspec: FieldSpec,
                   samples: np.ndarray | None, groups: list[Group]
                   ) -> tuple[IndexRow, Segment, tuple[str, Any]]:
        idx = engine.build(seg.fields[field], spec, fspec, samples, groups)
        folder = f"{seg.row.name}.{field}.{token_hex(4)}"
        manifest = engine.save(self.index_dir(), folder, idx)
        hooks.point("index.written")
        return IndexRow(seg.row.name, field, folder, manifest), seg, (folder, idx)

    def build_segment(self, seg: Segment, specs: dict[str, dict[str, str]],
                      fields: dict[str, FieldSpec], snap: Snapshot
                      ) -> list[tuple[IndexRow, Segment, tuple[str, Any]]]:
        """The index of every field in ``specs`` (family -> field -> spec text) over a new
        segment big enough, built and written, not registered: a background seal builds them
        with no lock, from the ``fields`` and snapshot it planned on."""
        out = []
        for family, by_field in specs.items():
            engine = ENGINES[family]
            for field, text in by_field.items():
                if field not in fields or seg.row.nrows < engine.min_rows():
                    continue
                fspec = fields[field]
                spec = engine.parse(field, fspec, text)
                groups = self._groups(seg, snap) if engine.partitioned(spec) else []
                out.append(self._build_one(engine, field, seg, spec, fspec,
                                           self.samples.get(field), groups))
        return out

    def _groups(self, seg: Segment, snap: Snapshot | None = None) -> list[Group]:
        """The rows of ``seg`` (alive in ``snap``, default the published snapshot) sharing a
        value of an indexed payload column, those worth a partition graph (see
        :mod:`polyvec.index.parts`)."""
        from ..index.parts import MAX_PART_FRACTION, MIN_PART_ROWS, Group, pick_groups

        snap = snap if snap is not None else self.store.snap
        n = seg.row.nrows
        if snap is None or not snap.columns or n < 2 * MIN_PART_ROWS or not len(snap.seqs):
            return []
        pos = snap.positions_of(seg.seqs)
        ok = pos >= 0
        alive = snap.alive()
        if alive is not None:
            ok &= alive[np.maximum(pos, 0)]
        keep = np.flatnonzero(ok)
        return pick_groups([Group(path, value, keep[rows])
                            for path, col in sorted(snap.columns.items())
                            for value, rows in col.groups(pos[keep], MIN_PART_ROWS,
                                                          int(MAX_PART_FRACTION * n))], n)

    def ensure_indexes(self) -> None:
        """After a seal or compaction: index the new segments (one transaction). Writer only."""
        st = self.store
        built = [b for specs in self.specs.values() for field in specs
                 for b in self._build_missing(field)]
        if not built:
            return
        with st.catalog.transaction():
            st.catalog.put_indexes([r for r, _, _ in built])
            hooks.point("index.before_commit")
        st.version = st.catalog.data_version()
        for row, seg, idx in built:
            seg.with_index(row.field, idx)
        st.publish()
        for field in {row.field for row, _, _ in built}:
            if self.engine_of(st.fields[field]).calibrated:
                self.calibrate(field)

    def calibrate(self, field: str, *, k: int = 10, nq: int = 200) -> None:
        """Calibrate ``target_recall`` on the whole search (every segment, merged).

        Per-segment tables would be conservative: each segment of several only has to find
        its share of the true top-k. :func:`polyvec.index.calibrate.calibrate_collection`
        picks the fastest setting whose recall bound reaches each target on the stored sample
        queries (else pseudo-queries); the table is persisted in the catalog.
        """
        from ..index.calibrate import calibrate_collection, pseudo_queries
        from ..index.order import sample_lid

        st = self.store
        assert self.search is not None, "IndexManager.search is wired by the facade"
        search = self.search
        indexed = [s.indexes[field][1] for s in st.segments if field in s.indexes]
        if not indexed:
            self.calibration.pop(field, None)
            self.lid.pop(field, None)
            return
        spec = st.fields[field]
        snap = st.snap
        assert snap is not None  # (published before any index is built)
        q = self.samples.get(field)
        if q is None:
            rows = np.concatenate([np.asarray(s.fields[field][: max(1, nq // len(
                st.segments))], dtype=np.float32) for s in st.segments])
            q = pseudo_queries(rows, nq, 0, spec.metric)
        alive = snap.alive()

        def filtered(p: Any, sel: np.ndarray | None, use_index: bool
                     ) -> tuple[np.ndarray, np.ndarray]:
            live = sel if alive is None or sel is None else sel & alive
            return search(snap, q, k, field, spec, live, None, p, use_index=use_index)[:2]

        table = calibrate_collection(lambda p, use_index: search(
            snap, q, k, field, spec, None, None, p, use_index=use_index)[:2], indexed, k=k,
            filtered=filtered, n=len(snap.seqs))
        self.calibration = {**self.calibration, field: table}
        self.lid = {**self.lid, field: sample_lid([s.fields[field] for s in st.segments],
                                                  sample=LID_SAMPLE)}
        with st.catalog.transaction():
            st.catalog.set_meta({"calibration": {f: t.to_dict()
                                                 for f, t in self.calibration.items()},
                                 "lid": dict(self.lid)})
        st.version = st.catalog.data_version()
        st.publish()

    # -- loading --------------------------------------------------------------------------
    def load(self, rows: list[IndexRow], meta: dict[str, Any]) -> None:
        """Attach the registered indexes to the loaded segments (reusing ones already open
        whose folder and spec did not change)."""
        from ..index import CalibrationTable

        st = self.store
        prev = self.specs
        self.specs = {f: dict(meta.get(e.meta_key, {})) for f, e in ENGINES.items()}
        self.calibration = {f: CalibrationTable.from_dict(d)
                            for f, d in meta.get("calibration", {}).items()}
        self.lid = dict(meta.get("lid", {}))
        samples = {}
        by_name = {s.row.name: s for s in st.segments}
        wanted: dict[tuple[str, str], IndexRow] = {}
        for r in rows:
            if r.segment == QUERIES:
                files = open_segment(st.path / INDEXES / r.folder, r.manifest)
                samples[r.field] = np.asarray(files["queries"])
            elif r.segment in by_name and self.spec_of(r.field) is not None:
                wanted[(r.segment, r.field)] = r
        self.samples = samples
        old_spec = {f: s for specs in prev.values() for f, s in specs.items()}
        for seg in st.segments:
            for field in list(seg.indexes):
                have = wanted.get((seg.row.name, field))
                if (have is None or have.folder != seg.indexes[field][0]
                        or old_spec.get(field) != self.spec_of(field)):
                    seg.with_index(field, None)
        for (segname, field), r in wanted.items():
            seg = by_name[segname]
            if field in seg.indexes:
                continue
            fspec = st.fields[field]
            spec = self.spec_of(field)
            assert spec is not None
            idx = self.engine_of(fspec).load(st.path / INDEXES, r, spec, fspec, st.verify)
            seg.with_index(field, (r.folder, idx))

    # -- searching ------------------------------------------------------------------------
    def params(self, field: str, fspec: FieldSpec, idx: Any, target_recall: float | None,
               params: Any, mask: np.ndarray | None = None) -> Any:
        """The per-segment search parameters the engine of ``field`` takes (for a search
        among the segment's rows ``mask``: a filter's band of the calibration)."""
        engine = self.engine_of(fspec)
        if not engine.calibrated:
            if target_recall is not None:
                raise InvalidArgument(f"search: field {field!r} has a multi-vector index, "
                                      "which is not recall-calibrated; pass candidates=/"
                                      "rerank_depth=/nprobe= instead of target_recall")
            return params
        fraction = 1.0 if mask is None or target_recall is None else \
            float(np.count_nonzero(mask)) / max(len(mask), 1)
        return self._index_params(field, idx, target_recall, params, fraction)

    def _index_params(self, field: str, idx: VectorIndex, target_recall: float | None,
                      params: QueryParams | None, fraction: float
                      ) -> tuple[QueryParams | None, float | None]:
        """Per-call params: explicit ones, or the calibrated ones for ``target_recall`` (the
        collection-wide table, else the segment's own) on a search selecting ``fraction``
        of the segment's rows (a filter's: its band of the table)."""
        table = self.calibration.get(field) or idx.calibration
        if target_recall is None or table is None:
            return params, None
        p, recall = table.lookup(target_recall, fraction)
        return p, float(recall)

    def search_segment(self, field: str, fspec: FieldSpec, idx: Any, queries: Any, k: int,
                       data: Any, mask: np.ndarray | None, params: Any
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        return self.engine_of(fspec).search(idx, queries, k, data, mask, params)

    def prepare_segment(self, fspec: FieldSpec, idx: Any, k: int, data: Any,
                        mask: np.ndarray | None, params: Any
                        ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """:meth:`search_segment` with everything but the queries bound (see
        :meth:`IndexEngine.prepare`)."""
        return self.engine_of(fspec).prepare(idx, k, data, mask, params)

    def search_info(self, field: str, fspec: FieldSpec, used: list[dict[str, Any]]
                    ) -> dict[str, Any]:
        """What an indexed search reports beyond strategy and segment counts."""
        if self.engine_of(fspec).family == "multi":
            stages = list(dict.fromkeys(s for u in used for s in u["stages"]))
            return {"index": self.spec_of(field), "stages": stages,
                    "candidates": sum(u["candidates"] for u in used),
                    "reranked": sum(u["reranked"] for u in used),
                    "per_segment": [{k: u[k] for k in ("stages", "candidates", "selected")}
                                    for u in used]}
        estimates = [u["recall_estimate"] for u in used]
        out = {"index": self.spec_of(field), "params": used[0]["params"],
               "recall_estimate": None if None in estimates else min(estimates)}
        plans = [u["plan"] for u in used if "plan" in u]
        if plans:  # how each segment's index searched the selection (see VectorIndex.search)
            out["plan"] = plans[0] if len(used) == 1 else plans
        return out

    def index_info(self, segments: Sequence[Segment] | None = None) -> dict[str, Any]:
        """Per indexed field: spec, segments indexed, RAM bytes per vector (per token for
        multi-vector indexes); for calibrated ones the calibration and the LID distribution
        of a sample of the sealed vectors (measured at calibration). Over ``segments`` (a
        snapshot's; default the store's): readers call it without the mutex, so the tables
        are copied before they are walked (a writer may add to them meanwhile)."""
        segments = list(self.store.segments if segments is None else segments)
        out: dict[str, Any] = {}
        for family, specs in list(self.specs.items()):
            engine = ENGINES[family]
            for field, spec in list(specs.items()):
                segs = [s for s in segments if field in s.indexes]
                out[field] = engine.info(field, spec, segs, len(segments))
                if not segs:
                    out[field]["note"] = self._unindexed_note(field, engine)
                if engine.calibrated:
                    out[field] |= {
                        "calibrated_on": "sample queries" if field in self.samples else
                                         "pseudo-queries from the data",
                        "calibration": (self.calibration[field].to_dict()
                                        if field in self.calibration else None),
                        "lid": self.lid.get(field),
                    }
        return out


def index_orphans(path: Path, registered: set[str]) -> list[Path]:
    d = path / INDEXES
    return [p for p in d.iterdir() if p.name not in registered] if d.exists() else []


def _write_folder(parent: Path, name: str, save: Callable[[Path], None]
                  ) -> dict[str, list[int]]:
    """``save`` into ``parent/name.tmp``, fsync every file, rename; the manifest of the files
    (relative path -> its entry, :func:`~polyvec.storage.segment.file_entry`)."""
    final, tmp = parent / name, parent / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save(tmp)
    manifest: dict[str, list[int]] = {}
    for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        manifest[str(f.relative_to(tmp))] = file_entry(f)
    for d in sorted({p.parent for p in tmp.rglob("*")}, key=lambda p: -len(p.parts)):
        fsync_dir(d)
    os.replace(tmp, final)
    fsync_dir(parent)
    return manifest
