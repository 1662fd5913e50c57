"""Model upgrades: mappings between embedding models' spaces, the supervised adapter, the
compatibility report, and the registry of known embedders.

The collection-facing API lives on :class:`~polyvec.collection.Collection` (``register_model``,
``fit_mapping``, ``search(..., model=...)``, ``compatibility_report``, ``backfill``); this
package holds the numpy parts, importable on their own.
"""

from .mappings import KINDS, LinearMap, fit_best, fit_kind

__all__ = ["KINDS", "LinearMap", "fit_best", "fit_kind"]
