"""The search executor: one query's fan-out over a snapshot's blocks, and one merge.

A search runs on a :class:`~polyvec.engine.snapshot.Snapshot` and holds no lock: the query is
validated once by the facade, the selection (filter and not-deleted, as sorted seqs) is built
once per call, each block (the growing rows, every sealed segment) is scanned exactly or
searched through its index with that selection, and the results are merged into one top-k.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernels import TopK
from .._live import isin_sorted
from ..fields import kind_of
from ..filters import MatchAll, compile_filter, to_sql
from ..spec import FieldSpec

if TYPE_CHECKING:
    from .indexes import IndexManager
    from .snapshot import Segment, Snapshot
    from .store import SegmentStore

__all__ = ["NeedsCatalog", "SearchExecutor"]


class NeedsCatalog(Exception):
    """A filter reads a payload path that no in-memory column holds: it needs SQLite."""


class SearchExecutor:
    def __init__(self, store: SegmentStore, indexes: IndexManager) -> None:
        self.store = store
        self.indexes = indexes

    # -- selection ------------------------------------------------------------------------
    def select_columns(self, node: Any) -> np.ndarray:
        """Sorted seqs of the live items matching ``node``, from the in-memory columns only
        (raises :class:`NeedsCatalog` when a subtree needs SQL). Caller holds the mutex."""
        live = self.store.live
        if isinstance(node, MatchAll):
            return live.live_seqs()

        def sql_mask(sub: Any) -> np.ndarray:
            raise NeedsCatalog

        mask = compile_filter(node, n=live.size, columns=live.columns, sql_mask=sql_mask)
        return live.seqs.view[mask & live.alive.view]

    def select(self, node: Any) -> np.ndarray:
        """Sorted seqs of the live items matching ``node``; SQL subtrees are read inside the
        caller's pinned read snapshot (see ``Collection._consistent``)."""
        st = self.store
        live = st.live
        if isinstance(node, MatchAll):
            return live.live_seqs()

        def sql_mask(sub: Any) -> np.ndarray:
            where, params = to_sql(sub)
            seqs = np.array(st.read(st.catalog.item_seqs_matching, where, params),
                            dtype=np.int64)
            mask = np.zeros(live.size, dtype=bool)
            mask[np.searchsorted(live.seqs.view, np.sort(seqs))] = True
            return mask

        mask = compile_filter(node, n=live.size, columns=live.columns, sql_mask=sql_mask)
        return live.seqs.view[mask & live.alive.view]

    # -- search ---------------------------------------------------------------------------
    def search(self, snap: Snapshot, queries: Any, k: int, name: str, spec: FieldSpec,
               selected: np.ndarray | None, target_recall: float | None, params: Any, *,
               use_index: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Top-k of checked ``queries`` over ``snap``, among the sorted seqs ``selected``
        (``None``: every live item)."""
        kind = kind_of(spec)
        used: list[dict[str, Any]] = []
        nq = len(queries)
        topk = TopK(nq, k)
        gseqs, gdata = snap.growing[name]
        if callable(gdata):  # packed on first use (Multi)
            gdata = gdata()
        blocks: list[tuple[np.ndarray, Any, Segment | None]] = [(gseqs, gdata, None)]
        blocks += [(s.seqs, s.fields[name], s) for s in snap.segments]
        indexed: list[tuple[np.ndarray, np.ndarray, Segment]] = []
        for seqs, data, seg in blocks:
            if not len(seqs):
                continue
            mask = snap.block_mask(seqs, seg)
            if selected is not None:
                sel = isin_sorted(seqs, selected)
                mask = sel if mask is None else (mask & sel)
            entry = seg.indexes.get(name) if use_index and seg is not None else None
            if entry is not None:
                idx = entry[1]
                p = self.indexes.params(name, spec, idx, target_recall, params)
                s, rows, seg_info = self.indexes.search_segment(name, spec, idx, queries, k,
                                                                data, mask, p)
                indexed.append((s, rows, seg))  # type: ignore[arg-type]
                used.append(seg_info)
                continue
            kind.scan(spec, queries, data, seqs, topk, mask)
        if len(indexed) == 1 and not topk.pushed:  # one block answered: nothing to merge
            scores, rows, seg = indexed[0]
            ids = snap.row_keys(seg)[np.maximum(rows, 0)]
            pads = rows < 0
            if pads.any():
                ids[pads] = None
        else:
            for s, rows, seg in indexed:
                found = np.where(rows >= 0, seg.seqs[np.maximum(rows, 0)], -1)
                topk.push(s, found)  # each query with its own candidates
            scores, seqs = topk.result()
            ids = snap.seqs_to_keys(seqs)
        info: dict[str, Any] = {"strategy": "index" if used else "exact", "field": name,
                                "selected": None if selected is None else len(selected)}
        if used:
            scanned = sum(1 for b in blocks if len(b[0])) - len(used)  # not the empty growing
            info["segments"] = {"indexed": len(used), "exact": scanned}
            info |= self.indexes.search_info(name, spec, used)
        return ids, scores, info
