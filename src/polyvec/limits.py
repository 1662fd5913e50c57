"""Resource limits of one call: what a request may ask for before it is refused.

Every limit is a module attribute (change it to configure: ``polyvec.limits.MAX_RESULT_SLOTS =
...``) and a request beyond it raises :class:`~polyvec.errors.InvalidArgument` (searches),
:class:`~polyvec.errors.FilterError` (filters) or :class:`~polyvec.errors.InvalidPayload`
(payloads) naming the limit, before anything is allocated or stored.

- ``k`` is first capped at the number of live items (a result never has more columns than the
  collection has items), then ``nq × k`` must be at most ``MAX_RESULT_SLOTS``. A slot costs
  about ``RESULT_SLOT_BYTES`` (float32 score, int64 seq in the running top-k, and the id
  object in the result), so one search's result memory is at most
  ``MAX_RESULT_SLOTS × RESULT_SLOT_BYTES`` (1 GiB by default); an indexed search adds its
  candidate lists (``oversample × k`` per query).
- A filter has at most ``MAX_FILTER_NODES`` nodes (operators and leaves) and is nested at most
  ``MAX_FILTER_DEPTH`` levels.
- A payload is nested at most ``MAX_PAYLOAD_DEPTH`` levels and its JSON text is at most
  ``MAX_PAYLOAD_BYTES`` bytes.
- A sharded collection (``polyvec.distributed``) has at most ``MAX_SHARDS`` shards: each
  replica of a shard is a Ray actor, a process of its own.
"""

from __future__ import annotations

__all__ = [
    "MAX_RESULT_SLOTS",
    "RESULT_SLOT_BYTES",
    "MAX_FILTER_NODES",
    "MAX_FILTER_DEPTH",
    "MAX_PAYLOAD_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_SHARDS",
]

RESULT_SLOT_BYTES = 32
MAX_RESULT_SLOTS = (1 << 30) // RESULT_SLOT_BYTES  # 33,554,432 slots: 1 GiB of results
MAX_FILTER_NODES = 100_000
MAX_FILTER_DEPTH = 64
MAX_PAYLOAD_DEPTH = 64
MAX_PAYLOAD_BYTES = 16 << 20
MAX_SHARDS = 1024
