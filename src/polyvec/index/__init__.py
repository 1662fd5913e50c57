"""Candidate generation over stored vectors: exact scans (the oracle), HNSW and IVF over faiss.

Build-time settings live in an :class:`~polyvec.index_spec.IndexSpec`; query-time settings go
per call as :class:`QueryParams`. faiss is imported on first use.
"""

from .base import EXACT_BELOW, QueryParams, VectorIndex
from .build import INDEXES, FlatIndex, build_index, load_index
from .calibrate import CalibrationTable, calibrate
from .flat import scan_dense
from .hnsw import HNSWIndex
from .ivf import IVFIndex

__all__ = ["scan_dense", "QueryParams", "VectorIndex", "EXACT_BELOW", "INDEXES", "FlatIndex",
           "HNSWIndex", "IVFIndex", "build_index", "load_index", "CalibrationTable", "calibrate"]
