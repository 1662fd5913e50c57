"""Bulk ingest with Ray Data: read JSONL or Parquet, embed the texts in parallel batches with
an embedder made in each Ray worker, and write the items to a collection (a
:class:`~polyvec.distributed.ShardedCollection`, or an embedded one) from this process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgument, MissingExtra

__all__ = ["ingest"]

VECTOR = "__polyvec_vector__"  # the column the embedding batches add


def ingest(coll: Any, paths: str | Sequence[str], embedder: Callable[[], Any], *,
           field: str | None = None, id_key: str = "id", text_key: str = "text",
           payload_keys: Sequence[str] | None = None, batch_size: int = 256,
           concurrency: int = 1) -> int:
    """Read ``paths`` (``.jsonl``/``.json`` lines, or ``.parquet``) with Ray Data, embed
    ``text_key`` of each record by ``embedder()`` (a function that makes an
    :class:`~polyvec.embed.base.Embedder` in each of ``concurrency`` Ray workers, such as
    ``polyvec.embed.minilm``), and upsert each record into ``coll``'s ``field`` with id
    ``id_key`` and the other keys (or ``payload_keys``) as payload; how many items were
    written. Ray Data shows its progress bar while it runs."""
    try:
        import ray.data
    except ImportError:
        raise MissingExtra("ingest needs Ray Data: pip install 'polyvec[ray]'") from None
    files = [paths] if isinstance(paths, str) else list(paths)
    if not files:
        raise InvalidArgument("paths: expected at least one file")
    if all(str(p).endswith(".parquet") for p in files):
        ds = ray.data.read_parquet(files)
    elif all(str(p).endswith((".jsonl", ".json")) for p in files):
        ds = ray.data.read_json(files)
    else:
        raise InvalidArgument(f"paths: expected .jsonl/.json or .parquet files, got {files}")
    if field is None:
        fields = [name for name, _ in coll.schema.vectors]
        if len(fields) != 1:
            raise InvalidArgument(f"field: expected one of {fields}, got None")
        field = fields[0]
    ds = ds.map_batches(_Embed, fn_constructor_args=(embedder, text_key), batch_size=batch_size,
                        concurrency=concurrency, batch_format="numpy")
    written = 0
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        ids = [_plain(x) for x in batch[id_key].tolist()]
        keys = [k for k in batch if k not in (VECTOR, id_key)] if payload_keys is None \
            else list(payload_keys)
        columns = {k: [_plain(x) for x in batch[k].tolist()] for k in keys}
        payloads = [{k: columns[k][i] for k in keys} for i in range(len(ids))]
        coll.upsert(ids, {field: np.stack(list(batch[VECTOR]))}, payloads)
        written += len(ids)
    return written


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
    """A Ray Data batch function: the embedder is made once per worker."""

    def __init__(self, embedder: Callable[[], Any], text_key: str) -> None:
        self.model = embedder()
        self.text_key = text_key

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_key].tolist()]
        vectors = np.asarray(self.model.embed_documents(texts), dtype=np.float32)
        return {**batch, VECTOR: vectors}
