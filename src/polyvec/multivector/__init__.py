"""Multi-vector (late-interaction) retrieval. ``maxsim`` is the exact oracle."""

from .maxsim import maxsim_scores, scan_multi

__all__ = ["maxsim_scores", "scan_multi"]
