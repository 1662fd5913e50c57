"""Progressive backfill: re-embed a field's items with a new model version, then switch.

:meth:`Backfill.backfill` walks the live items in seq order, ``batch_size`` at a time:
embeds their texts with the new model (outside any lock), then in ONE catalog transaction
stores the vectors in the ``shadow_vectors`` table and advances the progress row
(``backfill`` meta: model, ``done_upto`` seq, counts). A crash loses at most the batch being
embedded; a restart reads ``done_upto`` and continues, so nothing is embedded twice beyond
one batch. Items written meanwhile get seqs above ``done_upto`` and are picked up; deleted or
replaced items leave stale shadow rows that are ignored (their seq is not live).

When every live item has a shadow vector, the switch runs under the write lock: the growing
segment is sealed, every sealed segment is rewritten with the field's vectors replaced by the
shadow ones (files first), and ONE transaction registers the new segments, retires the old,
records the new model (and schema) for the field, clears the progress row and the shadow
rows. A crash before that commit leaves orphan files that the next writer removes; after it,
only old folders that are removed the same way.

During the backfill, ``search(q, model=new)`` scores migrated items natively (shadow vectors)
and the rest through the mapping, the mapped scores put on the native scale by the linear
calibration fitted with the mapping (``models.Models._search_merged``); searches never wait for the
backfill and never fail because of it.

``backfill(..., background=True)`` runs it on a thread with its own handle of the collection
(its own SQLite connection, coordinated with this one through the write lock and the data
version, exactly like another process) and returns a :class:`BackfillJob` to watch, stop or
wait on. Another process works too (open the collection there and call ``backfill``), as the
crash test does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ... import _progress
from ... import _validate as v
from ..._live import isin_sorted
from ...errors import DimensionMismatch, InvalidArgument, ModelMismatch
from ...spec import CollectionSchema, Dense, ModelSpec
from ...storage import upgrade as store
from ...storage.catalog import ItemRow, SegmentRow
from .. import hooks
from .models import Models

__all__ = ["Backfill", "BackfillJob"]


class Backfill(Models):
    """Model services plus the progressive backfill (the upgrade service of a collection)."""

    def backfill_status(self, field: str | None = None) -> dict[str, Any] | None:
        """The progress row of a running backfill of ``field`` (``None`` when none runs),
        with ``migrated`` = live items that have new-model vectors and ``total`` live items."""
        name, _ = self._dense_field(field)
        with self.store.mutex:
            self.store.refresh()
            state = self.store.meta.get("backfill", {}).get(name)
            if state is None:
                return None
            spec = self._versions(name)[state["model"]]
            _, (seqs, _) = self.store.catalog.read(store.get_shadow, self.store.catalog, name,
                                              state["model"], spec.dim)
            live = self.store.live.live_seqs()
            return {**state, "migrated": int(isin_sorted(seqs, live).sum()), "total": len(live)}

    def backfill(self, field: str, model: str = "v2", *, batch_size: int = 64,
                 text_key: str = "text", texts: Mapping[Any, str] | None = None,
                 embedder: Any = None, progress: bool = True, limit: int | None = None,
                 switch: bool = True, require_mapping: bool = True,
                 background: bool = False) -> Any:
        """Re-embed every item of ``field`` with model version ``model``; resumable.

        Parameters
        ----------
        batch_size : int
            Items per batch (one transaction each; at most one batch is redone after a crash).
        text_key, texts
            Where items' texts are: a payload key, or ``{id: text}``.
        embedder : optional
            The new model's embedder (default: the one registered, or a built-in one).
        progress : bool
            A tqdm bar on stderr.
        limit : int, optional
            Stop after this many items (the backfill stays open; call again to continue).
        switch : bool
            Switch the field to ``model`` once every item is migrated.
        require_mapping : bool
            Refuse to start without a ``model -> current`` mapping (without one, queries of
            ``model`` fail until the switch).
        background : bool
            Return at once with a :class:`BackfillJob`; the backfill runs on a thread with its
            own handle of the collection. Argument errors (unknown model, missing mapping)
            still raise here.

        Returns
        -------
        dict or BackfillJob
            ``{"model", "done_upto", "batches", "embedded", "switched"}``, or the job whose
            :meth:`BackfillJob.wait` returns it.
        """
        name, _ = self._dense_field(field)
        size = _positive("batch_size", batch_size)
        if limit is not None:
            _positive("limit", limit)
        with self.store.mutex:
            self.store.refresh()
            spec = self._versions(name).get(model)
            current = self._current_name(name)
        if spec is None:
            raise ModelMismatch(self._unknown_version(name, model))
        if current == model:
            return {"model": model, "embedded": 0, "switched": False, "done_upto": None}
        if require_mapping and (current is None or self._mapping(name, model, current) is None):
            raise ModelMismatch(f"backfill: queries of {model!r} need a mapping while the field "
                                f"is migrated; call collection.fit_mapping({name!r}, "
                                f"from_model={model!r}, to_model={current!r}) first (or pass "
                                "require_mapping=False)")
        emb = embedder if embedder is not None else self._embedder_of(name, model)
        if not background:
            return self._run_backfill(name, model, spec, emb, text_key, texts, size, limit,
                                      switch, progress)

        reopen: Any = type(self.coll)  # Collection: its own connection, like another process

        def run(stop: threading.Event) -> dict[str, Any]:
            with reopen(self.store.path, lock_timeout=self.store.lock.timeout) as own:
                return own._upgrade._run_backfill(name, model, spec, emb, text_key, texts,
                                                  size, limit, switch, progress, stop)

        return BackfillJob(self.coll, name, run)

    def _run_backfill(self, name: str, model: str, spec: ModelSpec, emb: Any, text_key: str,
                      texts: Mapping[Any, str] | None, size: int, limit: int | None,
                      switch: bool, progress: bool, stop: threading.Event | None = None
                      ) -> dict[str, Any]:
        state = self._start(name, model)
        bar = _bar(progress, len(self.coll), state.get("migrated", 0))
        try:
            state, embedded, more = self._drain(name, model, spec, emb, state, text_key, texts,
                                                size, limit, bar, stop)
        finally:
            if bar is not None:
                bar.close()
        if more or not switch:
            return {**state, "embedded": embedded, "switched": False}
        embedded += self._switch(name, model, spec, emb, text_key, texts, size)
        return {**state, "embedded": embedded, "switched": True}

    def _drain(self, name: str, model: str, spec: ModelSpec, emb: Any, state: dict[str, Any],
               text_key: str, texts: Mapping[Any, str] | None, size: int, limit: int | None,
               bar: Any = None, stop: threading.Event | None = None
               ) -> tuple[dict[str, Any], int, bool]:
        """Run batches until no item is left (or ``limit``, or ``stop`` is set); returns the
        state, how many items were embedded and whether items may be left."""
        embedded = 0
        while (limit is None or embedded < limit) and not (stop is not None and stop.is_set()):
            n = size if limit is None else min(size, limit - embedded)
            _, rows = self.store.catalog.read(store.items_after, self.store.catalog,
                                              state["done_upto"], n)
            if not rows:
                return state, embedded, False
            state = self._batch(name, model, spec, emb, rows, state, text_key, texts, size)
            embedded += len(rows)
            if bar is not None:
                bar.update(len(rows))
        return state, embedded, True

    def _start(self, name: str, model: str) -> dict[str, Any]:
        with self.store.mutex, self.store.lock:
            self.store.refresh()
            with self.store.catalog.transaction():
                meta = self.store.catalog.read_meta()
                runs = dict(meta.get("backfill", {}))
                state = runs.get(name)
                if state is not None and state["model"] != model:
                    raise InvalidArgument(f"field {name!r}: a backfill to {state['model']!r} "
                                          f"is in progress; finish it before {model!r}")
                if state is None:
                    state = {"model": model, "done_upto": -1, "migrated": 0, "batches": 0}
                    runs[name] = state
                    store.ensure_tables(self.store.catalog)
                    self.store.catalog.set_meta({"backfill": runs})
            self.store.meta = {**self.store.meta, "backfill": runs}
        return dict(state)

    def _embed_rows(self, name: str, spec: ModelSpec, emb: Any, rows: list[ItemRow],
                    text_key: str, texts: Mapping[Any, str] | None, size: int) -> np.ndarray:
        words = self._texts_of([r.key for r in rows], [json.loads(r.payload) for r in rows],
                               text_key, texts)
        vecs = np.asarray(emb.embed_documents(words, batch_size=size))
        if vecs.shape != (len(rows), spec.dim):
            raise DimensionMismatch(f"backfill embedder: expected ({len(rows)}, {spec.dim}) "
                                    f"vectors, got {vecs.shape}")
        # the checks add() applies: finite, L2-normalized under cosine
        return np.asarray(v.check_field_vectors(name, Dense(spec.dim, spec.metric), vecs,
                                                len(rows)))

    def _batch(self, name: str, model: str, spec: ModelSpec, emb: Any, rows: list[ItemRow],
               state: dict[str, Any], text_key: str, texts: Mapping[Any, str] | None,
               size: int) -> dict[str, Any]:
        """Embed one batch, then store it and the progress in one transaction."""
        vecs = self._embed_rows(name, spec, emb, rows, text_key, texts, size)
        with self.store.mutex, self.store.lock:
            with self.store.catalog.transaction():
                runs = dict(self.store.catalog.read_meta().get("backfill", {}))
                cur = runs.get(name)
                if cur is None or cur["model"] != model or cur["done_upto"] != state["done_upto"]:
                    raise InvalidArgument(f"field {name!r}: the backfill moved under us (another "
                                          "backfill of this field is running?)")
                hooks.point("backfill.before_write")
                store.put_shadow(self.store.catalog, name, model,
                                 ((r.seq, np.ascontiguousarray(x, "<f4").tobytes())
                                  for r, x in zip(rows, vecs, strict=True)))
                cur = {**cur, "done_upto": rows[-1].seq, "migrated": cur["migrated"] + len(rows),
                       "batches": cur["batches"] + 1}
                runs[name] = cur
                self.store.catalog.set_meta({"backfill": runs})
            self.store.meta = {**self.store.meta, "backfill": runs}
            self._shadows.pop((name, model), None)
        hooks.point("backfill.batch_committed")
        return dict(cur)

    def _switch(self, name: str, model: str, spec: ModelSpec, emb: Any, text_key: str,
                texts: Mapping[Any, str] | None, size: int) -> int:
        """Migrate what is left under the write lock, then swap the field in one commit."""
        hooks.point("backfill.before_switch")
        with self.store.mutex, self.store.lock:
            self.store.refresh()
            # items written after the last batch
            _, embedded, _ = self._drain(name, model, spec, emb, self.store.meta["backfill"][name],
                                         text_key, texts, size, None)
            self.store.seal()
            _, (s_seqs, s_vecs) = self.store.catalog.read(store.get_shadow, self.store.catalog,
                                                          name, model, spec.dim)
            old_field = self.store.fields[name]
            new_field = Dense(spec.dim, spec.metric, old_field.dtype)
            live = self.store.live.live_seqs()
            outputs = []
            for seg in self.store.segments:
                rows_ = np.flatnonzero(isin_sorted(seg.seqs, live))
                if not len(rows_):
                    continue
                arrays = self.store.merge_rows([(seg, rows_)])
                pos = np.searchsorted(s_seqs, arrays["seqs"])
                pos = np.minimum(pos, max(len(s_seqs) - 1, 0))
                if not len(s_seqs) or not np.array_equal(s_seqs[pos], arrays["seqs"]):
                    raise InvalidArgument(f"field {name!r}: items without new-model vectors "
                                          "at the switch")
                arrays[name] = np.ascontiguousarray(s_vecs[pos].astype(
                    v.storage_dtype(new_field)))
                outputs.append(arrays)
            old = list(self.store.segments)
            catalog = self.store.catalog

            def register(new_rows: list[SegmentRow]) -> None:
                meta = catalog.read_meta()
                schema = CollectionSchema.from_dict(meta["schema"])
                fields = dict(schema.vectors)
                fields[name] = new_field
                schema = CollectionSchema(tuple(fields.items()), schema.indexed)
                models = {**meta.get("models", {}), name: spec.to_dict()}
                runs = dict(meta.get("backfill", {}))
                runs.pop(name, None)
                catalog.register_segments(new_rows, [s.row.name for s in old], None)
                store.drop_shadow(catalog, name)
                catalog.set_meta({"schema": schema.to_dict(), "models": models,
                                  "backfill": runs})

            # the field's spec changes in that commit: the store reloads instead of opening
            self.store.commit_segments(outputs, [s.row.name for s in old],
                                       register=register, reload=True)
            self.store.drop_index_folders(old)
            self.store.indexes.ensure_indexes()
            if name in self.embedders:
                self.embedders[name] = emb
        return embedded


class BackfillJob:
    """A backfill running on a background thread (``backfill(..., background=True)``).

    The thread works on its own handle of the collection, so this one keeps serving searches
    (mapped, merged, then native after the switch) while it runs. :meth:`stop` ends it after
    the batch in flight; the progress is kept and a later ``backfill`` resumes it.
    """

    def __init__(self, collection: Any, field: str,
                 target: Callable[[threading.Event], dict[str, Any]]) -> None:
        self._collection, self._field = collection, field
        self._stop = threading.Event()
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(target,), daemon=True,
                                        name=f"polyvec-backfill-{field}")
        self._thread.start()

    def _main(self, target: Callable[[threading.Event], dict[str, Any]]) -> None:
        try:
            self._result = target(self._stop)
        except BaseException as e:  # handed to wait()
            self._error = e

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> dict[str, Any] | None:
        """The collection's :meth:`~Backfill.backfill_status` of the field."""
        return self._collection.backfill_status(self._field)

    def stop(self) -> None:
        """Ask the backfill to stop after the batch in flight (it stays resumable)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the backfill ends; return its result or raise its error.

        Raises ``TimeoutError`` if it is still running after ``timeout`` seconds.
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"backfill of {self._field!r} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __repr__(self) -> str:
        state = "running" if self.running else ("failed" if self._error else "done")
        return f"BackfillJob({self._field!r}, {state})"


def _positive(label: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgument(f"{label}: expected a positive int, got {n!r}")
    return n


def _bar(progress: bool, total: int, initial: int) -> Any:
    return _progress.bar(total, "backfill", unit="item", initial=initial, enabled=progress)
