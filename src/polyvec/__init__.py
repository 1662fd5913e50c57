"""polyvec: an embedded, Python-first vector retrieval engine.

>>> import tempfile, numpy as np, polyvec as pv
>>> db = pv.connect(tempfile.mkdtemp())
>>> docs = db.create_collection("docs", vectors={"dense": pv.Dense(3)}, indexed=["lang"])
>>> docs.add(ids=["a", "b"], vectors={"dense": np.eye(3)[:2]},
...          payloads=[{"lang": "en"}, {"lang": "fr"}])
>>> hits = docs.search(np.array([1.0, 0.1, 0.0]), k=1, filter={"lang": "fr"})
>>> hits.ids.tolist()
['b']
"""

from . import errors
from .client import Client
from .collection import Collection, Item
from .db import Database, connect
from .errors import *  # noqa: F403
from .spec import BM25, Dense, Multi, Sparse
from .types import Metric, SearchResult, SparseVector

__version__ = "0.1.0"

__all__ = [
    "connect",
    "Client",
    "Database",
    "Collection",
    "Item",
    "Dense",
    "Multi",
    "Sparse",
    "BM25",
    "Metric",
    "SearchResult",
    "SparseVector",
    "errors",
    "__version__",
    *errors.__all__,
]
