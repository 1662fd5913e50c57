"""A collection: durable items (id, vectors, JSON payload) with exact search and filters.

The facade validates input once, then orchestrates the layers: the SQLite catalog (write log,
payloads, segment registry), the in-memory mirror of the growing segment, memory-mapped sealed
segments, the live table (ids + indexed payload columns) and the exact scans.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any

import numpy as np

from . import _validate as v
from ._backfill import BackfillMixin
from ._growing import GrowingField, TokenSets
from ._indexing import INDEXES, index_orphans
from ._kernels import TopK
from ._live import LiveTable, isin_sorted
from ._mv_indexing import MultiIndexingMixin
from ._text import TextMixin
from .engine import merge as _merge
from .errors import CorruptFile, DuplicateId, InvalidArgument, Locked, UnknownField
from .filters import MatchAll, compile_filter, parse_filter, to_sql
from .index import QueryParams, scan_dense
from .multivector import scan_multi
from .spec import CollectionSchema, Dense, FieldSpec, ModelSpec, Multi
from .storage import Catalog, ItemRow, WriteLock, open_segment, write_segment
from .storage.catalog import SegmentRow, Snapshot
from .types import SearchResult

__all__ = ["Collection", "Item"]

CATALOG = "catalog.sqlite"
SEGMENTS = "segments"
DEFAULT_SEGMENT_ROWS = 50_000
_RETRIES = 20  # reloads when another process commits while we read



@dataclass(frozen=True)
class Item:
    """One stored item, as returned by :meth:`Collection.get`."""

    id: int | str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(repr=False)


@dataclass
class _Segment:
    row: SegmentRow
    seqs: np.ndarray
    fields: dict[str, np.ndarray | TokenSets]
    alive: np.ndarray | None = None  # cached alive mask, reset on every write
    all_alive: bool = False  # whether ``alive`` is all True (valid while ``alive`` is set)
    indexes: dict[str, tuple[str, Any]] = field(default_factory=dict)  # field -> (folder, index)
    row_keys: np.ndarray | None = None  # external id per row (object), made on first use


def _query_params(ef: Any, nprobe: Any, oversample: Any) -> QueryParams:
    """Checked, immutable query knobs, made once per combination of values and types."""
    try:
        return _cached_params(ef, nprobe, oversample)
    except TypeError:  # unhashable: QueryParams says what is wrong with it
        return QueryParams(ef=ef, nprobe=nprobe, oversample=oversample)


@functools.lru_cache(maxsize=256, typed=True)  # typed: True and 1, 32.0 and 32 stay apart
def _cached_params(ef: Any, nprobe: Any, oversample: Any) -> QueryParams:
    return QueryParams(ef=ef, nprobe=nprobe, oversample=oversample)


def _field_arrays(name: str, data: np.ndarray | TokenSets) -> dict[str, np.ndarray]:
    if isinstance(data, TokenSets):
        return {f"{name}.tokens": data.tokens, f"{name}.offsets": data.offsets}
    return {name: data}


class Collection(TextMixin, MultiIndexingMixin, BackfillMixin):
    """Use :meth:`polyvec.Database.create_collection` / ``get_collection`` to get one."""

    def __init__(self, path: Path, *, lock_timeout: float = 10.0, verify: bool = True) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._verify = verify
        self._embedders: dict[str, Any] = {}
        self._segments: list[_Segment] = []
        self._index_specs: dict[str, str] = {}
        self._samples: dict[str, np.ndarray] = {}
        self._calibration: dict[str, Any] = {}
        self._lid: dict[str, Any] = {}
        self._mutex = threading.RLock()
        self._lock = WriteLock(self.path / "LOCK", lock_timeout)
        self._catalog = Catalog.open(self.path / CATALOG, busy_timeout=lock_timeout)
        if self._lock.try_acquire():
            try:
                self._load()
                self._remove_orphans()
            finally:
                self._lock.release()
        else:
            self._load()

    # -- creation and loading -------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, schema: CollectionSchema, *, segment_rows: int,
               lock_timeout: float = 10.0) -> Collection:
        meta = {"schema": schema.to_dict(), "segment_rows": segment_rows}
        Catalog.create(path / CATALOG, meta).close()
        (path / SEGMENTS).mkdir()
        (path / INDEXES).mkdir()
        return cls(path, lock_timeout=lock_timeout)

    def _load(self) -> None:
        """(Re)build the in-memory state from the catalog and the segment files.

        A writer in another process may commit (and a compaction delete old segment files)
        between reading the catalog and opening the files: then the data version has moved,
        and the load starts over from the newer catalog.
        """
        for _ in range(_RETRIES):
            version, snap = self._catalog.snapshot()
            try:
                self._build(snap)
            except CorruptFile:
                if self._catalog.data_version() != version:
                    continue  # changed under us: not corruption
                raise
            self._version = version
            return
        raise Locked(f"{self.name}: the collection changed {_RETRIES} times while loading")

    def _build(self, snap: Snapshot) -> None:
        try:
            self.schema = CollectionSchema.from_dict(snap.meta["schema"])
            self._segment_rows = int(snap.meta["segment_rows"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptFile(str(self._catalog.path), f"bad schema in meta: {e}") from None
        self._fields: dict[str, FieldSpec] = self.schema.fields
        self._meta = snap.meta  # model versions, mappings, backfill state (see _models)
        try:
            self._models = {f: ModelSpec.from_dict(d)
                            for f, d in snap.meta.get("models", {}).items()}
        except (TypeError, ValueError) as e:
            raise CorruptFile(str(self._catalog.path), f"bad model specs in meta: {e}") from None
        payloads = [json.loads(r.payload) for r in snap.items] if self.schema.indexed else None
        live = LiveTable(self.schema.indexed)
        live.append(np.array([r.seq for r in snap.items], dtype=np.int64),
                    [r.key for r in snap.items], payloads)
        self._live = live
        self._growing = {}
        growing_seqs = None
        for name, spec in self._fields.items():
            g = GrowingField(spec, v.storage_dtype(spec))
            rows = snap.vectors.get(name, [])
            seqs = np.array([s for s, _ in rows], dtype=np.int64)
            dtype = v.storage_dtype(spec)
            try:
                if isinstance(spec, Dense):
                    data: Any = np.frombuffer(b"".join(d for _, d in rows), dtype=dtype
                                              ).reshape(len(rows), spec.dim)
                else:
                    data = [np.frombuffer(d, dtype=dtype).reshape(-1, spec.dim) for _, d in rows]
            except ValueError:
                raise CorruptFile(str(self._catalog.path), f"field {name!r}: vector blob has "
                                  "the wrong size") from None
            g.extend(seqs, data)
            if growing_seqs is not None and not np.array_equal(growing_seqs, seqs):
                raise CorruptFile(str(self._catalog.path), "growing vector rows disagree across "
                                  "fields")
            growing_seqs = seqs
            self._growing[name] = g
        # segment files are immutable and uniquely named: keep the ones already open (verified)
        opened = {s.row.name: s for s in self._segments}
        self._segments = [opened[r.name] if r.name in opened and opened[r.name].row == r
                          else self._open_segment(r) for r in snap.segments]
        self._invalidate()  # cached alive masks belong to the old live set
        self._load_indexes(snap.indexes, snap.meta)
        self._check_coverage(growing_seqs if growing_seqs is not None else np.zeros(0, np.int64))

    def _open_segment(self, row: SegmentRow) -> _Segment:
        files = open_segment(self.path / SEGMENTS / row.name, row.manifest, verify=self._verify)
        where = str(files.path)
        try:
            seqs = files["seqs"]
            fields: dict[str, np.ndarray | TokenSets] = {}
            for name, spec in self._fields.items():
                if isinstance(spec, Dense):
                    x = files[name]
                    ok = x.shape == (row.nrows, spec.dim)
                    fields[name] = x
                else:
                    ts = TokenSets(files[f"{name}.tokens"], files[f"{name}.offsets"])
                    ok = (len(ts) == row.nrows and ts.tokens.shape[1:] == (spec.dim,)
                          and int(ts.offsets[-1]) == len(ts.tokens)
                          and bool((np.diff(ts.offsets) > 0).all()))
                    fields[name] = ts
                if not ok:
                    raise CorruptFile(where, f"field {name!r}: arrays do not match the catalog")
        except KeyError as e:
            raise CorruptFile(where, f"missing array {e}") from None
        if len(seqs) != row.nrows or (len(seqs) and (seqs[0] != row.min_seq
                                                     or seqs[-1] != row.max_seq)):
            raise CorruptFile(where, "row seqs do not match the catalog")
        return _Segment(row, np.asarray(seqs), fields)

    def _check_coverage(self, growing_seqs: np.ndarray) -> None:
        """Every live item must have vectors in the growing segment or in a sealed one."""
        live = self._live.live_seqs()
        covered = isin_sorted(live, growing_seqs)
        for seg in self._segments:
            covered |= isin_sorted(live, seg.seqs)
        if not covered.all():
            missing = int(live[~covered][0])
            raise CorruptFile(str(self._catalog.path), f"item seq={missing} has no vectors")

    def _remove_orphans(self) -> None:
        """Delete segment folders the catalog does not know (left by a crash). Writer only."""
        known = {s.row.name for s in self._segments}
        for p in (self.path / SEGMENTS).iterdir():
            if p.name not in known:
                shutil.rmtree(p, ignore_errors=True)
        for p in index_orphans(self.path, self._catalog.guard(self._catalog.index_folders)):
            shutil.rmtree(p, ignore_errors=True)

    def _refresh(self) -> None:
        """Reload if another connection committed since we last looked."""
        if self._catalog.data_version() != self._version:
            self._load()

    # -- writing --------------------------------------------------------------------------------

    def add(self, ids: Sequence[int | str], vectors: Mapping[str, Any] | Any = None,
            payloads: Sequence[dict[str, Any] | None] | None = None) -> None:
        """Insert new items; raises ``DuplicateId`` (and writes nothing) if any id exists."""
        self._write(ids, vectors, payloads, replace=False)

    def upsert(self, ids: Sequence[int | str], vectors: Mapping[str, Any] | Any = None,
               payloads: Sequence[dict[str, Any] | None] | None = None) -> None:
        """Insert items, replacing (vectors and payload) any that already exist."""
        self._write(ids, vectors, payloads, replace=True)

    def _check_vectors(self, vectors: Any, n: int) -> dict[str, Any]:
        if not isinstance(vectors, Mapping):
            if len(self._fields) != 1:
                raise UnknownField(f"vectors: expected a dict with fields {list(self._fields)}, "
                                   f"got {type(vectors).__name__}")
            vectors = {next(iter(self._fields)): vectors}
        unknown = set(vectors) - set(self._fields)
        if unknown:
            raise UnknownField(f"unknown vector field(s) {sorted(unknown)}; this collection has "
                               f"{list(self._fields)}")
        missing = set(self._fields) - set(vectors)
        if missing:
            raise UnknownField(f"vectors: expected every field {list(self._fields)}, missing "
                               f"{sorted(missing)}")
        return {name: v.check_field_vectors(name, spec, vectors[name], n)
                for name, spec in self._fields.items()}

    def _write(self, ids: Any, vectors: Any, payloads: Any, *, replace: bool) -> None:
        keys = v.check_ids(ids)
        n = len(keys)
        data = self._pool_vectors(self._check_vectors(vectors, n))
        payload_objs, payload_texts = v.check_payloads(payloads, n)
        if n == 0:
            return
        with self._mutex, self._lock:
            self._refresh()
            with self._catalog.transaction():
                existing = self._catalog.live_seqs(keys)
                if existing and not replace:
                    first = next(k for k in keys if k in existing)
                    raise DuplicateId(f"id {first!r} already exists; use upsert to replace it")
                self._catalog.delete_seqs(existing.values())
                first_seq = self._catalog.allocate_seqs(n)
                seqs = np.arange(first_seq, first_seq + n, dtype=np.int64)
                self._catalog.insert_items(
                    ItemRow(int(s), k, t) for s, k, t in zip(seqs, keys, payload_texts,
                                                             strict=True))
                for name, arr in data.items():
                    self._catalog.insert_vectors(
                        name, ((int(s), np.ascontiguousarray(a).tobytes())
                               for s, a in zip(seqs, arr, strict=True)))
            self._version = self._catalog.data_version()
            if existing:
                self._live.kill(list(existing))
            self._live.append(seqs, keys, payload_objs)
            for name, arr in data.items():
                self._growing[name].extend(seqs, arr)
            self._invalidate()
            if self._growing_live() >= self._segment_rows:
                self._seal()

    def delete(self, ids: Sequence[int | str]) -> int:
        """Delete items by id; ids that do not exist are ignored. Returns how many were deleted."""
        keys = v.check_ids(ids)
        with self._mutex, self._lock:
            self._refresh()
            with self._catalog.transaction():
                existing = self._catalog.live_seqs(keys)
                self._catalog.delete_seqs(existing.values())
            self._version = self._catalog.data_version()
            self._live.kill(list(existing))
            self._invalidate()
            return len(existing)

    def _invalidate(self) -> None:
        for seg in self._segments:
            seg.alive = None

    def _growing_live(self) -> int:
        g = next(iter(self._growing.values()))
        return int(isin_sorted(g.seqs.view, self._live.live_seqs()).sum()) if len(g) else 0

    def flush(self) -> None:
        """Seal the growing segment into memory-mapped segment files."""
        with self._mutex, self._lock:
            self._refresh()
            self._seal()

    def _seal(self) -> None:
        g0 = next(iter(self._growing.values()))
        if len(g0) == 0:
            return
        alive = isin_sorted(g0.seqs.view, self._live.live_seqs())
        rows = np.flatnonzero(alive)
        if len(rows):
            seqs = g0.seqs.view[rows]
            arrays: dict[str, np.ndarray] = {"seqs": seqs}
            for name, g in self._growing.items():
                d = g.data
                arrays |= _field_arrays(name, d.subset(rows) if isinstance(d, TokenSets)
                                        else d[rows])
            self._commit_segments([arrays], remove=[], drop_upto=int(g0.seqs.view[-1]))
            _merge.after_seal(self)  # tiered merges (their outputs get indexes before commit)
            self._ensure_indexes()
        else:
            with self._catalog.transaction():
                self._catalog.register_segments([], [], int(g0.seqs.view[-1]))
            self._version = self._catalog.data_version()
        self._growing = {n: GrowingField(s, v.storage_dtype(s)) for n, s in self._fields.items()}
        self._catalog.reclaim()

    def _commit_segments(self, outputs: list[dict[str, np.ndarray]], remove: list[str],
                         drop_upto: int | None) -> None:
        """Write segment files, then register them (and retire ``remove``) in one transaction."""
        folder = self.path / SEGMENTS
        rows = []
        for arrays in outputs:
            seqs = arrays["seqs"]
            name = f"seg-{int(seqs[0]):012d}-{int(seqs[-1]):012d}-{token_hex(4)}"
            manifest = write_segment(folder, name, arrays)
            rows.append(SegmentRow(name, len(seqs), int(seqs[0]), int(seqs[-1]), manifest))
        with self._catalog.transaction():
            self._catalog.register_segments(rows, remove, drop_upto)
        self._version = self._catalog.data_version()
        gone = set(remove)
        kept = [s for s in self._segments if s.row.name not in gone]
        self._segments = sorted(kept + [self._open_segment(r) for r in rows],
                                key=lambda s: s.row.min_seq)
        for name in remove:
            shutil.rmtree(folder / name, ignore_errors=True)

    def compact(self) -> None:
        """Seal, then rewrite the segments with deleted rows (and runs of small segments)
        without them, streaming: memory stays bounded whatever the segments' size."""
        with self._mutex, self._lock:
            self._refresh()
            self._seal()
            _merge.compact(self)
            self._ensure_indexes()

    def merge(self, *, force: bool = False) -> None:
        """Merge sealed segments by the tiered merge policy (which also runs after every
        seal), or with ``force`` into the fewest segments of up to
        ``MergePolicy.max_segment_rows`` rows (as ``create_index`` does first)."""
        with self._mutex, self._lock:
            self._refresh()
            if force:
                _merge.before_index(self, None)
            else:
                _merge.after_seal(self)
            self._ensure_indexes()

    def _merge_rows(self, parts: list[tuple[_Segment, np.ndarray]]) -> dict[str, np.ndarray]:
        arrays = {"seqs": np.concatenate([s.seqs[r] for s, r in parts])}
        for name, spec in self._fields.items():
            if isinstance(spec, Dense):
                arrays[name] = np.concatenate([s.fields[name][r] for s, r in parts])  # type: ignore[index]
            else:
                sets = [s.fields[name][int(i)] for s, r in parts for i in r]
                arrays |= _field_arrays(name, TokenSets.from_list(
                    sets, spec.dim, v.storage_dtype(spec)))
        return arrays

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._mutex:
            self._refresh()
            return len(self._live)

    def __contains__(self, key: object) -> bool:
        with self._mutex:
            self._refresh()
            return key in self._live.pos

    def __iter__(self) -> Iterator[int | str]:
        """Iterate the ids of live items (in insertion/update order)."""
        with self._mutex:
            self._refresh()
            live = self._live
            keys = [live.keys[p] for p in np.flatnonzero(live.alive.view)]
        return iter(keys)

    def get(self, ids: Sequence[int | str]) -> list[Item | None]:
        """Fetch items by id, in bulk; ``None`` where an id does not exist."""
        keys = v.check_ids(ids)
        return self._consistent(self._get, keys)

    def _get(self, keys: list[int | str]) -> list[Item | None]:
        live = self._live
        seqs = {k: int(live.seqs.view[live.pos[k]]) for k in keys if k in live.pos}
        rows = self._read(self._catalog.items_by_seqs, list(seqs.values()))
        out: list[Item | None] = []
        for k in keys:
            if k not in seqs:
                out.append(None)
                continue
            seq = seqs[k]
            if seq not in rows or rows[seq][0] != k:  # the mirror matched the catalog's version
                raise CorruptFile(str(self._catalog.path), f"item {k!r} (seq={seq}) is missing "
                                  "from the items table")
            out.append(Item(k, json.loads(rows[seq][1]), self._vectors_of(seq)))
        return out

    def _read(self, fn: Any, *args: Any) -> Any:
        """A catalog read inside :meth:`_consistent`'s pinned snapshot."""
        version, result = self._catalog.read(fn, *args)
        if version != self._version:  # cannot happen inside a pinned snapshot
            raise CorruptFile(str(self._catalog.path), "read outside the mirror's snapshot")
        return result

    def _consistent(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` in one pinned read snapshot, reloading the mirror first if it is stale.

        Every catalog read of ``fn`` (payloads, SQL filters) sees the snapshot the mirror was
        built from, however fast other processes commit. The one thing that forces a retry is
        a compaction that deleted segment files after the snapshot was taken.
        """
        with self._mutex:
            for _ in range(_RETRIES):
                try:
                    with self._catalog.pinned():
                        version, _ = self._catalog.read(int)
                        if version != self._version:
                            self._load()
                        return fn(*args)
                except CorruptFile:
                    if self._catalog.data_version() == self._version:
                        raise  # nothing moved: real damage
            raise Locked(f"{self.name}: segment files were replaced {_RETRIES} times during "
                         "a read")

    def _current(self, fn: Any, *args: Any) -> Any:
        """Run ``fn``, which reads only the in-memory mirror, on a mirror that is up to date.

        Cheaper than :meth:`_consistent` (one ``PRAGMA data_version``, no read transaction):
        ``fn`` reads no catalog row, and segment files stay readable through their maps even
        if another process's compaction deletes them meanwhile.
        """
        with self._mutex:
            if self._catalog.data_version() == self._version:
                return fn(*args)
        return self._consistent(fn, *args)

    def _vectors_of(self, seq: int) -> dict[str, np.ndarray]:
        g0 = next(iter(self._growing.values()))
        i = int(np.searchsorted(g0.seqs.view, seq))
        if i < len(g0) and g0.seqs.view[i] == seq:
            return {n: np.array(g.row(i)) for n, g in self._growing.items()}
        for seg in self._segments:
            if seg.row.min_seq <= seq <= seg.row.max_seq:
                j = int(np.searchsorted(seg.seqs, seq))
                if j < len(seg.seqs) and seg.seqs[j] == seq:
                    return {n: np.array(d[j]) for n, d in seg.fields.items()}
        raise CorruptFile(str(self._catalog.path), f"item seq={seq} has no vectors")

    def select(self, filter: Mapping[str, Any] | None) -> np.ndarray:
        """Sorted seqs of the live items matching ``filter`` (the selection searches use)."""
        node = parse_filter(filter)
        return self._consistent(self._select, node)

    def _select(self, node: Any) -> np.ndarray:
        live = self._live
        if isinstance(node, MatchAll):
            return live.live_seqs()

        def sql_mask(sub: Any) -> np.ndarray:
            where, params = to_sql(sub)
            seqs = np.array(self._read(self._catalog.item_seqs_matching, where, params),
                            dtype=np.int64)
            mask = np.zeros(live.size, dtype=bool)
            mask[np.searchsorted(live.seqs.view, np.sort(seqs))] = True
            return mask

        mask = compile_filter(node, n=live.size, columns=live.columns, sql_mask=sql_mask)
        return live.seqs.view[mask & live.alive.view]

    def _field(self, name: str | None) -> tuple[str, FieldSpec]:
        if name is None:
            if len(self._fields) != 1:
                raise UnknownField(f"field: this collection has several vector fields "
                                   f"{list(self._fields)}; name one")
            name = next(iter(self._fields))
        if name not in self._fields:
            raise UnknownField(f"field: expected one of {list(self._fields)}, got {name!r}")
        return name, self._fields[name]

    def search(self, query: Any, k: int = 10, *, field: str | None = None,
               filter: Mapping[str, Any] | None = None, target_recall: float | None = None,
               ef: int | None = None, nprobe: int | None = None,
               oversample: float | None = None, candidates: int | None = None,
               rerank_depth: int | None = None, model: str | None = None) -> SearchResult:
        """Top-k search of one query or a batch, optionally filtered by payload.

        Dense fields take a ``(dim,)`` vector (1-D result) or an ``(nq, dim)`` batch (2-D).
        Multi fields take one ``(tokens, dim)`` token set or a list of them, scored by MaxSim.
        Without an index (see :meth:`create_index`) the search is exact. With one, sealed
        segments are searched through it: ``target_recall`` picks the calibrated parameters
        (reported with the recall estimate in ``info``), or ``ef``/``nprobe``/``oversample``
        set them explicitly. A Multi field's index (``FDE...`` or ``TokenIndex...``) takes
        ``candidates`` (first-stage rows), ``rerank_depth`` (how many get exact MaxSim),
        ``nprobe`` and ``ef``; ``info`` then reports the stages and candidate counts.
        ``model`` names the model version that embedded the query (see :meth:`register_model`):
        another version than the field's is mapped into its space.
        """
        k = v.check_k(k)
        name, spec = self._field(field)
        self._check_model_arg(model)
        queries, single = (None, False) if model is not None else v.check_query(spec, query)
        node = None if filter is None else parse_filter(filter)
        if target_recall is not None and not (isinstance(target_recall, float | int)
                                              and 0 < target_recall <= 1):
            raise InvalidArgument(f"target_recall: expected a number in (0, 1], got "
                                  f"{target_recall!r}")
        params: Any = None
        if isinstance(spec, Multi):
            params = self._multi_params(ef=ef, nprobe=nprobe, oversample=oversample,
                                        candidates=candidates, rerank_depth=rerank_depth)
        elif (candidates, rerank_depth) != (None, None):
            raise InvalidArgument("search: candidates/rerank_depth apply to Multi fields; "
                                  f"field {name!r} is Dense")
        elif (ef, nprobe, oversample) != (None, None, None):
            params = _query_params(ef, nprobe, oversample)
        if model is not None:
            ids, scores, info, single = self._search_model(query, k, name, model, node,
                                                           target_recall, params)
        else:
            run = self._consistent if node is not None else self._current
            ids, scores, info = run(self._search, queries, k, name, spec, node, target_recall,
                                    params)
        if single:
            return SearchResult(ids[0], scores[0], info)
        return SearchResult(ids, scores, info)

    def _search(self, queries: Any, k: int, name: str, spec: FieldSpec, node: Any,
                target_recall: float | None, params: Any, *, use_index: bool = True,
                restrict: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        # restrict: sorted seqs to search among instead of a filter (model upgrades)
        selected = restrict if node is None else self._select(node)
        used: list[dict[str, Any]] = []
        nq = len(queries)
        topk = TopK(nq, k)
        live = self._live.live_seqs()
        blocks: list[tuple[np.ndarray, Any, _Segment | None]] = [
            (self._growing[name].seqs.view, self._growing[name].data, None)]
        blocks += [(s.seqs, s.fields[name], s) for s in self._segments]
        indexed: list[tuple[np.ndarray, np.ndarray, _Segment]] = []
        for seqs, data, seg in blocks:
            if not len(seqs):
                continue
            mask = self._block_mask(seqs, live, seg)
            if selected is not None:
                sel = isin_sorted(seqs, selected)
                mask = sel if mask is None else (mask & sel)
            if use_index and seg is not None and name in seg.indexes:
                if isinstance(data, TokenSets):  # pushes into topk
                    used.append(self._search_multi_index(name, seg.indexes[name][1], queries,
                                                         k, data, seqs, mask, target_recall,
                                                         params, topk))
                    continue
                p, estimate = self._index_params(name, seg.indexes[name][1], target_recall,
                                                 params)
                s, rows = seg.indexes[name][1].search(queries, k, params=p, selection=mask,
                                                      rerank=data)
                indexed.append((s, rows, seg))
                used.append({"params": None if p is None else p.to_dict(),
                             "recall_estimate": estimate})
                continue
            if isinstance(data, TokenSets):
                scan_multi(queries, data.tokens, data.offsets, seqs, topk,
                           mask=mask)
            else:
                scan_dense(queries, data, seqs, topk, metric=spec.metric,
                           mask=mask)
        if len(indexed) == 1 and not topk.pushed:  # one block answered: nothing to merge
            scores, rows, seg = indexed[0]
            ids = self._row_keys(seg)[np.maximum(rows, 0)]
            if rows[:, -1].min() < 0:  # pads trail each row
                ids[rows < 0] = None
        else:
            for s, rows, seg in indexed:
                found = np.where(rows >= 0, seg.seqs[np.maximum(rows, 0)], -1)
                for i in range(nq):
                    topk.push(s[i:i + 1], found[i], row=i)
            scores, seqs = topk.result()
            ids = self._live.seqs_to_keys(seqs)
        info: dict[str, Any] = {"strategy": "index" if used else "exact", "field": name,
                                "selected": None if selected is None else len(selected)}
        if used and isinstance(spec, Multi):
            info["segments"] = {"indexed": len(used), "exact": len(blocks) - len(used)}
            info |= self._multi_info(name, used)
        elif used:
            info["index"] = self._index_specs[name]
            info["segments"] = {"indexed": len(used), "exact": len(blocks) - len(used)}
            info["params"] = used[0]["params"]
            estimates = [u["recall_estimate"] for u in used]
            info["recall_estimate"] = (None if None in estimates else min(estimates))
        return ids, scores, info

    def _row_keys(self, seg: _Segment) -> np.ndarray:
        """External id of every row of ``seg`` (``None`` where the item is gone), cached: a
        seq names one version of one item for good, so the ids never go stale."""
        if seg.row_keys is None:
            seqs = np.asarray(seg.seqs)
            known = isin_sorted(seqs, self._live.seqs.view)
            keys = np.full(len(seqs), None, dtype=object)
            keys[known] = self._live.seqs_to_keys(seqs[known])
            seg.row_keys = keys
        return seg.row_keys

    def _block_mask(self, seqs: np.ndarray, live: np.ndarray, seg: _Segment | None
                    ) -> np.ndarray | None:
        """Alive mask of a block; ``None`` when every row is alive."""
        if seg is not None and seg.alive is not None:
            return None if seg.all_alive else seg.alive
        mask = isin_sorted(seqs, live)
        all_alive = bool(mask.all())
        if seg is not None:
            seg.alive, seg.all_alive = mask, all_alive
        return None if all_alive else mask

    def info(self) -> dict[str, Any]:
        """Counts, schema, segments and bytes on disk."""
        with self._mutex:
            self._refresh()
            g0 = next(iter(self._growing.values()))
            disk = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
            return {
                "name": self.name,
                "count": len(self._live),
                "schema": self.schema.to_dict(),
                "models": {f: m.to_dict() for f, m in self._models.items()},
                "segment_rows": self._segment_rows,
                "growing_rows": len(g0),
                "segments": [{"name": s.row.name, "rows": s.row.nrows} for s in self._segments],
                "indexes": self.index_info(),
                "bytes_on_disk": disk,
            }

    def close(self) -> None:
        with self._mutex:
            self._catalog.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, count={len(self._live)}, fields={list(self._fields)})"
