"""Consistent hashing of item ids to shards, with virtual nodes.

Each shard owns ``vnodes`` points on a 64-bit ring; an id belongs to the shard owning the
first point at or after the id's hash (wrapping around). Adding a shard moves about ``1/N``
of the items, all of them to the new shard; every other item keeps its shard.

>>> ring = HashRing(["s0", "s1", "s2"])
>>> ring.shard_of("debian:python3") in ("s0", "s1", "s2")
True
>>> moved = [i for i in range(3_000) if ring.shard_of(i) != ring.with_shard("s3").shard_of(i)]
>>> 0.18 < len(moved) / 3_000 < 0.32 and {ring.with_shard("s3").shard_of(i) for i in moved}
{'s3'}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import InvalidArgument

__all__ = ["HashRing", "id_hash"]

VNODES = 64  # points per shard: the largest shard holds ~1.2x the mean at 4 shards
MAX_VNODES = 4096  # (the ring holds shards x vnodes points, each looked up per id)


def id_hash(key: int | str) -> int:
    """A stable 64-bit hash of an item id (the same in every process and on every node; an
    int and its decimal string hash apart, as they are different ids)."""
    tag = b"i" if isinstance(key, int) else b"s"
    data = tag + (str(key).encode("utf-8", "surrogatepass"))
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class HashRing:
    """Shard names placed on a hash ring, ``vnodes`` points each."""

    def __init__(self, shards: Sequence[str], vnodes: int = VNODES) -> None:
        if not shards or len(set(shards)) != len(shards):
            raise InvalidArgument(f"shards: expected distinct names, got {list(shards)!r}")
        if not isinstance(vnodes, int) or isinstance(vnodes, bool) or not \
                1 <= vnodes <= MAX_VNODES:
            raise InvalidArgument(f"vnodes: expected an int in [1, {MAX_VNODES}], got "
                                  f"{vnodes!r}")
        self.shards = tuple(shards)
        self.vnodes = vnodes
        points = [(id_hash(f"{name}#{v}"), i) for i, name in enumerate(self.shards)
                  for v in range(vnodes)]
        points.sort()
        self._points = np.array([p for p, _ in points], dtype=np.uint64)
        self._owner = np.array([i for _, i in points], dtype=np.intp)

    def with_shard(self, name: str) -> HashRing:
        """This ring with one more shard."""
        return HashRing((*self.shards, name), self.vnodes)

    def shard_of(self, key: int | str) -> str:
        return self.shards[int(self._owners([key])[0])]

    def split(self, keys: Iterable[int | str]) -> dict[str, list[int]]:
        """Positions of ``keys`` by owning shard (shards owning none left out)."""
        keys = list(keys)
        out: dict[str, list[int]] = {}
        for pos, owner in enumerate(self._owners(keys).tolist()):
            out.setdefault(self.shards[owner], []).append(pos)
        return out

    def _owners(self, keys: Sequence[int | str]) -> np.ndarray:
        hashes = np.fromiter((id_hash(k) for k in keys), dtype=np.uint64, count=len(keys))
        at = np.searchsorted(self._points, hashes, side="left")
        return self._owner[np.where(at == len(self._points), 0, at)]

    def to_dict(self) -> dict[str, object]:
        return {"shards": list(self.shards), "vnodes": self.vnodes}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> HashRing:
        return cls(list(d["shards"]), int(d["vnodes"]))  # type: ignore[call-overload]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashRing) and (self.shards, self.vnodes) == (
            other.shards, other.vnodes)

    def __repr__(self) -> str:
        return f"HashRing(shards={list(self.shards)!r}, vnodes={self.vnodes})"
