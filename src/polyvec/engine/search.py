"""The search executor: one query's fan-out over a snapshot's blocks, and one merge.

A search runs on a :class:`~polyvec.engine.snapshot.Snapshot` and holds no lock: the query is
validated once by the facade, the selection (filter and not-deleted, as a mask over the live
table's positions) is built once per call, each block (the growing rows, every sealed
segment) is scanned exactly or searched through its index with that selection, and the
results are merged into one top-k. One indexed segment and no growing rows (a built
collection) take a short path: one index call, ids by one gather. There, a search unfiltered
or filtered on paths the columns hold, whose snapshot is current (the commit stamp unchanged),
goes through :meth:`SearchExecutor.quick`: what it repeats is made once per snapshot (a
:class:`Plan`), and once per setting and filter the bound index call and the info it reports.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import limits
from .._kernels import TopK
from ..errors import CorruptFile, PolyvecError
from ..fields import kind_of
from ..fields.base import FieldKind
from ..filters import In, MatchAll, compile_filter, count_bound, rows_by_value, to_sql
from ..index.base import FEW_EXACT, exact_topk
from ..spec import FieldSpec
from ..types import SearchResult

if TYPE_CHECKING:
    from .indexes import IndexManager
    from .snapshot import Snapshot
    from .store import SegmentStore

__all__ = ["NeedsCatalog", "Plan", "SearchExecutor"]

MAX_SETTINGS = 64  # bound calls a plan keeps (settings seen on one snapshot)


POST_FRACTION = 0.02  # a new filter matching at least this share first tries post-filtering
POST_DEPTH = 1.5  # ... the unfiltered top POST_DEPTH * k, where k of them must pass
POST_BREADTH = 1.25  # ... under target_recall, walking at the calibrated ef times this
POST_SAMPLE = 1024  # rows the share is measured on

SELECTIONS = 32  # selections kept per snapshot (see SearchExecutor.select_columns)
SELECTION_BYTES = 64 << 20  # and their bytes in all (one byte a live-table position)


class NeedsCatalog(Exception):
    """A filter reads a payload path that no in-memory column holds: it needs SQLite."""


class Plan:
    """What an unfiltered search of one field repeats on a snapshot with one indexed segment
    and no growing rows to search (a built collection): the segment's index entry, alive
    mask and row ids, and per ``(k, params, target_recall)`` the bound index call (see
    :meth:`IndexManager.prepare_segment`) with the info it reports and the calibration table
    it was made with. Made on the snapshot's first such search, dropped with the snapshot."""

    __slots__ = ("name", "spec", "kind", "check", "seg", "entry", "mask", "keys", "live",
                 "calls")

    def __init__(self, name: str, spec: FieldSpec, kind: FieldKind, seg: Any,
                 entry: tuple[str, Any], mask: np.ndarray | None, keys: np.ndarray,
                 live: int) -> None:
        self.name, self.spec, self.kind, self.seg, self.entry = name, spec, kind, seg, entry
        self.check = kind.query_checker(spec)
        self.mask, self.keys, self.live = mask, keys, live
        # knobs -> (bound index call, info, calibration table, info's nested dicts, k capped,
        # whether the call reports its plan: a filtered search's, see VectorIndex.search)
        self.calls: dict[Any, tuple[Any, dict[str, Any], Any, tuple[str, ...], int,
                                    bool]] = {}


