"""Durable storage: the SQLite catalog/write log, sealed segment files, the write lock.

This layer knows bytes and rows, not search: it imports only ``errors``/``spec``/``types``.
"""

from .catalog import FORMAT_VERSION, Catalog, ItemRow
from .lock import WriteLock
from .segment import SegmentFiles, open_segment, segment_name, write_segment

__all__ = [
    "FORMAT_VERSION",
    "Catalog",
    "ItemRow",
    "SegmentFiles",
    "WriteLock",
    "open_segment",
    "segment_name",
    "write_segment",
]
