"""Hot loops. Each kernel has a numpy reference twin; ``backend="numba"`` picks the fast path.

Importing this package does not import numba: the numba twins are compiled on first use.
"""

from .hamming import hamming_distances, hamming_numpy, hamming_topk
from .maxsim import maxsim_numpy, maxsim_reduce
from .topk import TopK

__all__ = ["TopK", "maxsim_reduce", "maxsim_numpy", "hamming_distances", "hamming_numpy",
           "hamming_topk"]
