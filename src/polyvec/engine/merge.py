"""Merge policy: keep a collection's sealed segments few and large, and compact them streaming.

Every seal adds a segment, and every indexed segment costs a graph walk per query, so without
merges the search cost grows with the number of writes that built the collection. Three pure
planners pick *groups* of segments (each a run of consecutive segments, in seq order, so the
merged rows stay sorted by seq) to rewrite as one:

- :func:`plan_merges`, after every seal: tiered like Lucene's ``LogMergePolicy``. A segment's
  level is ``log(max(live, floor_rows)) / log(merge_factor)`` (small segments count as
  ``floor_rows``, so they fold into the lowest tier); from the oldest segment on, the run of
  segments down to 0.75 below the highest level is one tier, and each window of
  ``merge_factor`` consecutive segments of a tier merges (a shorter prefix when the window
  would pass ``max_segment_rows``; segments over half of it are left alone). Segments whose
  dead share passes ``max_dead_ratio`` are rewritten on their own.
- :func:`plan_force`, before an index is built: the fewest segments of at most
  ``max_segment_rows`` live rows (consecutive segments packed greedily), so one graph is
  built (and walked) per ``max_segment_rows`` rows instead of one per seal.
- :func:`plan_compaction`, for ``compact()``: the segments worth rewriting (dead rows above
  ``min_dead_ratio``, or fewer live rows than ``floor_rows``) packed into runs.

:func:`run_groups` executes a plan crash-safely: the live rows of a group are streamed into a
new segment folder (:func:`polyvec.storage.stream.write_segment_stream`, chunk by chunk, so
memory is bounded by a chunk and not by the data), its indexes are built, and the segment and
its indexes are registered and the sources retired in ONE catalog transaction; the sources'
folders are removed after it. A crash before the commit leaves orphan folders that ``open``
deletes; after it, leftover folders that ``open`` deletes too. Merges run inline, under the
caller's write lock.
"""

from __future__ import annotations

import functools
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _progress as progress
from .._kernels.sparse import Postings
from ..errors import InvalidArgument
from ..storage import segment_name
from ..storage.catalog import SegmentRow
from ..storage.stream import NpyRows, ragged_rows, write_segment_stream
from . import hooks

__all__ = ["MergePolicy", "SegmentStat", "plan_merges", "plan_force", "plan_compaction",
           "run_groups", "after_seal", "before_index", "compact", "policy_of"]

LEVEL_SPAN = 0.75  # Lucene's LogMergePolicy: one tier spans this many levels below its top
CHUNK_BYTES = 8 << 20  # rows copied per step of a merge: about this many bytes of vectors
RAGGED_PARTS = ("tokens", "indices", "values")  # entry arrays of a ragged set
PROGRESS_ROWS = 100_000  # merges (and compactions) of at least this many rows show progress