class SearchExecutor:
    def __init__(self, store: SegmentStore, indexes: IndexManager) -> None:
        self.store = store
        self.indexes = indexes

    # -- selection ------------------------------------------------------------------------
    # A selection is a bool mask over the live table's positions (the snapshot's ``seqs``),
    # alive items only: built once per call, then gathered per block through the block's
    # cached positions (``Snapshot.positions``).
    def select_columns(self, node: Any, snap: Snapshot, catalog: Any = None,
                       key: Any = None) -> np.ndarray:
        """The selection of ``node`` in ``snap``, from its frozen columns: no lock, so a
        filtered search runs while a writer of this handle seals, merges or builds an index.
        A subtree on a payload path no column holds is read with SQL on ``catalog`` (a
        reader's connection at ``snap``'s state, see ``SegmentStore.read_at``); without one
        it raises :class:`NeedsCatalog`.

        Kept on the snapshot for the next search with the same filter (a tenant's, a
        category's: compiling is a pass over every row, ~0.4 ms at 1,000,000 items), keyed by
        :func:`_filter_key` (``key``, where the caller has it), up to ``SELECTIONS`` of them
        and ``SELECTION_BYTES`` in all. Nothing writes into a selection: searches read it and
        take views of it."""
        if key is None:
            key = _filter_key(node)
        kept = snap.selections.get(key)
        if kept is not None:
            return kept

        def sql_mask(sub: Any) -> np.ndarray:
            if catalog is None:
                raise NeedsCatalog
            return _sql_mask(catalog.guard, catalog, sub, snap.seqs)

        n = len(snap.seqs)
        if isinstance(node, MatchAll):
            mask = np.ones(n, dtype=bool)
        else:
            mask = compile_filter(node, n=n, columns=snap.columns, sql_mask=sql_mask)
        alive = snap.alive()
        if alive is not None:
            mask = mask & alive
        if len(snap.selections) < SELECTIONS and \
                (len(snap.selections) + 1) * n <= SELECTION_BYTES:
            snap.selections[key] = mask
        return mask

    def select_mask(self, node: Any) -> np.ndarray:
        """The selection of ``node``; SQL subtrees are read inside the caller's pinned read
        snapshot (see ``SegmentStore.consistent``)."""
        st = self.store
        return self._mask(node, lambda sub: _sql_mask(st.read, st.catalog, sub,
                                                      st.live.seqs.view))

    def select(self, node: Any) -> np.ndarray:
        """Sorted seqs of the live items matching ``node`` (SQL as :meth:`select_mask`)."""
        return self.store.live.seqs.view[self.select_mask(node)]

    def _mask(self, node: Any, sql_mask: Any) -> np.ndarray:
        live = self.store.live
        if isinstance(node, MatchAll):
            return live.alive.view.copy()
        mask = compile_filter(node, n=live.size, columns=live.columns, sql_mask=sql_mask)
        return mask & live.alive.view

    # -- search ---------------------------------------------------------------------------
    def quick(self, query: Any, k: Any, field: Any, target_recall: Any, ef: Any, nprobe: Any,
              oversample: Any, node: Any = None) -> SearchResult | None:
        """A search of a dense array ``query`` (one query or a batch), unfiltered or with
        a parsed filter ``node`` the snapshot's columns answer, in the
        common case, as :meth:`search`'s short path answers it, without repeating what
        cannot have changed since the snapshot's last such search; ``None``: the caller
        takes the general path (anything unusual, including every argument the general
        path refuses, except a query or knob the field's kind rejects: that raises here as
        it would there, the checks before it having passed).

        The snapshot is the published one when the commit stamp says nobody committed since
        the last check (what ``SegmentStore.current`` would search, with no lock taken), else
        ``current()``'s after the handle's checks (see ``Collection._selection``). A
        setting is looked up by its knobs' values and types: one found was checked when it
        was first made (:meth:`_first`)."""
        st = self.store
        if (type(k) is not int or k < 1 or type(query) is not np.ndarray
                or (field is not None and type(field) is not str) or st.dropped or st.closed):
            return None
        if st.catalog.stamp.unchanged():
            snap = st.snap
            assert snap is not None
        else:  # the general path's checks (the stat, SQLite's data version): it raises theirs
            try:
                st.check_alive(read=True)
                snap = st.current()
            except PolyvecError:
                return None
        plan = snap.plans.get(field, False)
        if plan is False:
            plan = snap.plans[field] = self._plan(snap, field)
        if plan is None or plan.seg.indexes.get(plan.name) is not plan.entry:
            return None
        queries, single = plan.check(query)
        shown = None if node is None else _filter_key(node)
        key = _setting(k, ef, nprobe, oversample, target_recall, shown)
        try:
            call = plan.calls.get(key)
        except TypeError:  # an unhashable knob: the general path says what is wrong
            return None
        bound = None
        if call is None and node is not None and shown not in snap.selections:  # a new one
            bound = count_bound(node, snap.columns)  # (an id list: counted, no pass)
            if len(queries) == 1:  # loose filters need no selection
                got = self._post_filter(snap, plan, queries, single, k, target_recall, ef,
                                        nprobe, oversample, node, bound)
                if got is not None:
                    return got
        found = self._rows(snap, plan, queries, k, target_recall, ef, nprobe, oversample, key,
                           call, node, shown, bound)
        if found is None:
            return None
        scores, rows, info = found
        if single:
            return SearchResult.made(plan.keys[rows][0], scores[0], info)
        return SearchResult.made(plan.keys[rows], scores, info)

    def _rows(self, snap: Snapshot, plan: Plan, queries: Any, k: int, target_recall: Any,
              ef: Any, nprobe: Any, oversample: Any, key: Any, call: Any, node: Any,
              shown: str | None, bound: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """:meth:`quick`'s search on ``plan``: the scores, segment rows and info, through the
        setting's bound call ``call`` (``plan.calls[key]``) or, where there is none yet (or
        the calibration changed since), :meth:`_first`. ``bound``: a new filter's
        :func:`count_bound`, where one is known; at most :data:`FEW_EXACT` on a dense field,
        its rows are read by value (:func:`rows_by_value`) and scored by :meth:`_few`, with
        no selection made."""
        if call is None or (target_recall is not None
                            and call[2] is not self.indexes.calibration.get(plan.name)):
            mask, selected = plan.mask, None
            if bound is not None and bound <= FEW_EXACT and plan.kind.name == "dense":
                rows = self._rows_by_value(snap, plan, node)
                if rows is not None:
                    data = plan.seg.fields[plan.name]
                    return self._few(plan, queries, k, key, data, rows)
            if node is not None:  # the selection (kept on the snapshot), as rows of the segment
                try:
                    selected = self.select_columns(node, snap, key=shown)
                except NeedsCatalog:
                    return None
                mask = snap.select_rows(selected, plan.seg)
                data = plan.seg.fields[plan.name]
                if plan.kind.name == "dense" and np.count_nonzero(mask) <= FEW_EXACT:
                    return self._few(plan, queries, k, key, data, np.flatnonzero(mask))
            return self._first(snap, plan, queries, k, target_recall, ef, nprobe, oversample,
                               key, mask, selected)
        if not 0 < call[4] * len(queries) <= limits.MAX_RESULT_SLOTS:
            return None
        info = call[1].copy()
        for f in call[3]:
            info[f] = info[f].copy()
        if call[5]:  # this call's own plan (a filter's: scan or walk, nodes scored)
            plan_now: dict[str, Any] = {}
            scores, rows = call[0](queries, report=plan_now)
            info["plan"] = plan_now
        else:
            scores, rows = call[0](queries)
        return scores, rows, info

    def _post_filter(self, snap: Snapshot, plan: Plan, queries: Any, single: bool, k: int,
                     target_recall: Any, ef: Any, nprobe: Any, oversample: Any, node: Any,
                     bound: int | None) -> SearchResult | None:
        """A new filter's search without its selection, where the filter keeps the query's
        own neighbourhood: the unfiltered top ``POST_DEPTH * k``, then the filter evaluated
        on those candidates only; where ``k`` of them pass, they are the answer (every
        matching item scoring above the k-th to pass is among the candidates). ``None``
        where the filter matches under :data:`POST_FRACTION` of :data:`POST_SAMPLE` rows
        (the selection is cheap to scan), reads SQL, or fewer than ``k`` pass (the filter is
        not the query's neighbourhood): the caller compiles the selection and plans.

        Compiling a filter is a pass over every row (a 500-id ``$in`` over 58,026 rows:
        0.08 ms, as long as the walk), and a filter made per query (a user's own, a list of
        the query's clusters) finds none kept on the snapshot. ``bound``: the filter's
        :func:`count_bound` (an id list's count: no pass over the rows)."""
        n = len(snap.seqs)
        if bound is not None and (bound < POST_FRACTION * n or isinstance(node, In)):
            fraction: float | None = bound / max(n, 1)  # (one leaf: its count, not a bound)
        else:
            sample = snap.memo.get("post sample")
            if sample is None:
                sample = snap.memo["post sample"] = np.unique(
                    np.linspace(0, n - 1, min(n, POST_SAMPLE)).astype(np.intp))
            fraction = self._share(node, snap, sample)
        if fraction is None or fraction < POST_FRACTION:
            return None
        estimate = None
        if target_recall is not None:  # the calibrated breadth, widened (_deeper)
            table = self.indexes.calibration.get(plan.name)
            if table is None or ef is not None or nprobe is not None or oversample is not None \
                    or type(target_recall) not in (float, int) or not 0 < target_recall <= 1:
                return None  # (the general path says what is wrong, if anything is)
            p, estimate = table.lookup(target_recall)
            ef, nprobe, oversample = _deeper(p.ef), _deeper(p.nprobe), p.oversample
        wide = min(plan.live, math.ceil(k * POST_DEPTH))
        key = _setting(wide, ef, nprobe, oversample, None, None)
        found = self._rows(snap, plan, queries, wide, None, ef, nprobe, oversample, key,
                           plan.calls.get(key), None, None)
        if found is None:
            return None
        scores, rows, info = found
        if estimate is not None:
            info = dict(info, recall_estimate=estimate)
        got = rows[0] >= 0
        pos = snap.positions(plan.seg)[rows[0][got]]
        passed = compile_filter(node, n=n, columns=snap.columns, sql_mask=_no_catalog,
                                rows=pos)  # (the columns hold every path: see _share)
        keep = np.flatnonzero(got)[passed][:k]
        if len(keep) < min(k, plan.live):
            return None
        info = dict(info, selected=None, plan={
            "strategy": "post-filter", "selected": round(fraction * plan.live),
            "candidates": int(np.count_nonzero(got)), "passed": int(np.count_nonzero(passed))})
        ids, top = plan.keys[rows[0][keep]], scores[0][keep]
        if single:
            return SearchResult.made(ids, top, info)
        return SearchResult.made(ids[None], top[None], info)

    def _rows_by_value(self, snap: Snapshot, plan: Plan, node: Any) -> np.ndarray | None:
        """The rows of ``plan``'s segment holding live items ``node`` matches, read by value
        (:func:`rows_by_value`); ``None`` where they cannot be (then a selection is made)."""
        try:
            pos = rows_by_value(node, snap.columns, n=len(snap.seqs), sql_mask=_no_catalog)
        except NeedsCatalog:
            return None
        if pos is None:
            return None
        alive = snap.alive()
        if alive is not None:
            pos = pos[alive[pos]]
        return snap.rows_at(pos, plan.seg)

    def _few(self, plan: Plan, queries: Any, k: int, key: Any, data: np.ndarray,
             rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """At most ``FEW_EXACT`` selected ``rows`` of ``plan``'s dense segment ``data``:
        every one scored exactly, by one product and one sort, with no index call and
        nothing to plan (a filter that picks a few items: a tenant's, a user's own); kept as
        the setting's bound call ``plan.calls[key]`` for the next search with this filter."""
        k, n_sel = min(k, plan.live), len(rows)
        fn = functools.partial(exact_topk, x=data, k=k, metric=plan.spec.metric, rows=rows)
        what = {"strategy": "exact", "selected": n_sel, "scored": float(n_sel)}
        info = {"strategy": "exact", "field": plan.name, "selected": n_sel, "plan": what}
        if len(plan.calls) >= MAX_SETTINGS:
            plan.calls.clear()
        plan.calls[key] = (fn, info, self.indexes.calibration.get(plan.name), ("plan",), k,
                           False)
        scores, rows = fn(queries)
        return scores, rows, {**info, "plan": dict(what)}

    def _share(self, node: Any, snap: Snapshot, rows: np.ndarray) -> float | None:
        """The share of the live items at positions ``rows`` that ``node`` matches (``None``
        where it reads a path no column holds)."""
        try:
            hit = compile_filter(node, n=len(snap.seqs), columns=snap.columns,
                                 sql_mask=_no_catalog, rows=rows)
        except NeedsCatalog:
            return None
        alive = snap.alive()
        if alive is not None:
            live = alive[rows]
            return int(np.count_nonzero(hit & live)) / max(1, int(np.count_nonzero(live)))
        return int(np.count_nonzero(hit)) / max(1, len(rows))

    def _plan(self, snap: Snapshot, field: str | None) -> Plan | None:
        """``field``'s plan on ``snap``, or ``None`` where :meth:`search` would not take its
        short path (several segments, growing rows that may be returned, no index)."""
        fields = self.store.fields
        name = field
        if name is None:
            if len(fields) != 1:
                return None
            name = next(iter(fields))
        spec = fields.get(name)
        if spec is None or len(snap.segments) != 1:
            return None
        seg = snap.segments[0]
        entry = seg.indexes.get(name)
        if entry is None:
            return None
        gseqs, _ = snap.growing[name]
        if len(gseqs):
            gmask = snap.growing_mask(name, gseqs)
            if gmask is None or bool(gmask.any()):
                return None
        return Plan(name, spec, kind_of(spec), seg, entry, snap.block_mask(seg.seqs, seg),
                    snap.row_keys(seg), max(len(snap.live_seqs), 1))

    def _first(self, snap: Snapshot, plan: Plan, queries: Any, k: int, target_recall: Any,
               ef: Any, nprobe: Any, oversample: Any, key: Any, mask: np.ndarray | None,
               selected: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
        """A setting's first search on ``plan`` (with the segment's row ``mask``: its alive
        rows, or those of the filter's selection ``selected``): the facade's checks of the
        knobs, then :meth:`search`'s short path, whose info and bound index call are kept for
        the next searches with the same knobs and filter."""
        if target_recall is not None and not (isinstance(target_recall, float | int)
                                              and 0 < target_recall <= 1):
            return None  # the general path says what is wrong
        name, spec, seg = plan.name, plan.spec, plan.seg
        params = plan.kind.search_params(name, ef=ef, nprobe=nprobe, oversample=oversample,
                                         candidates=None, rerank_depth=None)
        k = min(k, plan.live)
        if not 0 < k * len(queries) <= limits.MAX_RESULT_SLOTS:
            return None
        idx, data = plan.entry[1], seg.fields[name]
        table = self.indexes.calibration.get(name)
        p = self.indexes.params(name, spec, idx, target_recall, params, mask)
        fn = self.indexes.prepare_segment(spec, idx, k, data, mask, p)
        if fn is None:  # the engine binds nothing: the general path, for this snapshot
            for f, other in list(snap.plans.items()):
                if other is plan:
                    snap.plans[f] = None
            return None
        scores, rows, seg_info = self.indexes.search_segment(name, spec, idx, queries, k, data,
                                                             mask, p)
        info = self._info(name, spec, selected, [seg_info], 1)
        nested = tuple(f for f, v in info.items() if type(v) is dict)
        if len(plan.calls) >= MAX_SETTINGS:
            plan.calls.clear()
        reports = "plan" in info and isinstance(fn, functools.partial)  # VectorIndex.search
        plan.calls[key] = (fn, {f: v.copy() if f in nested else v for f, v in info.items()},
                           table, nested, k, reports)
        return scores, rows, info

    def search(self, snap: Snapshot, queries: Any, k: int, name: str, spec: FieldSpec,
               selected: np.ndarray | None, target_recall: float | None, params: Any, *,
               use_index: bool = True, memo: dict[str, Any] | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Top-k of checked ``queries`` over ``snap``, among ``selected`` (a selection mask,
        or sorted seqs; ``None``: every live item). ``memo``: the statistics a ``stats``
        kind binds its queries to, where they are not ``snap``'s own (a shard's search
        scored as its whole sharded collection's: ``FieldKind.given``)."""
        if selected is not None and selected.dtype != np.bool_:  # sorted seqs
            pos = snap.positions_of(selected)
            selected = np.zeros(len(snap.seqs), dtype=bool)
            selected[pos[pos >= 0]] = True
        kind = kind_of(spec)
        if kind.stats:  # (BM25: the whole collection's statistics, whatever the selection)
            queries = kind.bind(spec, queries, self._blocks(snap, name),
                              snap.memo.setdefault(name, {}) if memo is None else memo)
        gseqs, _ = snap.growing[name]
        gmask = None
        if len(gseqs):  # growing rows none of which may be returned count as none
            gmask = snap.growing_mask(name, gseqs) if selected is None else \
                snap.select_by(selected, snap.positions_of(gseqs))
        growing = len(gseqs) > 0 and (gmask is None or bool(gmask.any()))
        segments = snap.segments
        if not growing and len(segments) == 1 and use_index:  # the common large case
            seg = segments[0]
            entry = seg.indexes.get(name)
            if entry is not None:
                if selected is None:
                    mask = snap.block_mask(seg.seqs, seg)
                else:
                    mask = snap.select_rows(selected, seg)
                s, rows, seg_info = self._search_index(name, spec, entry[1], queries, k,
                                                       seg.fields[name], mask, target_recall,
                                                       params)
                return snap.row_keys(seg)[rows], s, self._info(name, spec, selected,
                                                               [seg_info], 1)
        return self._fan_out(snap, queries, k, name, spec, selected, target_recall, params,
                             use_index, gmask if growing else None, growing)

    def statistics(self, snap: Snapshot, queries: Any, name: str) -> dict[str, Any]:
        """The statistics checked ``queries`` of field ``name`` (a ``stats`` kind's: BM25)
        bind to on ``snap`` (``FieldKind.statistics``)."""
        return kind_of(self.store.fields[name]).statistics(queries, self._blocks(snap, name))

    @staticmethod
    def _blocks(snap: Snapshot, name: str) -> list[tuple[Any, np.ndarray | None]]:
        """Every block's data of field ``name`` and alive mask: the growing rows, then each
        sealed segment."""
        out = []
        gseqs, gdata = snap.growing[name]
        if len(gseqs):
            out.append((gdata() if callable(gdata) else gdata, snap.growing_mask(name, gseqs)))
        out += [(seg.fields[name], snap.block_mask(seg.seqs, seg)) for seg in snap.segments
                if len(seg.seqs)]
        return out

    def _fan_out(self, snap: Snapshot, queries: Any, k: int, name: str, spec: FieldSpec,
                 selected: np.ndarray | None, target_recall: float | None, params: Any,
                 use_index: bool, gmask: np.ndarray | None, growing: bool
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Every block (the growing rows when any may be returned, with their mask
        ``gmask``; each sealed segment) searched, then one merge."""
        kind = kind_of(spec)
        used: list[dict[str, Any]] = []
        topk = TopK(len(queries), k)
        blocks = 0
        if growing:
            gseqs, gdata = snap.growing[name]
            if callable(gdata):  # packed on first use (Multi)
                gdata = gdata()
            kind.scan(spec, queries, gdata, gseqs, topk, gmask)
            blocks += 1
        segments = snap.segments
        if kind.prunes and len(segments) > 1:  # the largest first: its k-th score is the
            segments = tuple(sorted(segments, key=lambda s: -len(s.seqs)))  # others' bar
        for seg in segments:
            if not len(seg.seqs):
                continue
            blocks += 1
            mask = snap.block_mask(seg.seqs, seg) if selected is None else \
                snap.select_rows(selected, seg)
            data = seg.fields[name]
            entry = seg.indexes.get(name) if use_index else None
            if entry is None:
                kind.scan(spec, queries, data, seg.seqs, topk, mask)
                continue
            s, rows, seg_info = self._search_index(name, spec, entry[1], queries, k, data,
                                                   mask, target_recall, params)
            topk.push(s, np.where(rows >= 0, seg.seqs[np.maximum(rows, 0)], -1))
            used.append(seg_info)
        scores, seqs = topk.result()
        return snap.seqs_to_keys(seqs), scores, self._info(name, spec, selected, used, blocks)

    def _search_index(self, name: str, spec: FieldSpec, idx: Any, queries: Any, k: int,
                      data: Any, mask: np.ndarray | None, target_recall: float | None,
                      params: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        p = self.indexes.params(name, spec, idx, target_recall, params, mask)
        return self.indexes.search_segment(name, spec, idx, queries, k, data, mask, p)

    def _info(self, name: str, spec: FieldSpec, selected: np.ndarray | None,
              used: list[dict[str, Any]], blocks: int) -> dict[str, Any]:
        info: dict[str, Any] = {
            "strategy": "index" if used else "exact", "field": name,
            "selected": None if selected is None else int(np.count_nonzero(selected))}
        if used:
            info["segments"] = {"indexed": len(used), "exact": blocks - len(used)}
            info |= self.indexes.search_info(name, spec, used)
        return info


def _setting(k: Any, ef: Any, nprobe: Any, oversample: Any, target_recall: Any,
             shown: Any) -> tuple[Any, ...]:
    """The key of a plan's bound call: the knobs by value and type (``1`` and ``1.0`` are
    checked apart), and the filter's :func:`_filter_key` (``None``: unfiltered)."""
    return (k, ef, type(ef), nprobe, type(nprobe), oversample, type(oversample),
            target_recall, type(target_recall), shown)


def _filter_key(node: Any) -> Any:
    """What a filter's selection and bound calls are kept under: the tree's ``repr`` (node
    equality takes ``1``, ``1.0`` and ``True`` for one value), or for one ``$in`` over ids
    (the parser's ``In.ids``: ints only, so equal tuples are equal filters) its path and
    values, hashed rather than printed (a list of 500 ids: 0.02 ms to print)."""
    if type(node) is In and node.ids is not None:
        return ("$in", node.path, node.values)
    return repr(node)


def _deeper(breadth: int | None) -> int | None:
    """A calibrated ``ef`` or ``nprobe`` for a probe :data:`POST_DEPTH` times deeper, widened
    :data:`POST_BREADTH` times (x1.0: recall 0.946 at 50% of Debian selected; x1.25: 0.962
    and 3% fewer QPS; x1.5: 0.968 and 6% fewer)."""
    return None if breadth is None else math.ceil(breadth * POST_BREADTH)


def _no_catalog(sub: Any) -> np.ndarray:
    """``sql_mask`` where no catalog is at hand: the filter needs the general path."""
    raise NeedsCatalog


def _sql_mask(read: Any, catalog: Any, sub: Any, seqs: np.ndarray) -> np.ndarray:
    """The mask over the live-table positions ``seqs`` (sorted) of the items ``sub`` (a
    filter subtree no column holds) matches, by SQL on ``catalog`` through ``read(fn,
    *args)`` (``SegmentStore.read`` under the mutex, ``Catalog.guard`` on a reader's
    connection); ``CorruptFile`` when a matched seq is not among ``seqs``."""
    where, params = to_sql(sub)
    matched = np.sort(np.array(read(catalog.item_seqs_matching, where, params),
                               dtype=np.int64))
    pos = np.searchsorted(seqs, matched)
    if len(matched) and (pos[-1] >= len(seqs) or not np.array_equal(seqs[pos], matched)):
        raise CorruptFile(str(catalog.path), "live items outside the mirror's snapshot")
    mask = np.zeros(len(seqs), dtype=bool)
    mask[pos] = True
    return mask
