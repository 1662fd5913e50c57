"""A collection: durable items (id, vectors, JSON payload) with exact and indexed search.

The facade validates input once, then delegates to the engine's parts (see
``docs/ARCHITECTURE.md``): the segment store (catalog, live table, growing buffers, sealed
segments; every write), the index manager, the search executor (which searches an immutable
snapshot without holding a lock) and the upgrade service (embedders, model versions,
mappings, backfill). No business logic lives here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _validate as v
from ._kernels._numba import numba_is_warm, warm_after
from .engine import fusion as fusion_
from .engine import relevance as relevance_
from .engine.indexes import INDEXES
from .engine.search import NeedsCatalog, SearchExecutor
from .engine.store import CATALOG, SEGMENTS, SegmentStore
from .engine.upgrade import Backfill, Embedders
from .errors import CorruptFile, InvalidArgument, PolyvecError
from .fields import kind_of
from .filters import parse_filter
from .spec import CollectionSchema, FieldSpec, ModelSpec
from .storage import Catalog
from .types import SearchResult

__all__ = ["Collection", "Item"]

DEFAULT_SEGMENT_ROWS = 50_000


@dataclass(frozen=True)
class Item:
    """One stored item, as returned by :meth:`Collection.get`."""

    id: int | str
    payload: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(repr=False)


class Collection:
    """Use :meth:`polyvec.Database.create_collection` / ``get_collection`` to get one."""

    def __init__(self, path: Path, *, lock_timeout: float = 10.0, verify: bool = True) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._store = store = SegmentStore(self.path, lock_timeout=lock_timeout, verify=verify)
        self._indexes = store.indexes
        self._executor = SearchExecutor(store, store.indexes)
        self._indexes.search = self._executor.search  # calibration searches through it
        self._text = Embedders(store, self)
        self._upgrade = Backfill(store, self._executor, self._text, self)
        store.open()

    @classmethod
    def create(cls, path: Path, schema: CollectionSchema, *, segment_rows: int,
               lock_timeout: float = 10.0) -> Collection:
        meta = {"schema": schema.to_dict(), "segment_rows": segment_rows}
        Catalog.create(path / CATALOG, meta).close()
        (path / SEGMENTS).mkdir()
        (path / INDEXES).mkdir()
        return cls(path, lock_timeout=lock_timeout)

    @property
    def schema(self) -> CollectionSchema:
        return self._store.schema

    @property
    def _fields(self) -> dict[str, FieldSpec]:  # models.report reads it
        return self._store.fields

    # -- writing --------------------------------------------------------------------------------

    def add(self, ids: Sequence[int | str], vectors: Mapping[str, Any] | Any = None,
            payloads: Sequence[dict[str, Any] | None] | None = None) -> None:
        """Insert new items; raises ``DuplicateId`` (and writes nothing) if any id exists."""
        self._write(ids, vectors, payloads, replace=False)

    def upsert(self, ids: Sequence[int | str], vectors: Mapping[str, Any] | Any = None,
               payloads: Sequence[dict[str, Any] | None] | None = None) -> None:
        """Insert items, replacing (vectors and payload) any that already exist."""
        self._write(ids, vectors, payloads, replace=True)

    def _write(self, ids: Any, vectors: Any, payloads: Any, *, replace: bool,
               stored: bool = False) -> None:
        keys = v.check_ids(ids)
        n = len(keys)
        data = self._store.check_vectors(vectors, n, stored=stored)
        payload_texts, payload_objs = v.check_payloads(payloads, n)
        if n == 0:
            return
        # the indexed columns copy the values they keep out of the caller's dicts (scalars,
        # list elements), so the caller may mutate its dicts afterwards
        self._store.write(keys, data, payload_objs if self._store.schema.indexed else None,
                          payload_texts, replace=replace)

    def delete(self, ids: Sequence[int | str]) -> int:
        """Delete items by id; ids that do not exist are ignored. Returns how many were deleted."""
        return self._store.delete(v.check_ids(ids, ordered=False))

    def verify(self) -> None:
        """Check the whole collection now and raise ``CorruptFile`` naming what is damaged.

        An open checks what it reads before using it (segment and index files by CRC-32,
        catalog rows by their checksums) and runs SQLite's whole-file integrity check of the
        catalog in the background: the first call after that check fails raises its error,
        and writes wait for it. ``verify`` waits for it, then reads and checks every item row
        (which searches do not read: ids and indexed values come from the segments)."""
        self._store.check_all()

    def flush(self) -> None:
        """Seal the growing segment into memory-mapped segment files now (after the
        background seal an add may have started, see :meth:`wait_for_maintenance`)."""
        self._store.flush()

    def compact(self) -> None:
        """Seal, then rewrite the segments with deleted rows (and runs of small segments)
        without them, streaming: memory stays bounded whatever the segments' size."""
        self._store.compact()

    def merge(self, *, force: bool = False) -> None:
        """Merge sealed segments by the tiered merge policy (which also runs after every
        seal), or with ``force`` into the fewest segments of up to
        ``MergePolicy.max_segment_rows`` rows (as ``create_index`` does first)."""
        self._store.merge(force=force)

    def create_index(self, field: str, spec: Any, *,
                     sample_queries: np.ndarray | None = None) -> None:
        """Build ``spec`` over every sealed segment of ``field``; the growing rows are sealed
        first when there are enough of them to index (1,000 for a Dense field), so a
        collection indexed after a bulk load scans none of its rows exactly.

        Dense fields take a single-vector factory string (e.g. ``"HNSW32,SQ8,Refine"``) or an
        ``IndexSpec``; each segment's index is calibrated on ``sample_queries`` (recommended:
        real queries; they are stored and reused for segments sealed later) or, without them,
        on pseudo-queries drawn from the data, which overestimate recall for queries unlike
        the documents. Multi fields take ``"FDE(r=..,k=..,d=..[,final=..]),<stack>"`` or
        ``"TokenIndex(nbits=..)"`` (see :func:`polyvec.factory.parse_multi_index`); their
        candidates are reranked by exact MaxSim, so ``sample_queries`` does not apply.
        """
        self._indexes.create_index(field, spec, sample_queries=sample_queries)

    def index_info(self) -> dict[str, Any]:
        """Per indexed field: spec, segments indexed, RAM bytes per vector (per token for
        multi-vector indexes), calibration and the LID of a sample of the sealed vectors; as
        of the current snapshot (no lock, as :meth:`info`)."""
        return self._indexes.index_info(self._snapshot().segments)

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of live items, from the current snapshot (no lock: a writer of this
        handle sealing or building an index does not hold it up)."""
        return len(self._snapshot().live_seqs)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, np.integer | np.str_):
            key = key.item()
        if isinstance(key, bool) or not isinstance(key, int | str) or (
                isinstance(key, int) and not -(1 << 63) <= key < (1 << 63)) or (
                isinstance(key, str) and not v._utf8(key)):
            return False
        st = self._store
        ok, seqs = st.read_at(self._snapshot(), lambda view: view.guard(view.live_seqs, [key]))
        if ok:  # no lock, as get
            return bool(seqs)
        return bool(st.consistent(lambda: st.read(st.catalog.live_seqs, [key])))

    def __iter__(self) -> Iterator[int | str]:
        """Iterate the ids of live items (in insertion/update order), as of the current
        snapshot (no lock, as :meth:`__len__`)."""
        return iter(self._snapshot().live_keys())

    def get(self, ids: Sequence[int | str]) -> list[Item | None]:
        """Fetch items by id, in bulk; ``None`` where an id does not exist.

        Read from the current snapshot and this thread's own catalog connection when that
        connection sees the snapshot's state (no lock: a writer of this handle sealing or
        building an index does not hold it up), else under the mutex."""
        keys = v.check_ids(ids)
        st = self._store
        snap = self._snapshot()
        got = st.items_at(snap, keys)
        if got is None:
            return st.consistent(self._get, keys)
        return self._items(keys, *got, lambda seq: st.vectors_of(snap, seq))

    def _get(self, keys: list[int | str]) -> list[Item | None]:
        st = self._store
        # the catalog's key index answers id -> seq inside the mirror's pinned snapshot
        seqs = st.read(st.catalog.live_seqs, keys)
        rows = st.read(st.catalog.items_by_seqs, list(seqs.values()))
        snap = st.snap  # the mirror's, published by the sync consistent() ran if any
        assert snap is not None
        return self._items(keys, seqs, rows, lambda seq: st.vectors_of(snap, seq))

    def _items(self, keys: list[int | str], seqs: Mapping[Any, int],
               rows: Mapping[int, tuple[Any, str]], vectors: Any) -> list[Item | None]:
        st = self._store
        out: list[Item | None] = []
        for k in keys:
            if k not in seqs:
                out.append(None)
                continue
            seq = seqs[k]
            if seq not in rows or rows[seq][0] != k:  # the mirror matched the catalog's version
                raise CorruptFile(str(st.catalog.path), f"item {k!r} (seq={seq}) is missing "
                                  "from the items table")
            out.append(Item(k, json.loads(rows[seq][1]), vectors(seq)))
        return out

    def select(self, filter: Mapping[str, Any] | None) -> np.ndarray:
        """Sorted seqs of the live items matching ``filter`` (the selection searches use),
        built as a search builds it (no lock when the indexed columns answer the filter)."""
        node = parse_filter(filter)
        snap, mask = self._selection(node)
        if mask is None:
            return snap.live_seqs.copy()
        return snap.seqs[mask]

    def find(self, filter: Mapping[str, Any] | None = None) -> list[int | str]:
        """The ids of the live items matching ``filter`` (every item's with ``None``), in
        insertion/update order: the selection a filtered search makes, as ids (for deleting
        or fetching what a filter picks)."""
        node = parse_filter(filter)
        snap, mask = self._selection(node)
        if mask is None:
            return snap.live_keys()
        return list(snap.keys.take(np.flatnonzero(mask)).tolist())

    def search(self, query: Any, k: int = 10, *, field: str | None = None,
               filter: Mapping[str, Any] | None = None, target_recall: float | None = None,
               ef: int | None = None, nprobe: int | None = None,
               oversample: float | None = None, candidates: int | None = None,
               rerank_depth: int | None = None, model: str | None = None,
               fusion: str | None = None, weights: Mapping[str, float] | None = None,
               min_score: Any = None, min_relevance: float | None = None) -> SearchResult:
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

        Sparse fields take a sparse vector or a list of them; BM25 fields a text or a list.

        A **hybrid** query (no ``field=``) is a dict of field -> that field's query
        (``{"dense": v, "bm25": "text"}``): each field's top ``max(k, 100)`` (filtered
        alike) is fused by ``fusion`` (``"rrf"``, the default, ``"weighted"`` or ``"dbsf"``; see
        :mod:`polyvec.engine.fusion`) with per-field ``weights``; ``info["hits"]`` says each
        hit's rank and score in every list that has it (a list per query for a batch), and
        ``info["retrievers"]`` each field's own ``info``.

        ``min_score`` drops hits scoring under it (for a hybrid query, a dict of field ->
        threshold applied to each field's list before fusion); ``min_relevance`` drops hits
        whose probability of relevance, by the field's :meth:`calibrate_relevance` model, is
        under it (``info["relevance"]`` holds each kept hit's). Dropped hits leave empty
        slots (``None``, ``-inf``) at the end.

        Searches from several threads run in parallel: each reads the snapshot published by
        the last write and holds no lock while it scans (see ``docs/ARCHITECTURE.md``).
        """
        if isinstance(filter, list | tuple):  # one filter per query of a batch
            return self._per_query_filters(
                query, k, filter, dict(field=field, target_recall=target_recall, ef=ef,
                                       nprobe=nprobe, oversample=oversample,
                                       candidates=candidates, rerank_depth=rerank_depth,
                                       model=model, fusion=fusion, weights=weights,
                                       min_score=min_score, min_relevance=min_relevance))
        hybrid = field is None and isinstance(query, Mapping) and any(isinstance(f, str)
                                                                      for f in query)
        if not hybrid and (min_score is not None or min_relevance is not None):
            res = self.search(query, k, field=field, filter=filter, target_recall=target_recall,
                              ef=ef, nprobe=nprobe, oversample=oversample,
                              candidates=candidates, rerank_depth=rerank_depth, model=model,
                              fusion=fusion, weights=weights)
            return self._thresholded(res, self._store.field(field)[0], min_score,
                                     min_relevance)
        if hybrid:
            if min_relevance is not None:
                raise InvalidArgument("search: min_relevance applies to one field's search "
                                      "(calibrate_relevance calibrates a field); a hybrid "
                                      "query takes min_score per field")
            return self._hybrid(query, k, filter, fusion, weights, min_score,
                                {"target_recall": target_recall, "ef": ef, "nprobe": nprobe,
                                 "oversample": oversample, "candidates": candidates,
                                 "rerank_depth": rerank_depth, "model": model})
        if fusion is not None or weights is not None:
            raise InvalidArgument("search: fusion and weights apply to a hybrid query (a dict "
                                  "of field -> query)")
        quick = model is None and candidates is None and rerank_depth is None
        node = None if filter is None else parse_filter(filter)  # parsed once, for either path
        if not numba_is_warm():  # a process's first searches: numba loads after each one
            with warm_after():
                return self._search(query, k, field, node, target_recall, ef, nprobe,
                                    oversample, candidates, rerank_depth, model, quick)
        if quick:  # a built collection's common case (see SearchExecutor.quick)
            got = self._executor.quick(query, k, field, target_recall, ef, nprobe, oversample,
                                       node)
            if got is not None:
                return got
        return self._search(query, k, field, node, target_recall, ef, nprobe, oversample,
                            candidates, rerank_depth, model, False)

    def _per_query_filters(self, query: Any, k: int, filters: Sequence[Any],
                           knobs: dict[str, Any]) -> SearchResult:
        """A batch whose query i has its own filter ``filters[i]`` (HQI's batched filtered
        queries): the queries sharing a filter (equal parsed trees) are searched together, in
        one call that compiles their selection once and scans it once for all of them (an
        index scans a batch's selected rows with one matrix product), and the answers go
        back in query order. ``info["filter_groups"]``: the distinct filters, and each
        group's own ``info`` under ``"groups"``."""
        if isinstance(query, np.ndarray):
            if query.ndim != 2:
                raise InvalidArgument(f"search: one filter per query takes a batch of queries; "
                                      f"got an array of shape {query.shape}")
            n = len(query)
        elif isinstance(query, list | tuple):
            n = len(query)
        else:
            raise InvalidArgument("search: one filter per query takes a batch of queries (a "
                                  f"2-D array or a list), got {type(query).__name__}")
        if len(filters) != n:
            raise InvalidArgument(f"search: expected one filter per query ({n}), got "
                                  f"{len(filters)} filters")
        if not n:  # an empty batch: whatever the search says of one
            return self.search(query, k, **knobs)
        groups: dict[str, list[int]] = {}
        first: dict[str, Any] = {}
        known: dict[int, str] = {}  # id of a filter object met already -> its key
        for i, f in enumerate(filters):
            key = known.get(id(f))  # (a batch often repeats one filter object: parsed once)
            if key is None:
                key = known[id(f)] = "None" if f is None else repr(parse_filter(f))  # checked
            groups.setdefault(key, []).append(i)
            first.setdefault(key, f)
        got = []
        for key, members in groups.items():
            at = np.asarray(members)
            sub = query[at] if isinstance(query, np.ndarray) else [query[i] for i in members]
            got.append((at, self.search(sub, k, filter=first[key], **knobs)))
        width = max(res.ids.shape[1] for _, res in got)
        ids = np.full((n, width), None, dtype=object)
        scores = np.full((n, width), -np.inf, dtype=np.float32)
        for at, res in got:
            ids[at, :res.ids.shape[1]], scores[at, :res.ids.shape[1]] = res.ids, res.scores
        return SearchResult(ids, scores, {
            "filter_groups": len(groups),
            "groups": [res.info | {"queries": len(at)} for at, res in got]})

    def fit_fusion(self, queries: Sequence[Mapping[str, Any]], qrels: Sequence[Any], *,
                   fusion: str = "weighted", k: int = 10, step: float = 0.1,
                   filter: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The fusion weights that rank labelled queries best: ``queries`` are hybrid queries
        (dicts of field -> query, one field set), ``qrels[i]`` query i's relevant ids (an
        id, a list of ids, or ``{id: grade}``). Every weighting on a grid of ``step`` (the
        weights summing to 1, a field's 0 included) is scored by mean nDCG@``k`` of its fusion
        of each field's filtered top ``max(k, 100)``; returns ``{"fusion", "weights",
        "ndcg@k", "queries", "grid"}``: pass ``weights`` to :meth:`search`. Fit on some
        queries and measure on others: the score here is on the queries it was fitted on."""
        k = v.check_k(k)
        _labelled(queries, qrels, "fit_fusion")
        if isinstance(step, bool) or not isinstance(step, float | int) or not 0 < step <= 0.5 \
                or abs(round(1 / step) * step - 1) > 1e-9:
            raise InvalidArgument(f"fit_fusion: step: expected 1/n for an int n >= 2, got "
                                  f"{step!r}")
        fields = None
        for i, q in enumerate(queries):
            if not isinstance(q, Mapping) or not q:
                raise InvalidArgument(f"fit_fusion: queries[{i}]: expected a dict of field -> "
                                      f"query, got {type(q).__name__}")
            fields = fields or list(q)
            if list(q) != fields:
                raise InvalidArgument(f"fit_fusion: queries[{i}]: expected the fields "
                                      f"{fields}, got {list(q)}")
        fusion_.check_weights(fusion, None, fields or [])
        depth = max(k, fusion_.DEPTH)
        lists = []
        for q in queries:
            lists.append({f: fusion_.hits(self.search(fq, depth, field=f, filter=filter))
                          for f, fq in q.items()})
        return fusion_.fit(lists, [_grades(r) for r in qrels], fusion, k, float(step))

    def calibrate_relevance(self, queries: Sequence[Any], qrels: Sequence[Any], *,
                            field: str | None = None, method: str = "isotonic", k: int = 10,
                            filter: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Fit and keep (in the catalog) the field's map from score to probability of
        relevance (see :mod:`polyvec.engine.relevance`), from the top ``k`` hits of labelled
        ``queries`` (``qrels[i]``: query i's relevant ids, as :meth:`fit_fusion` takes them);
        ``search(..., min_relevance=p)`` then uses it. Returns ``{"field", "method",
        "pairs", "relevant", "model"}``. Measure the cut on other queries than these."""
        k = v.check_k(k)
        name, _ = self._store.field(field)
        if method not in relevance_.METHODS:
            raise InvalidArgument(f"calibrate_relevance: method: expected one of "
                                  f"{list(relevance_.METHODS)}, got {method!r}")
        _labelled(queries, qrels, "calibrate_relevance")
        scores = np.full((len(queries), k), -np.inf)  # each query's hits, best first
        labels = np.zeros(scores.shape, bool)
        for i, (q, rel) in enumerate(zip(queries, qrels, strict=True)):
            grades = _grades(rel)
            ids, s = fusion_.hits(self.search(q, k, field=name, filter=filter))
            scores[i, :len(s)] = s
            labels[i, :len(ids)] = [grades.get(x, 0) > 0 for x in ids]
        filled = labels[np.isfinite(scores)]
        if not filled.any() or filled.all():
            raise InvalidArgument(f"calibrate_relevance: the top {k} hits hold "
                                  f"{'no' if not filled.any() else 'only'} relevant items: "
                                  "nothing to tell them apart by")
        model = relevance_.fit(scores, labels, method)
        st = self._store
        with st.mutex, st.lock:
            st.refresh()
            with st.catalog.transaction():
                kept = {**st.catalog.read_meta().get("relevance", {}), name: model}
                st.catalog.set_meta({"relevance": kept})
            st.meta = {**st.meta, "relevance": kept}
        return {"field": name, "method": method, "pairs": len(filled),
                "relevant": int(filled.sum()), "model": model}

    def _thresholded(self, res: SearchResult, name: str, min_score: Any,
                     min_relevance: Any) -> SearchResult:
        """``res`` with the hits under ``min_score``, or under ``min_relevance`` by the
        field's calibration, dropped (empty slots at the end)."""
        keep = np.ones(res.scores.shape, bool)
        info = dict(res.info)
        if min_score is not None:
            keep &= res.scores >= v.check_min_score(min_score)
        if min_relevance is not None:
            if isinstance(min_relevance, bool) or not isinstance(min_relevance, int | float) \
                    or not 0 <= min_relevance <= 1:
                raise InvalidArgument(f"min_relevance: expected a number in [0, 1], got "
                                      f"{min_relevance!r}")
            model = self._store.meta.get("relevance", {}).get(name)
            if model is None:
                raise InvalidArgument(f"min_relevance: field {name!r} has no relevance "
                                      "calibration (see calibrate_relevance)")
            p = relevance_.probabilities(model, res.scores)
            keep &= p >= min_relevance
        order = np.argsort(~keep, axis=-1, kind="stable")  # the kept hits first, in order
        keep = np.take_along_axis(keep, order, axis=-1)
        ids = np.take_along_axis(res.ids, order, axis=-1)
        ids[~keep] = None
        scores = np.where(keep, np.take_along_axis(res.scores, order, axis=-1),
                          np.float32(-np.inf)).astype(np.float32)
        if min_relevance is not None:
            info["relevance"] = np.where(keep, np.take_along_axis(p, order, axis=-1),
                                         np.nan).tolist()
        return SearchResult(ids, scores, info)

    def _hybrid(self, queries: Mapping[str, Any], k: int, filter: Mapping[str, Any] | None,
                fusion: str | None, weights: Mapping[str, float] | None, min_score: Any,
                knobs: dict[str, Any]) -> SearchResult:
        """:meth:`search` of a dict of field -> query: each field's list, then one fusion."""
        return hybrid_search(self.search, self._store.field, lambda: len(self), queries, k,
                             filter, fusion, weights, min_score, knobs)

    def _search(self, query: Any, k: int, field: str | None, node: Any,
                target_recall: float | None, ef: int | None, nprobe: int | None,
                oversample: float | None, candidates: int | None, rerank_depth: int | None,
                model: str | None, quick: bool, memo: dict[str, Any] | None = None
                ) -> SearchResult:
        """:meth:`search` with the filter parsed (``node``; ``None``: no filter); ``quick``:
        an unfiltered call is first offered to the quick path; ``memo``: the statistics a
        BM25 query binds to, in place of this collection's (see :meth:`_search_as`)."""
        if quick and node is None:
            got = self._executor.quick(query, k, field, target_recall, ef, nprobe, oversample)
            if got is not None:
                return got
        k = v.check_k(k)
        st = self._store
        name, spec = st.field(field)
        kind = kind_of(spec)
        self._upgrade._check_model_arg(model)
        queries, single = (None, False) if model is not None else kind.check_query(spec, query)
        if target_recall is not None and not (isinstance(target_recall, float | int)
                                              and 0 < target_recall <= 1):
            raise InvalidArgument(f"target_recall: expected a number in (0, 1], got "
                                  f"{target_recall!r}")
        params = kind.search_params(name, ef=ef, nprobe=nprobe, oversample=oversample,
                                    candidates=candidates, rerank_depth=rerank_depth)
        if model is not None:
            ids, scores, info, single = self._upgrade._search_model(query, k, name, model, node,
                                                                    target_recall, params)
        else:
            snap, selected = self._selection(node)
            k = v.cap_k(k, len(snap.live_seqs), 0 if queries is None else len(queries))
            ids, scores, info = self._executor.search(snap, queries, k, name, spec, selected,
                                                      target_recall, params, memo=memo)
        if target_recall is not None and info.get("strategy") == "exact":
            info["warnings"] = [f"target_recall={target_recall} not applied: no index serves "
                                f"field {name!r} yet (see create_index / index_info); the "
                                "search was exact"]
        if single:
            return SearchResult(ids[0], scores[0], info)
        return SearchResult(ids, scores, info)

    # -- for the shards of a sharded collection (polyvec.distributed) ---------------------------
    def _restore(self, ids: Sequence[int | str], vectors: Mapping[str, Any],
                 payloads: Sequence[dict[str, Any] | None]) -> None:
        """Upsert items copied from another collection of this schema, their vectors as
        :meth:`get` gave them back there (pooled, quantized or analyzed already: they are
        checked, not pooled or analyzed again)."""
        self._write(ids, vectors, payloads, replace=True, stored=True)

    def _statistics(self, query: Any, field: str | None = None) -> dict[str, Any]:
        """What BM25 ``query`` (a text or a list) of ``field`` binds to here: live documents,
        their total length and each query term's document frequency, to be summed over a
        sharded collection's shards and given back to :meth:`_search_as`."""
        name, spec = self._store.field(field)
        kind = kind_of(spec)
        if not kind.stats:
            raise InvalidArgument(f"field {name!r} is not a BM25 field: its queries bind to no "
                                  "statistics")
        queries, _ = kind.check_query(spec, query)
        return self._executor.statistics(self._snapshot(), queries, name)

    def _search_as(self, query: Any, k: int, stats: dict[str, Any], *,
                   field: str | None = None, filter: Mapping[str, Any] | None = None
                   ) -> SearchResult:
        """:meth:`search` of a BM25 field scored with ``stats`` (:meth:`_statistics` summed
        over the shards) in place of this collection's own: a shard's scores are then the
        whole sharded collection's, and the shards' top-k merge by score."""
        name, spec = self._store.field(field)
        kind = kind_of(spec)
        if not kind.stats:
            raise InvalidArgument(f"field {name!r} is not a BM25 field")
        node = None if filter is None else parse_filter(filter)
        return self._search(query, k, name, node, None, None, None, None, None, None, None,
                            False, memo=kind.given(stats))

    def _snapshot(self) -> Any:
        """The snapshot a read answers from (``SegmentStore.current``: reloaded first if
        another process committed), after the handle's checks; no lock is held after."""
        self._store.check_alive(read=True)
        return self._store.current()

    def _selection(self, node: Any) -> tuple[Any, np.ndarray | None]:
        """The snapshot to search and the query's selection, built once: from the snapshot's
        frozen columns, with no lock, when they answer the filter; else with SQL (payloads no
        column holds) on this thread's catalog connection at the snapshot's state, still
        without a lock; else (the catalog moved past it) inside a pinned read under the
        mutex."""
        st = self._store
        snap = self._snapshot()
        if node is None:
            return snap, None
        ex = self._executor
        try:
            return snap, ex.select_columns(node, snap)
        except NeedsCatalog:  # SQL on this thread's catalog connection, at snap's state
            ok, mask = st.read_at(snap, lambda view: ex.select_columns(node, snap, view))
            if ok:
                return snap, mask
            return st.consistent(lambda: (st.snap, ex.select_mask(node)))

    def info(self) -> dict[str, Any]:
        """Counts, schema, segments and bytes on disk, as of the current snapshot (no lock: a
        dashboard polling it is not held up by this handle's writer)."""
        st = self._store
        snap = self._snapshot()
        growing = next(iter(snap.growing.values()))[0] if snap.growing else ()
        return {
            "name": self.name,
            "count": len(snap.live_seqs),
            "schema": st.schema.to_dict(),
            "models": {f: m.to_dict() for f, m in dict(st.models).items()},
            "segment_rows": st.segment_rows,
            "growing_rows": len(growing),
            "segments": [{"name": s.row.name, "rows": s.row.nrows} for s in snap.segments],
            "indexes": self._indexes.index_info(snap.segments),
            "bytes_on_disk": _bytes_on_disk(self.path),
            "maintenance": st.maintenance.info(),
        }

    def wait_for_maintenance(self, timeout: float | None = None) -> bool:
        """Wait until the background work of this handle is done: the seal an add asked for
        when the growing segment reached ``segment_rows`` (and the merges and index builds
        after it). ``False`` when ``timeout`` seconds passed first. Raises the error the last
        background seal failed with (its rows stay durable in the growing segment; a later
        add retries, :meth:`flush` seals now)."""
        return self._store.maintenance.wait(timeout)

    # -- embedders, model versions, mappings, backfill (the upgrade service) --------------------

    def model_of(self, field: str | None = None) -> ModelSpec | None:
        """The model recorded for ``field`` (``None`` if its vectors came without one)."""
        return self._text.model_of(field)

    def use_embedder(self, field: str, embedder: Any) -> None:
        """Attach ``embedder`` to ``field`` for :meth:`add_texts` / :meth:`search_text`.

        The first embedder attached to a field records its model; later ones must match it.
        """
        self._text.use_embedder(field, embedder)

    def embedders(self) -> dict[str, Any]:
        """The embedders attached in this process (:meth:`use_embedder`), by field."""
        return dict(self._text.embedders)

    def add_texts(self, texts: Sequence[str], ids: Sequence[int | str],
                  payloads: Sequence[dict[str, Any] | None] | None = None, *,
                  vectors: Mapping[str, Any] | None = None, upsert: bool = False,
                  batch_size: int = 32, progress: bool = False) -> None:
        """Embed ``texts`` with every field's embedder and add them (fields without an
        embedder take their vectors from ``vectors``)."""
        self._text.add_texts(texts, ids, payloads, vectors=vectors, upsert=upsert,
                             batch_size=batch_size, progress=progress)

    def search_text(self, query: str | Sequence[str], k: int = 10, *, field: str | None = None,
                    filter: Mapping[str, Any] | None = None, embedder: Any = None,
                    model: str | None = None, fields: Sequence[str] | None = None,
                    **hybrid: Any) -> SearchResult:
        """Embed ``query`` (one str or a list) with the field's embedder and search.

        ``embedder`` overrides the attached one for this call; its model must be the one the
        field's vectors were made with. ``model`` names a registered model version instead
        (``register_model``): its embedder embeds the query, which is mapped into the field's
        space when that version is not the field's own (``search(..., model=...)``). A BM25
        field takes the text itself. ``fields=["dense", "text"]`` searches several fields
        and fuses them (``fusion=``, ``weights=``, ``min_score=``: see :meth:`search`).
        """
        return self._text.search_text(query, k, field=field, filter=filter,
                                      embedder=embedder, model=model, fields=fields, **hybrid)

    def model_versions(self, field: str | None = None) -> dict[str, Any]:
        """``{"current": name, "versions": {name: ModelSpec}, "mappings": {...},
        "backfill": {...} or None}`` of a field."""
        return self._upgrade.model_versions(field)

    def register_model(self, field: str, embedder_or_spec: Any, name: str = "v2", *,
                       current: str = "v1") -> ModelSpec:
        """Add model version ``name`` to ``field`` (see
        :meth:`polyvec.engine.upgrade.Models.register_model`)."""
        return self._upgrade.register_model(field, embedder_or_spec, name, current=current)

    def fit_mapping(self, field: str, from_model: str = "v2", to_model: str = "v1",
                    **kwargs: Any) -> dict[str, Any]:
        """Fit and persist a map from ``from_model``'s space into ``to_model``'s (see
        :meth:`polyvec.engine.upgrade.Models.fit_mapping` for the keyword arguments)."""
        return _call_checked(self._upgrade.fit_mapping, "fit_mapping", field, from_model,
                             to_model, **kwargs)

    def compatibility_report(self, field: str, new_model: str = "v2", old_model: str = "v1",
                             **kwargs: Any) -> Any:
        """Measure how well ``new_model`` queries work on the ``old_model`` index (see
        :func:`polyvec.models.report.compatibility_report`)."""
        return _call_checked(self._upgrade.compatibility_report, "compatibility_report", field,
                             new_model, old_model, **kwargs)

    def backfill(self, field: str, model: str = "v2", **kwargs: Any) -> Any:
        """Re-embed every item of ``field`` with model version ``model``; resumable (see
        :meth:`polyvec.engine.upgrade.Backfill.backfill` for the keyword arguments)."""
        return _call_checked(self._upgrade.backfill, "backfill", field, model, **kwargs)

    def backfill_status(self, field: str | None = None) -> dict[str, Any] | None:
        """The progress row of a running backfill of ``field`` (``None`` when none runs)."""
        return self._upgrade.backfill_status(field)

    # what models.report calls on the collection
    def _embedder_of(self, field: str, name: str) -> Any:
        return self._upgrade._embedder_of(field, name)

    def _stored(self, field: str, keys: Sequence[Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        return self._upgrade._stored(field, keys)

    def _texts_of(self, *args: Any) -> list[str]:
        return self._upgrade._texts_of(*args)

    def _fit(self, *args: Any, **kwargs: Any) -> Any:
        return self._upgrade._fit(*args, **kwargs)

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        self._store.close()

    @property
    def alive(self) -> bool:
        """Whether this handle is open and still stands for the collection at its path."""
        try:
            self._store.check_alive()
        except PolyvecError:
            return False
        return True

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Collection({self.name!r}, count={len(self._store.live)}, "
                f"fields={list(self._store.fields)})")


def hybrid_search(search: Callable[..., SearchResult], field: Callable[[str], Any],
                  size: Callable[[], int], queries: Mapping[str, Any], k: int,
                  filter: Mapping[str, Any] | None, fusion: str | None,
                  weights: Mapping[str, float] | None, min_score: Any,
                  knobs: Mapping[str, Any]) -> SearchResult:
    """A hybrid query (a dict of field -> that field's query) checked, each field searched
    by ``search(query, depth, field=, filter=, min_score=)`` and the lists fused into
    ``min(k, size())`` slots; ``field(name)`` raises for an unknown field, ``knobs`` are the
    one-field search parameters given (any not ``None`` is refused). A collection's and a
    sharded collection's hybrid search."""
    k = v.check_k(k)
    given = sorted(n for n, x in knobs.items() if x is not None)
    if given:
        raise InvalidArgument(f"search: a hybrid query takes filter, fusion and weights; "
                              f"{given} apply to one field's search")
    for f in queries:
        field(f)  # an unknown one: UnknownField naming the fields there are
    fields = list(queries)
    method = "rrf" if fusion is None else fusion
    w = fusion_.check_weights(method, weights, fields)
    depth = max(k, fusion_.DEPTH)
    if min_score is not None and (not isinstance(min_score, Mapping) or set(min_score)
                                  - set(fields)):
        raise InvalidArgument(f"min_score: for a hybrid query, expected a dict of some of "
                              f"its fields {fields} -> threshold, got {min_score!r}")
    results = {f: search(queries[f], depth, field=f, filter=filter,
                         min_score=None if min_score is None else min_score.get(f))
               for f in fields}
    return fusion_.fuse_results(results, min(k, size()), method, w, depth)


def _bytes_on_disk(path: Path) -> int:
    """The size of every file under ``path``; files removed while it walks (a merge's
    sources) do not count."""
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if p.is_file():
                total += p.stat().st_size
    return total


def bind_args(fn: Any, what: str, *args: Any, **kwargs: Any) -> Any:
    """The arguments bound to ``fn``'s signature (an ``inspect.BoundArguments``): an
    unknown or missing one is an ``InvalidArgument`` naming ``what``, not a ``TypeError``."""
    import inspect

    try:
        return inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise InvalidArgument(f"{what}: {e}") from None


def _call_checked(fn: Any, what: str, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, the arguments checked by :func:`bind_args` first."""
    bound = bind_args(fn, what, *args, **kwargs)
    return fn(*bound.args, **bound.kwargs)


def _labelled(queries: Any, qrels: Any, what: str) -> None:
    """Labelled queries: two lists of one length, not empty (or a typed error)."""
    if not isinstance(queries, Sequence) or not isinstance(qrels, Sequence) \
            or not queries or len(queries) != len(qrels):
        raise InvalidArgument(f"{what}: expected lists of queries and of their qrels, of one "
                              "length (at least one)")


def _grades(rel: Any) -> dict[Any, float]:
    """A query's judgments: an id, a list of ids (grade 1 each), or ``{id: grade}``."""
    if isinstance(rel, Mapping):
        return {i: float(g) for i, g in rel.items()}
    if isinstance(rel, str | int):
        return {rel: 1.0}
    if isinstance(rel, Sequence | set | frozenset):
        return dict.fromkeys(rel, 1.0)
    raise InvalidArgument(f"fit_fusion: qrels: expected an id, a list of ids or {{id: grade}}, "
                          f"got {type(rel).__name__}")
