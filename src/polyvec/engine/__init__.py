"""The engine: the segment store (writes), snapshots (immutable read views), the search
executor (fan-out + one merge), the index manager and the upgrade service. See
``docs/ARCHITECTURE.md``."""

from __future__ import annotations

from .indexes import ENGINES, IndexEngine, IndexManager
from .search import SearchExecutor
from .snapshot import Segment, Snapshot
from .store import SegmentStore

__all__ = ["ENGINES", "IndexEngine", "IndexManager", "SearchExecutor", "Segment",
           "SegmentStore", "Snapshot"]
