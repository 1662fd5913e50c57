"""Bulk ingest with Ray Data: read JSONL or Parquet, embed the texts in parallel batches in Ray
workers, and write the items to a collection (a
:class:`~polyvec.distributed.ShardedCollection`, or an embedded one) from this process.

The embedders are the collection's own (those attached with ``use_embedder``) unless one is
given. A worker never receives a built-in model's weights: it builds the model again from its
:class:`~polyvec.spec.ModelSpec` (:func:`polyvec.embed.registry.embedder_for`), from the
installed package; any other embedder is sent to the workers as it is (pickled by Ray).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..embed.base import Embedder
from ..errors import InvalidArgument, MissingExtra

__all__ = ["ingest"]

PREFIX = "__polyvec_"  # the columns the embedding batches add: PREFIX + field + "__"


def ingest(coll: Any, paths: str | Sequence[str], embedder: Any = None, *,
           field: str | None = None, id_key: str = "id", text_key: str = "text",
           payload_keys: Sequence[str] | None = None, batch_size: int = 256,
           concurrency: int = 1) -> int:
    """Read ``paths`` (``.jsonl``/``.json`` lines, or ``.parquet``) with Ray Data, embed
    ``text_key`` of each record in ``concurrency`` Ray workers, and upsert each record into
    ``coll`` with id ``id_key`` and the other keys (or ``payload_keys``) as payload; how
    many items were written. Ray Data shows its progress bar while it runs.

    Each vector field is embedded by the embedder attached to it (``coll.use_embedder``); a
    BM25 field takes the text itself. ``embedder`` (an embedder, or a function that makes
    one, such as ``polyvec.embed.minilm``) embeds ``field`` instead (the only vector field
    when ``None``)."""
    try:
        import ray.data
    except ImportError:
        raise MissingExtra("ingest needs Ray Data: pip install 'polyvec[ray]'") from None
    files = [paths] if isinstance(paths, str) else list(paths)
    if not files:
        raise InvalidArgument("paths: expected at least one file")
    makers = _makers(coll, embedder, field)
    if all(str(p).endswith(".parquet") for p in files):
        ds = ray.data.read_parquet(files)
    elif all(str(p).endswith((".jsonl", ".json")) for p in files):
        ds = ray.data.read_json(files)
    else:
        raise InvalidArgument(f"paths: expected .jsonl/.json or .parquet files, got {files}")
    texts = [name for name, spec in coll.schema.vectors if spec.kind == "bm25"]
    if makers:
        ds = ds.map_batches(_Embed, fn_constructor_args=(makers, text_key),
                            batch_size=batch_size, concurrency=concurrency,
                            batch_format="numpy")
    written = 0
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        ids = [_plain(x) for x in batch[id_key].tolist()]
        keys = [k for k in batch if not k.startswith(PREFIX) and k != id_key] \
            if payload_keys is None else list(payload_keys)
        columns = {k: [_plain(x) for x in batch[k].tolist()] for k in keys}
        payloads = [{k: columns[k][i] for k in keys} for i in range(len(ids))]
        vectors: dict[str, Any] = {f: _rows(batch[_column(f)]) for f in makers}
        vectors.update({f: [str(t) for t in batch[text_key].tolist()] for f in texts})
        coll.upsert(ids, vectors, payloads)
        written += len(ids)
    return written


def _makers(coll: Any, embedder: Any, field: str | None) -> dict[str, Callable[[], Any]]:
    """What makes each field's embedder in a worker: ``embedder`` for ``field``, else the
    collection's attached embedders (every vector field but a BM25 one needs one)."""
    fields = dict(coll.schema.vectors)
    vector_fields = [f for f, spec in fields.items() if spec.kind != "bm25"]
    if embedder is not None:
        if field is None:
            if len(vector_fields) != 1:
                raise InvalidArgument(f"field: expected one of {vector_fields} (the field "
                                      "embedder embeds), got None")
            field = vector_fields[0]
        if field not in vector_fields:
            raise InvalidArgument(f"field: expected one of {vector_fields}, got {field!r}")
        attached = {field: embedder}
    else:
        attached = coll.embedders()
    missing = [f for f in vector_fields if f not in attached]
    if missing:
        raise InvalidArgument(f"ingest: field(s) {missing} have no embedder: attach one with "
                              f"use_embedder(field, embedder), or pass embedder=")
    return {f: _maker(attached[f]) for f in vector_fields}


def _maker(embedder: Any) -> Callable[[], Any]:
    """A function a worker calls to get ``embedder``: a built-in model is built again from
    its spec there; another embedder object is sent as it is; a function is one already."""
    if not isinstance(embedder, Embedder):
        if not callable(embedder):
            raise InvalidArgument(f"embedder: expected an embedder or a function that makes "
                                  f"one, got {type(embedder).__name__}")
        return embedder
    from ..embed.registry import known_specs

    if embedder.spec in known_specs():
        from ..embed.registry import embedder_for

        return functools.partial(embedder_for, embedder.spec)
    return functools.partial(_same, embedder)


def _same(embedder: Any) -> Any:
    return embedder


def _column(field: str) -> str:
    return f"{PREFIX}{field}__"


def _plain(value: Any) -> Any:
    """A value of a Ray Data numpy batch as JSON has it: arrays (JSON lists) as lists, numpy
    scalars as Python's, NaN (what a missing number becomes) as ``None``."""
    if isinstance(value, np.ndarray):
        return [_plain(x) for x in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_plain(x) for x in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


class _Embed:
    """A Ray Data batch function: each field's embedder is made once per worker."""

    def __init__(self, makers: dict[str, Callable[[], Any]], text_key: str) -> None:
        self.models = {f: make() for f, make in makers.items()}
        self.text_key = text_key

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_key].tolist()]
        return {**batch, **{_column(f): _array(m.embed_documents(texts))
                            for f, m in self.models.items()}}


def _array(vectors: Any) -> np.ndarray:
    """An embedder's output as a batch column: dense rows as they are, token sets (one
    array per text, of their own lengths) as an object array of them."""
    if isinstance(vectors, np.ndarray):
        return vectors.astype(np.float32, copy=False)
    out = np.empty(len(vectors), dtype=object)
    out[:] = [np.asarray(t, dtype=np.float32) for t in vectors]
    return out


def _rows(column: np.ndarray) -> Any:
    """A batch column as a write takes it: dense rows stacked, token sets as a list."""
    rows = list(column)
    return rows if rows and np.ndim(rows[0]) == 2 else np.stack(rows)
