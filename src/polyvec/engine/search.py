"""The search executor: one query's fan-out over a snapshot's blocks, and one merge.

A search runs on a :class:`~polyvec.engine.snapshot.Snapshot` and holds no lock: the query is
validated once by the facade, the selection (filter and not-deleted, as a mask over the live
table's positions) is built once per call, each block (the growing rows, every sealed
segment) is scanned exactly or searched through its index with that selection, and the
results are merged into one top-k. One indexed segment and no growing rows (a built
collection) take a short path: one index call, ids by one gather.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernels import TopK
from ..fields import kind_of
from ..filters import MatchAll, compile_filter, to_sql
from ..spec import FieldSpec

if TYPE_CHECKING:
    from .indexes import IndexManager
    from .snapshot import Snapshot
    from .store import SegmentStore

__all__ = ["NeedsCatalog", "SearchExecutor"]


class NeedsCatalog(Exception):
    """A filter reads a payload path that no in-memory column holds: it needs SQLite."""


class SearchExecutor:
    def __init__(self, store: SegmentStore, indexes: IndexManager) -> None:
        self.store = store
        self.indexes = indexes

    # -- selection ------------------------------------------------------------------------
    # A selection is a bool mask over the live table's positions (the snapshot's ``seqs``),
    # alive items only: built once per call, then gathered per block through the block's
    # cached positions (``Snapshot.positions``).
    def select_columns(self, node: Any) -> np.ndarray:
        """The selection of ``node`` from the in-memory columns only (raises
        :class:`NeedsCatalog` when a subtree needs SQL). Caller holds the mutex."""
        def sql_mask(sub: Any) -> np.ndarray:
            raise NeedsCatalog

        return self._mask(node, sql_mask)

    def select_mask(self, node: Any) -> np.ndarray:
        """The selection of ``node``; SQL subtrees are read inside the caller's pinned read
        snapshot (see ``SegmentStore.consistent``)."""
        st = self.store
        live = st.live

        def sql_mask(sub: Any) -> np.ndarray:
            where, params = to_sql(sub)
            seqs = np.array(st.read(st.catalog.item_seqs_matching, where, params),
                            dtype=np.int64)
            mask = np.zeros(live.size, dtype=bool)
            mask[np.searchsorted(live.seqs.view, np.sort(seqs))] = True
            return mask

        return self._mask(node, sql_mask)

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
    def search(self, snap: Snapshot, queries: Any, k: int, name: str, spec: FieldSpec,
               selected: np.ndarray | None, target_recall: float | None, params: Any, *,
               use_index: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Top-k of checked ``queries`` over ``snap``, among ``selected`` (a selection mask,
        or sorted seqs; ``None``: every live item)."""
        if selected is not None and selected.dtype != np.bool_:  # sorted seqs
            pos = snap.positions_of(selected)
            selected = np.zeros(len(snap.seqs), dtype=bool)
            selected[pos[pos >= 0]] = True
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
        for seg in snap.segments:
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
        p = self.indexes.params(name, spec, idx, target_recall, params)
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
