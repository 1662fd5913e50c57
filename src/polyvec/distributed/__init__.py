"""Scale-out on Ray: sharded, replicated collections (extra ``[ray]``).

>>> import polyvec.distributed as dist  # Ray itself is imported on first use
>>> dist.HashRing(["s0", "s1"]).shard_of(42) in ("s0", "s1")
True
"""

from .ingest import ingest
from .ring import HashRing
from .sharded import RayDatabase, ShardedCollection, connect_ray, merge_topk

__all__ = ["HashRing", "RayDatabase", "ShardedCollection", "connect_ray", "ingest", "merge_topk"]
