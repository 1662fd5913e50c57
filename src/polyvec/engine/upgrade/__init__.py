"""The upgrade service: embedders and the model each field records, model versions, mappings
between them, queries across versions and the progressive backfill."""

from __future__ import annotations

from .backfill import Backfill, BackfillJob
from .models import Models
from .text import Embedders, check_compatible

__all__ = ["Backfill", "BackfillJob", "Embedders", "Models", "check_compatible"]
