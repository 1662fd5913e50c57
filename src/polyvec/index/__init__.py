"""Candidate generation over stored vectors. ``flat`` is the exact oracle."""

from .flat import scan_dense

__all__ = ["scan_dense"]
