"""Model versions per vector field, new->old mappings, and queries across model versions.

A dense field records the model that made its vectors (``ModelSpec``, see :mod:`.text`).
:meth:`Models.register_model` names model versions of a field (``"v1"``, ``"v2"``...);
the field's recorded model is its *current* version. :meth:`Models.fit_mapping` fits a
map from a new version's space into the current one (:mod:`polyvec.models.mappings`, and the
contrastive adapter of :mod:`polyvec.models.adapter` when relevance pairs are given) and
persists it in the catalog: the arrays as checksummed blobs (``model_arrays``), the record
(kind, version, specs, held-out metrics, score calibration) in the ``mappings`` meta row.
``search(q, model="v2")`` then maps new-model queries into the old space and searches the
existing index unchanged (query drift compensation); during a backfill
(:mod:`.backfill`) it merges native results over migrated items with mapped results over the
rest. Without a mapping it raises :class:`~polyvec.errors.ModelMismatch` naming the fix.

Where do paired texts come from? ``fit_mapping`` embeds stored items' texts with the new model
and pairs them with the vectors already stored (the old model is never needed again). Texts
are read from the payload key ``text_key`` (default ``"text"``); a collection that stores no
texts passes ``texts={id: text}`` for the sampled ``ids``, or ``pairs=(new_vectors,
old_vectors)`` computed elsewhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import _validate as v
from ..._kernels import TopK
from ..._live import isin_sorted
from ...errors import DimensionMismatch, InvalidArgument, ModelMismatch
from ...index import scan_dense
from ...models.mappings import LinearMap, fit_best, fit_calibration
from ...spec import Dense, FieldSpec, ModelSpec
from ...storage import upgrade as store

if TYPE_CHECKING:
    from ..search import SearchExecutor
    from ..store import SegmentStore
    from .text import Embedders

__all__ = ["Models"]

MAPPING_FORMAT = 1


def _pair_key(frm: str, to: str) -> str:
    return f"{frm}->{to}"


class Models:
    """Model versions of fields, mappings between them, and queries across versions."""

    def __init__(self, store: SegmentStore, executor: SearchExecutor, embedders: Embedders,
                 coll: Any) -> None:
        self.store = store
        self.executor = executor
        self.embedders = embedders.embedders  # field -> embedder, shared with Embedders
        self.coll = coll  # the facade: get(), iteration, search()
        self._vembedders: dict[tuple[str, str], Any] = {}
        self._maps: dict[str, LinearMap] = {}
        self._shadows: dict[tuple[str, str], tuple[int, np.ndarray, np.ndarray]] = {}

    def _search(self, queries: Any, k: int, name: str, spec: FieldSpec, node: Any,
                target_recall: float | None, params: Any, *,
                restrict: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """An executor search of the current state (caller holds the mutex), among
        ``restrict`` (sorted seqs) instead of a filter when given."""
        selected = restrict if node is None else self.executor.select(node)
        snap = self.store.snap
        assert snap is not None
        return self.executor.search(snap, queries, k, name, spec, selected, target_recall,
                                    params)

    # -- versions -------------------------------------------------------------------------------

    def _dense_field(self, field: str | None) -> tuple[str, Dense]:
        name, spec = self.store.field(field)
        if not isinstance(spec, Dense):
            raise InvalidArgument(f"field {name!r} is a {type(spec).__name__} field; model "
                                  "upgrades are supported on Dense fields")
        return name, spec

    def _versions(self, field: str) -> dict[str, ModelSpec]:
        raw = self.store.meta.get("model_versions", {}).get(field, {})
        return {n: ModelSpec.from_dict(d) for n, d in raw.items()}

    def _current_name(self, field: str) -> str | None:
        cur = self.store.models.get(field)
        return next((n for n, s in self._versions(field).items() if s == cur), None)

    def model_versions(self, field: str | None = None) -> dict[str, Any]:
        """``{"current": name, "versions": {name: ModelSpec}, "mappings": {...},
        "backfill": {...} or None}`` of a field."""
        name, _ = self._dense_field(field)
        with self.store.mutex:
            self.store.refresh()
            return {"current": self._current_name(name), "versions": self._versions(name),
                    "mappings": dict(self.store.meta.get("mappings", {}).get(name, {})),
                    "backfill": self.store.meta.get("backfill", {}).get(name)}

    def register_model(self, field: str, embedder_or_spec: Any, name: str = "v2", *,
                       current: str = "v1") -> ModelSpec:
        """Add model version ``name`` to ``field`` (a :class:`ModelSpec` or an embedder).

        The field's recorded model becomes version ``current`` if it has no name yet. A field
        without a recorded model takes this one as its model (its dim and metric must match).
        Registering the same spec under the same name again is a no-op (so every process can
        call it to attach its embedder).
        """
        fname, spec = self._dense_field(field)
        model = embedder_or_spec if isinstance(embedder_or_spec, ModelSpec) else getattr(
            embedder_or_spec, "spec", None)
        if not isinstance(model, ModelSpec):
            raise InvalidArgument(f"embedder_or_spec: expected a ModelSpec or an embedder with "
                                  f"a ModelSpec `.spec`, got {type(embedder_or_spec).__name__}")
        if model.output != "dense":
            raise ModelMismatch(f"model {model.name!r}: expected a 'dense' model for Dense "
                                f"field {fname!r}, got output {model.output!r}")
        for label, value in (("name", name), ("current", current)):
            if not isinstance(value, str) or not value or "->" in value:
                raise InvalidArgument(f"{label}: expected a non-empty str without '->', got "
                                      f"{value!r}")
        with self.store.mutex, self.store.lock:
            self.store.refresh()
            with self.store.catalog.transaction():
                meta = self.store.catalog.read_meta()
                all_versions = dict(meta.get("model_versions", {}))
                versions = dict(all_versions.get(fname, {}))
                models = dict(meta.get("models", {}))
                recorded = models.get(fname)
                if recorded is not None and recorded not in versions.values():
                    if current in versions:
                        raise InvalidArgument(f"current: name {current!r} is taken")
                    versions[current] = recorded
                if name in versions and versions[name] != model.to_dict():
                    raise ModelMismatch(f"field {fname!r}: version {name!r} is already "
                                        f"{versions[name]['name']!r} (revision "
                                        f"{versions[name]['revision']!r}), not {model.name!r}")
                other = next((n for n, d in versions.items()
                              if d == model.to_dict() and n != name), None)
                if other is not None:
                    raise InvalidArgument(f"field {fname!r}: model {model.name!r} is already "
                                          f"registered as {other!r}")
                versions[name] = model.to_dict()
                if recorded is None:
                    from .text import check_compatible

                    check_compatible(fname, spec, model)
                    models[fname] = model.to_dict()
                all_versions[fname] = versions
                self.store.catalog.set_meta({"model_versions": all_versions, "models": models})
            self.store.meta = {**self.store.meta, "model_versions": all_versions, "models": models}
            self.store.models = {f: ModelSpec.from_dict(d) for f, d in models.items()}
        if not isinstance(embedder_or_spec, ModelSpec):
            self._version_embedders()[(fname, name)] = embedder_or_spec
        return model

    def _version_embedders(self) -> dict[tuple[str, str], Any]:
        return self._vembedders

    def _embedder_of(self, field: str, name: str) -> Any:
        emb = self._version_embedders().get((field, name))
        if emb is not None:
            return emb
        spec = self._versions(field).get(name)
        if spec is None:
            raise ModelMismatch(self._unknown_version(field, name))
        if spec == self.store.models.get(field) and field in self.embedders:
            return self.embedders[field]
        from ...embed.registry import embedder_for

        emb = embedder_for(spec)
        self._version_embedders()[(field, name)] = emb
        return emb

    def _unknown_version(self, field: str, name: str) -> str:
        return (f"field {field!r} has no model version {name!r} (registered: "
                f"{sorted(self._versions(field))}); call register_model({field!r}, embedder, "
                f"name={name!r}) first")

    # -- fitting ----------------------------------------------------------------------------------

    def _texts_of(self, keys: Sequence[Any], payloads: Sequence[dict[str, Any]],
                  text_key: str, texts: Mapping[Any, str] | None) -> list[str]:
        out = []
        for k, p in zip(keys, payloads, strict=True):
            t = texts.get(k) if texts is not None else p.get(text_key)
            if not isinstance(t, str):
                raise InvalidArgument(
                    f"item {k!r} has no text: expected a str in payload key {text_key!r} "
                    "(set text_key=...), or pass texts={id: text}, or pairs=(new_vectors, "
                    "old_vectors) computed elsewhere")
            out.append(t)
        return out

    def _stored(self, field: str, keys: Sequence[Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        items = self.coll.get(list(keys))
        missing = [k for k, it in zip(keys, items, strict=True) if it is None]
        if missing:
            raise InvalidArgument(f"ids: {len(missing)} not in the collection, e.g. "
                                  f"{missing[0]!r}")
        return (np.stack([it.vectors[field] for it in items]).astype(np.float32),
                [it.payload for it in items])

    def _sample_keys(self, n: int, seed: int) -> list[Any]:
        keys = list(self.coll)
        if isinstance(n, bool) or not isinstance(n, int) or n < 4:
            raise InvalidArgument(f"sample: expected an int >= 4, got {n!r}")
        if n >= len(keys):
            return keys
        rows = np.sort(np.random.default_rng(seed).choice(len(keys), n, replace=False))
        return [keys[i] for i in rows]

    def _paired(self, field: str, frm: str, *, sample: int, pairs: Any, ids: Any,
                texts: Mapping[Any, str] | None, text_key: str, seed: int, batch_size: int,
                progress: bool) -> tuple[np.ndarray, np.ndarray]:
        if pairs is not None:
            if not (isinstance(pairs, tuple | list) and len(pairs) == 2):
                raise InvalidArgument("pairs: expected (new_vectors, old_vectors)")
            return np.asarray(pairs[0], np.float32), np.asarray(pairs[1], np.float32)
        keys = (v.check_ids(ids, ordered=False) if ids is not None
                else self._sample_keys(sample, seed))
        old, payloads = self._stored(field, keys)
        words = self._texts_of(keys, payloads, text_key, texts)
        new = self._embedder_of(field, frm).embed_documents(words, batch_size=batch_size,
                                                            progress=progress)
        return np.asarray(new, np.float32), old

    def _relevance(self, field: str, frm: str, relevance: Any, batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(relevance, tuple) and len(relevance) == 2 and isinstance(
                relevance[0], np.ndarray):
            q, keys = np.asarray(relevance[0], np.float32), list(relevance[1])
        else:
            try:
                words, ids = zip(*relevance, strict=True)
            except (TypeError, ValueError):
                raise InvalidArgument("relevance: expected [(query_text, item_id), ...] or "
                                      "(query_vectors, item_ids)") from None
            q = np.asarray(self._embedder_of(field, frm).embed_queries(
                list(words), batch_size=batch_size), np.float32)
            keys = list(ids)
        docs, _ = self._stored(field, keys)
        return q, docs

    def _fit(self, field: str, frm: str, to: str, *, sample: int = 1000, pairs: Any = None,
             ids: Any = None, texts: Mapping[Any, str] | None = None, text_key: str = "text",
             kind: str | None = None, relevance: Any = None, seed: int = 0,
             batch_size: int = 64, progress: bool = False) -> tuple[LinearMap, dict[str, Any]]:
        versions = self._versions(field)
        for n in (frm, to):
            if n not in versions:
                raise ModelMismatch(self._unknown_version(field, n))
        if self._current_name(field) != to:
            raise InvalidArgument(f"to_model: the field's stored vectors are of version "
                                  f"{self._current_name(field)!r}, got {to!r}")
        if kind == "supervised" and relevance is None:
            raise InvalidArgument("kind='supervised' needs relevance=[(query_text, item_id), "
                                  "...] pairs")
        x, y = self._paired(field, frm, sample=sample, pairs=pairs, ids=ids, texts=texts,
                            text_key=text_key, seed=seed, batch_size=batch_size,
                            progress=progress)
        src, dst = versions[frm], versions[to]
        if x.ndim != 2 or x.shape[1] != src.dim or y.ndim != 2 or y.shape[1] != dst.dim:
            raise DimensionMismatch(f"pairs: expected ({src.dim},)-d new and ({dst.dim},)-d old "
                                    f"vectors, got {x.shape} and {y.shape}")
        normalize_out = self.store.fields[field].metric == "cosine"
        m, held_out = fit_best(x, y, kind=None if kind == "supervised" else kind, seed=seed,
                               normalize_out=normalize_out)
        if relevance is not None:
            from ...models.adapter import fit_supervised

            q, docs = self._relevance(field, frm, relevance, batch_size)
            m = fit_supervised(m, q, docs, seed=seed)
        a, b = fit_calibration(m, x, y, seed=seed)
        record = {"format": MAPPING_FORMAT, "kind": m.kind, "from": src.to_dict(),
                  "to": dst.to_dict(), "params": m.params, "held_out": held_out,
                  "pairs": len(x), "calibration": [a, b], "normalize": m.normalize,
                  "created": time.time()}
        return m, record

    def fit_mapping(self, field: str, from_model: str = "v2", to_model: str = "v1", *,
                    sample: int = 1000, pairs: Any = None, kind: str | None = None,
                    relevance: Any = None, ids: Sequence[Any] | None = None,
                    texts: Mapping[Any, str] | None = None, text_key: str = "text",
                    seed: int = 0, batch_size: int = 64, progress: bool = False
                    ) -> dict[str, Any]:
        """Fit and persist a map from ``from_model``'s space into ``to_model``'s (the field's
        current model), so ``search(..., model=from_model)`` can query the existing index.

        Parameters
        ----------
        sample : int
            How many stored items (seeded random) to embed with the new model; their stored
            vectors are the old side. Ignored with ``ids`` or ``pairs``.
        pairs : (new_vectors, old_vectors), optional
            Paired vectors computed elsewhere (no embedding here).
        kind : {"procrustes", "ridge", "lowrank", "supervised"}, optional
            Force one kind; by default the unsupervised kind with the best held-out cosine is
            kept, and with ``relevance`` the contrastive adapter is trained on top of it.
        relevance : [(query_text, item_id), ...] or (query_vectors, item_ids), optional
            Relevance pairs (from logs or qrels) for the supervised adapter.
        ids, texts, text_key
            Which items to pair, and where their texts are (see the module docstring).

        Returns
        -------
        dict
            The persisted record: kind, version, held-out metrics, calibration, params.
        """
        name, _ = self._dense_field(field)
        with self.store.mutex:
            self.store.refresh()
        m, record = self._fit(name, from_model, to_model, sample=sample, pairs=pairs, ids=ids,
                              texts=texts, text_key=text_key, kind=kind, relevance=relevance,
                              seed=seed, batch_size=batch_size, progress=progress)
        key = _pair_key(from_model, to_model)
        with self.store.mutex, self.store.lock:
            self.store.refresh()
            with self.store.catalog.transaction():
                meta = self.store.catalog.read_meta()
                mappings = dict(meta.get("mappings", {}))
                per_field = dict(mappings.get(name, {}))
                version = int(per_field.get(key, {}).get("version", 0)) + 1
                owner = f"map:{name}:{key}:{version}"
                record = {**record, "version": version, "owner": owner}
                store.ensure_tables(self.store.catalog)
                store.put_arrays(self.store.catalog, owner, m.arrays())
                store.drop_arrays(self.store.catalog, f"map:{name}:{key}:", keep=owner)
                per_field[key] = json.loads(json.dumps(record))
                mappings[name] = per_field
                self.store.catalog.set_meta({"mappings": mappings})
            self.store.meta = {**self.store.meta, "mappings": mappings}
        return dict(record)

    def _mapping(self, field: str, frm: str, to: str) -> tuple[LinearMap, dict[str, Any]] | None:
        """The persisted map (inside a read snapshot), or ``None``."""
        record = self.store.meta.get("mappings", {}).get(field, {}).get(_pair_key(frm, to))
        versions = self._versions(field)
        if (record is None or frm not in versions or to not in versions
                or record["from"] != versions[frm].to_dict()
                or record["to"] != versions[to].to_dict()):
            return None
        cache = self._map_cache()
        owner = record["owner"]
        if owner not in cache:
            _, arrays = self.store.catalog.read(store.get_arrays, self.store.catalog, owner)
            if set(arrays) != {"W", "b"}:
                from ...errors import CorruptFile

                raise CorruptFile(str(self.store.catalog.path), f"mapping {owner}: arrays "
                                  f"{sorted(arrays)}, expected ['W', 'b']")
            cache[owner] = LinearMap(record["kind"], arrays["W"], arrays["b"],
                                     bool(record.get("normalize", True)), record["params"])
        return cache[owner], record

    def _map_cache(self) -> dict[str, LinearMap]:
        return self._maps

    # -- searching across versions ------------------------------------------------------------

    def _search_model(self, query: Any, k: int, name: str, model: str, node: Any,
                      target_recall: float | None, params: Any
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], bool]:
        with self.store.mutex:
            self.store.refresh()
            spec = self._versions(name).get(model)
        if spec is None:
            raise ModelMismatch(self._unknown_version(name, model))
        queries, single = v.check_query(Dense(spec.dim, spec.metric), query)
        k = v.cap_k(k, len(self.store.current().live_seqs), len(queries))
        ids, scores, info = self.store.consistent(self._search_as, queries, k, name, model, node,
                                             target_recall, params)
        return ids, scores, info, single

    def _search_as(self, queries: np.ndarray, k: int, name: str, model: str, node: Any,
                   target_recall: float | None, params: Any
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        spec = self.store.fields[name]
        current = self._current_name(name)
        if current == model:
            ids, scores, info = self._search(queries, k, name, spec, node, target_recall, params)
            return ids, scores, {**info, "model": model, "route": "native"}
        if current is None:
            raise ModelMismatch(f"field {name!r} has no named model version; call "
                                f"register_model({name!r}, old_spec, name='v1') first")
        found = self._mapping(name, model, current)
        if found is None:
            raise ModelMismatch(
                f"field {name!r} holds vectors of {current!r} ({self.store.models[name].name!r}); "
                f"queries of model version {model!r} need a mapping: call "
                f"collection.fit_mapping({name!r}, from_model={model!r}, to_model={current!r}, "
                f"sample=1000) first (or backfill the field with collection.backfill("
                f"{name!r}, {model!r}))")
        m, record = found
        mapped = m.transform(queries)
        route = {"model": model, "mapping": {"kind": m.kind, "version": record["version"]}}
        backfill = self.store.meta.get("backfill", {}).get(name)
        if backfill is not None and backfill.get("model") == model:
            return self._search_merged(queries, mapped, k, name, model, node, target_recall,
                                       params, record, route)
        ids, scores, info = self._search(mapped, k, name, spec, node, target_recall, params)
        return ids, scores, {**info, **route, "route": "mapped"}

    def _search_merged(self, queries: np.ndarray, mapped: np.ndarray, k: int, name: str,
                       model: str, node: Any, target_recall: float | None, params: Any,
                       record: dict[str, Any], route: dict[str, Any]
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Native scores over migrated items, calibrated mapped scores over the rest."""
        vspec = self._versions(name)[model]
        s_seqs, s_vecs = self._shadow(name, model, vspec.dim)
        live = self.store.live.live_seqs()
        selected = None if node is None else self.executor.select(node)
        alive = isin_sorted(s_seqs, live)
        migrated = s_seqs[alive]
        mask = alive if selected is None else alive & isin_sorted(s_seqs, selected)
        topk = TopK(len(queries), k)
        scan_dense(queries, s_vecs, s_seqs, topk, metric=vspec.metric, mask=mask)
        n_scores, n_seqs = topk.result()
        rest = (live if selected is None else selected)
        rest = rest[~isin_sorted(rest, migrated)]
        a, b = record["calibration"]
        if len(rest):
            m_ids, m_scores, info = self._search(mapped, k, name, self.store.fields[name], None,
                                                 target_recall, params, restrict=rest)
            m_scores = np.where(np.isfinite(m_scores), a * m_scores + b, -np.inf)
        else:
            m_ids = np.full((len(queries), k), None, dtype=object)
            m_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
            info = {"strategy": "exact", "field": name}
        all_ids = np.concatenate([self.store.live.seqs_to_keys(n_seqs), m_ids], axis=1)
        all_scores = np.concatenate([n_scores, m_scores], axis=1).astype(np.float32)
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        info = {**info, **route, "route": "merged",
                "backfill": {"migrated": len(migrated), "total": len(live)}}
        return (np.take_along_axis(all_ids, order, 1), np.take_along_axis(all_scores, order, 1),
                info)

    def _shadow(self, name: str, model: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        hit = self._shadows.get((name, model))
        if hit is None or hit[0] != self.store.version:
            _, (seqs, vecs) = self.store.catalog.read(store.get_shadow, self.store.catalog, name,
                                                      model, dim)
            hit = (self.store.version, seqs, vecs)
            self._shadows[(name, model)] = hit
        return hit[1], hit[2]

    def _check_model_arg(self, model: object) -> None:
        if model is not None and not isinstance(model, str):
            raise InvalidArgument(f"model: expected a version name (str) or None, got "
                                  f"{model!r}")

    # -- compatibility report --------------------------------------------------------------------

    def compatibility_report(self, field: str, new_model: str = "v2", old_model: str = "v1", *,
                             queries: Sequence[str] | None = None,
                             qrels: Sequence[Any] | None = None,
                             sample_sizes: Sequence[int] = (250, 1000, 4000),
                             kinds: Sequence[str] | None = None, relevance: Any = None,
                             query_vectors: Mapping[str, np.ndarray] | None = None,
                             new_item_vectors: tuple[Sequence[Any], np.ndarray] | None = None,
                             k: int = 10, seed: int = 0, texts: Mapping[Any, str] | None = None,
                             text_key: str = "text") -> Any:
        """Measure how well ``new_model`` queries work on the ``old_model`` index.

        See :func:`polyvec.models.report.compatibility_report` for the parameters; the result
        has ``.to_dict()``, ``.to_markdown()`` and ``.plot(path)``.
        """
        from ...models.report import compatibility_report

        name, _ = self._dense_field(field)
        if (queries is None and query_vectors is None) or qrels is None:
            raise InvalidArgument("compatibility_report needs queries= (texts) or "
                                  "query_vectors=, and qrels= (relevant ids per query)")
        return compatibility_report(self.coll, name, new_model, old_model, queries=queries,
                                    qrels=qrels, sample_sizes=sample_sizes, kinds=kinds,
                                    relevance=relevance, query_vectors=query_vectors,
                                    new_item_vectors=new_item_vectors, k=k,
                                    seed=seed, texts=texts, text_key=text_key)