@dataclass(frozen=True)
class MergePolicy:
    """Settings of the merge planners.

    ``merge_factor`` segments of one tier merge into one; ``max_segment_rows`` caps a merged
    segment (the default keeps 2,000,000 rows, e.g. of 384-d, in one segment and one graph);
    ``floor_rows`` (``None``: the collection's ``segment_rows``) is the size every smaller
    segment counts as; a segment with more than ``max_dead_ratio`` of its rows deleted is
    rewritten after a seal.
    """

    merge_factor: int = 10
    max_segment_rows: int = 2_000_000
    floor_rows: int | None = None
    max_dead_ratio: float = 0.3

    def __post_init__(self) -> None:
        for name, lo in (("merge_factor", 2), ("max_segment_rows", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise InvalidArgument(f"{name}: expected an int >= {lo}, got {value!r}")
        fr = self.floor_rows
        if fr is not None and (isinstance(fr, bool) or not isinstance(fr, int) or fr < 1):
            raise InvalidArgument(f"floor_rows: expected None or an int >= 1, got {fr!r}")
        r = self.max_dead_ratio
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r <= 1:
            raise InvalidArgument(f"max_dead_ratio: expected a number in [0, 1], got {r!r}")


DEFAULT_POLICY = MergePolicy()


@dataclass(frozen=True)
class SegmentStat:
    """What the planners know of a segment: its rows and how many of them are deleted."""

    rows: int
    dead: int = 0

    @property
    def live(self) -> int:
        return self.rows - self.dead


def _dead_heavy(s: SegmentStat, ratio: float) -> bool:
    return s.dead > 0 and (s.live == 0 or s.dead > ratio * s.rows)


def plan_merges(stats: Sequence[SegmentStat], policy: MergePolicy = DEFAULT_POLICY, *,
                floor_rows: int = 1) -> list[tuple[int, ...]]:
    """Groups of consecutive segment positions to merge after a seal (tiered, see module).

    ``floor_rows`` applies when ``policy.floor_rows`` is ``None``. Groups are disjoint, each
    sorted, in order.

    >>> plan_merges([SegmentStat(100)] * 10, MergePolicy(merge_factor=10), floor_rows=100)
    [(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)]
    >>> plan_merges([SegmentStat(1000)] + [SegmentStat(100)] * 9, floor_rows=100)
    []
    """
    floor = max(1, policy.floor_rows or floor_rows)
    cap, mf = policy.max_segment_rows, policy.merge_factor
    n = len(stats)
    level = [math.log(max(s.live, floor)) / math.log(mf) for s in stats]
    eligible = [s.live <= cap / 2 for s in stats]
    groups: list[tuple[int, ...]] = []
    start = 0
    while start < n:
        top = max(level[start:])
        upto = max(j for j in range(start, n) if level[j] >= top - LEVEL_SPAN)
        i = start
        while i + mf <= upto + 1:
            window = range(i, i + mf)
            if not all(eligible[j] for j in window):
                i += 1
                continue
            total, length = 0, 0
            for j in window:
                if total + stats[j].live > cap:
                    break
                total += stats[j].live
                length += 1
            if length >= 2:
                groups.append(tuple(range(i, i + length)))
                i += length
            else:
                i += 1
        start = upto + 1
    taken = {j for g in groups for j in g}
    heavy: list[tuple[int, ...]] = [(j,) for j, s in enumerate(stats)
             if j not in taken and _dead_heavy(s, policy.max_dead_ratio)]
    return sorted(groups + heavy)


def _pack(stats: Sequence[SegmentStat], picked: Sequence[bool], cap: int,
          keep: Callable[[tuple[int, ...]], bool]) -> list[tuple[int, ...]]:
    """Runs of consecutive picked positions, packed greedily into groups of at most ``cap``
    live rows; the groups ``keep`` accepts."""
    groups: list[tuple[int, ...]] = []
    cur: list[int] = []
    total = 0
    for j, s in enumerate([*stats, None]):
        if s is None or not picked[j] or (cur and total + s.live > cap):
            if cur and keep(tuple(cur)):
                groups.append(tuple(cur))
            cur, total = [], 0
        if s is not None and picked[j]:
            cur.append(j)
            total += s.live
    return groups


def plan_force(stats: Sequence[SegmentStat], policy: MergePolicy = DEFAULT_POLICY
               ) -> list[tuple[int, ...]]:
    """Groups that leave the fewest segments of at most ``max_segment_rows`` live rows
    (consecutive segments packed greedily; a lone segment only if it has dead rows above
    ``max_dead_ratio``).

    >>> plan_force([SegmentStat(50), SegmentStat(50), SegmentStat(50)],
    ...            MergePolicy(max_segment_rows=100))
    [(0, 1)]
    """
    def keep(g: tuple[int, ...]) -> bool:
        return len(g) > 1 or _dead_heavy(stats[g[0]], policy.max_dead_ratio)

    return _pack(stats, [True] * len(stats), policy.max_segment_rows, keep)


def plan_compaction(stats: Sequence[SegmentStat], policy: MergePolicy = DEFAULT_POLICY, *,
                    floor_rows: int = 1, min_dead_ratio: float = 0.0
                    ) -> list[tuple[int, ...]]:
    """Groups for ``compact()``: segments with a dead share above ``min_dead_ratio`` or fewer
    live rows than the floor, packed into runs of at most ``max_segment_rows`` live rows.
    A lone small segment without dead rows is left as it is (rewriting it gains nothing).

    >>> plan_compaction([SegmentStat(100, 20), SegmentStat(100), SegmentStat(5, 1)],
    ...                 floor_rows=10)
    [(0,), (2,)]
    """
    floor = max(1, policy.floor_rows or floor_rows)
    picked = [(s.dead > 0 and s.dead > min_dead_ratio * s.rows) or s.live < floor
              for s in stats]

    def keep(g: tuple[int, ...]) -> bool:
        return len(g) > 1 or stats[g[0]].dead > 0

    return _pack(stats, picked, policy.max_segment_rows, keep)


# -- running merges on a collection ----------------------------------------------------------
#
# ``store`` is the collection's segment store (its segment list, live table, catalog, and the
# index manager that builds indexes): the functions below are what it calls after a seal, in
# compaction and before an index build.


def stats_of(store: Any) -> list[SegmentStat]:
    from .._live import isin_sorted

    live = store.live.live_seqs()
    return [SegmentStat(s.row.nrows, s.row.nrows - int(isin_sorted(s.seqs, live).sum()))
            for s in store.segments]


def policy_of(store: Any) -> MergePolicy:
    """The store's policy: its ``merge_policy`` attribute if set, else the default."""
    policy = getattr(store, "merge_policy", None)
    return policy if isinstance(policy, MergePolicy) else DEFAULT_POLICY


def after_seal(store: Any, policy: MergePolicy | None = None) -> bool:
    """The post-seal hook: run the tiered plan (until nothing is left to merge)."""
    policy = policy or policy_of(store)
    merged = False
    for _ in range(8):  # a merge can complete a tier above it: replan, a few levels at most
        groups = plan_merges(stats_of(store), policy, floor_rows=store.segment_rows)
        if not groups:
            break
        run_groups(store, groups)
        merged = True
    if merged:
        _recalibrate(store, skip=set())
    return merged


def before_index(store: Any, field: str | None, policy: MergePolicy | None = None) -> bool:
    """``create_index``'s pre-merge step: merge down to the fewest segments first (the index
    of ``field`` is not built here; ``create_index`` builds it on the merged segments)."""
    groups = plan_force(stats_of(store), policy or policy_of(store))
    skip = set() if field is None else {field}
    if groups:
        run_groups(store, groups, skip=skip)
        _recalibrate(store, skip=skip)
    return bool(groups)


def compact(store: Any, policy: MergePolicy | None = None, *,
            min_dead_ratio: float = 0.0) -> bool:
    """``compact()`` after its seal: rewrite the segments worth it, streaming."""
    groups = plan_compaction(stats_of(store), policy or policy_of(store),
                             floor_rows=store.segment_rows,
                             min_dead_ratio=min_dead_ratio)
    if groups:
        run_groups(store, groups)
        _recalibrate(store, skip=set())
    return bool(groups)


def _recalibrate(store: Any, skip: set[str]) -> None:
    manager = store.indexes
    for field in [f for specs in manager.specs.values() for f in specs]:
        if field not in skip and manager.engine_of(store.fields[field]).calibrated:
            manager.calibrate(field)


def run_groups(store: Any, groups: Sequence[tuple[int, ...]], *,
               skip: set[str] | None = None) -> None:
    """Merge each group of positions in ``store.segments`` (as the list is now) into one
    segment, one catalog transaction per group; indexes of fields in ``skip`` are not built.
    Each committed merge is published at once (a search sees the sources or the merged
    segment, never both)."""
    from .._live import isin_sorted
    from .indexes import INDEXES

    skip = skip or set()
    manager = store.indexes
    segments = list(store.segments)
    live = store.live.live_seqs()
    folder = store.path / "segments"
    for group in groups:
        sources = [segments[i] for i in group]
        keep = [np.flatnonzero(isin_sorted(np.asarray(s.seqs), live)) for s in sources]
        row = _write_merged(folder, sources, keep)
        built: list[Any] = []
        new = None
        if row is not None:
            new = store.open_segment(row)
            for field in [f for specs in manager.specs.values() for f in specs]:
                if field not in skip:
                    built += manager._build_missing(field, [new])
        hooks.point("merge.written")
        with store.catalog.transaction():
            store.catalog.register_segments([] if row is None else [row],
                                            [s.row.name for s in sources], None)
            if built:
                store.catalog.put_indexes([r for r, _, _ in built])
            cursor = store.catalog.cursor()
            hooks.point("merge.before_commit")
        store.version = store.catalog.data_version()
        store.cursor = cursor
        gone = {s.row.name for s in sources}
        kept = [s for s in store.segments if s.row.name not in gone]
        if new is not None:
            for r, _, idx in built:
                new.with_index(r.field, idx)
            kept.append(new)
        store.segments = sorted(kept, key=lambda s: s.row.min_seq)
        store.publish()
        hooks.point("merge.committed")
        for s in sources:
            shutil.rmtree(folder / s.row.name, ignore_errors=True)
            for index_folder, _ in s.indexes.values():
                shutil.rmtree(store.path / INDEXES / index_folder, ignore_errors=True)


def _write_merged(folder: Path, sources: Sequence[Any], keep: Sequence[np.ndarray]
                  ) -> SegmentRow | None:
    """Stream the kept rows of ``sources`` (in order) into a new segment folder; its catalog
    row, or ``None`` when no row is kept."""
    total = sum(len(k) for k in keep)
    if total == 0:
        return None
    readers = [{f.removesuffix(".npy"): NpyRows(folder / s.row.name / f)
                for f in s.row.manifest} for s in sources]
    # files every source has: an item sidecar some source lacks (written before sidecars
    # existed) is left out, and the merged segment's items are read from the catalog
    # derived arrays (a Sparse field's inverted lists, "<name>.post_*") are not rows: they
    # are made again from the merged rows of each field stored as indices and values
    keys = [k for k in readers[0] if ".post_" not in k and (
        not k.startswith("@") or all(k in r for r in readers[1:]))]
    readers = [{k: r[k] for k in r if k in keys or not (k.startswith("@") or ".post_" in k)}
               for r in readers]
    inverted = [k.removesuffix(".indices") for k in keys if k.endswith(".indices")]
    # a ragged array set: "<name>.offsets" and its entry arrays "<name>.<part>" (part in
    # RAGGED_PARTS), entries offsets[i]:offsets[i+1] being row i's (Multi's tokens, Sparse's
    # indices and values, a payload column's tokens; a column's kind and num are per row)
    ragged = {k.removesuffix(".offsets"): [e for e in keys if e.startswith(
        k.removesuffix("offsets")) and e.rpartition(".")[2] in RAGGED_PARTS]
        for k in keys if k.endswith(".offsets")}
    offsets = {name: [r[f"{name}.offsets"].rows(0, len(r[f"{name}.offsets"])) for r in readers]
               for name in ragged}
    entries = {e: name for name, parts in ragged.items() for e in parts}
    layout: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    for key in keys:
        base = readers[0][key]
        if key.endswith(".offsets"):
            layout[key] = (base.dtype, (total + 1,))
        elif key in entries:
            n = sum(int((off[k + 1] - off[k]).sum())
                    for off, k in zip(offsets[entries[key]], keep, strict=True))
            layout[key] = (base.dtype, (n, *base.shape[1:]))
        else:
            layout[key] = (base.dtype, (total, *base.shape[1:]))
    nonempty = [(r["seqs"], k) for r, k in zip(readers, keep, strict=True) if len(k)]
    lo = int(nonempty[0][0].rows(int(nonempty[0][1][0]), int(nonempty[0][1][0]) + 1)[0])
    hi = int(nonempty[-1][0].rows(int(nonempty[-1][1][-1]), int(nonempty[-1][1][-1]) + 1)[0])
    name = segment_name(lo, hi)
    bar = _progress(total)

    def checked() -> Iterator[dict[str, np.ndarray]]:
        prev = lo - 1
        for chunk in _chunks(readers, keep, offsets, ragged):
            s = chunk.get("seqs")
            if s is not None and len(s):
                if s[0] <= prev or not (np.diff(s) > 0).all():
                    raise ValueError("merged rows out of seq order")  # a planner bug
                prev = int(s[-1])
                if bar is not None:
                    bar.update(len(s))
            yield chunk

    try:
        manifest = write_segment_stream(folder, name, layout, checked(),
                                        functools.partial(_inverted, inverted))
    finally:
        if bar is not None:
            bar.close()
    return SegmentRow(name, total, lo, hi, manifest)


def _inverted(fields: list[str], path: Path) -> dict[str, np.ndarray]:
    """The inverted lists of the Sparse (and BM25) ``fields`` of the segment written in
    ``path``, from its memory-mapped rows."""
    out: dict[str, np.ndarray] = {}
    def load(f: str, part: str) -> np.ndarray | None:
        file = path / f"{f}.{part}.npy"
        return np.load(file, mmap_mode="r") if file.exists() else None

    for f in fields:
        indptr, indices, values = (np.load(path / f"{f}.{part}.npy", mmap_mode="r")
                                   for part in ("offsets", "indices", "values"))
        out |= Postings.file_arrays(f, Postings.build(indptr, indices, values,
                                                      load(f, "lengths")))
    return out


def _progress(rows: int) -> Any:
    """Progress of merges of at least :data:`PROGRESS_ROWS` rows (see :mod:`polyvec._progress`)."""
    return progress.bar(rows, "merging segments", min_total=PROGRESS_ROWS)


def _chunks(readers: Sequence[dict[str, NpyRows]], keep: Sequence[np.ndarray],
            offsets: dict[str, list[np.ndarray]], ragged: dict[str, list[str]]
            ) -> Iterator[dict[str, np.ndarray]]:
    """The kept rows of every source, a block of source rows at a time."""
    base_tok = dict.fromkeys(ragged, 0)  # entries written so far, per ragged field
    skip = {f"{name}.offsets" for name in ragged} | {e for es in ragged.values() for e in es}
    for name in ragged:
        yield {f"{name}.offsets": np.zeros(1, dtype=offsets[name][0].dtype)}
    for si, (files, rows) in enumerate(zip(readers, keep, strict=True)):
        if not len(rows):
            continue
        row_bytes = max(1, max(r.row_items * r.dtype.itemsize for r in files.values()))
        for name, parts in ragged.items():
            off = offsets[name][si]
            entry_bytes = sum(files[e].row_items * files[e].dtype.itemsize for e in parts)
            per_doc = (int(off[-1]) / max(1, len(off) - 1)) * entry_bytes
            row_bytes = max(row_bytes, int(per_doc))
        step = max(1, CHUNK_BYTES // row_bytes)
        n_rows = len(files["seqs"])
        for a in range(0, n_rows, step):
            b = min(n_rows, a + step)
            lo, hi = np.searchsorted(rows, [a, b])
            sel = rows[lo:hi]
            if not len(sel):
                continue
            local = sel - a
            chunk: dict[str, np.ndarray] = {}
            for key, reader in files.items():
                if key not in skip:
                    chunk[key] = reader.rows(a, b)[local]
            for name, parts in ragged.items():
                off = offsets[name][si]
                t0, t1 = int(off[a]), int(off[b])
                idx, lengths = ragged_rows(off[sel] - t0, off[sel + 1] - t0)
                for e in parts:
                    chunk[e] = files[e].rows(t0, t1)[idx]
                chunk[f"{name}.offsets"] = base_tok[name] + np.cumsum(lengths)
                base_tok[name] += int(lengths.sum())
            yield chunk
