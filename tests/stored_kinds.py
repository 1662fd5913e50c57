"""Items of every field kind, in the forms a write transforms (cosine rows normalized and
cast to f16, pooled token sets, u8-quantized sparse weights, analyzed BM25 texts), for the
tests of copying items in their stored form (``test_restore``, ``test_distributed``)."""

from __future__ import annotations

from typing import Any

import numpy as np

import polyvec as pv

N, DIM = 60, 24
FIELDS: dict[str, Any] = {
    "d": pv.Dense(DIM, "cosine", "f16"),
    "m": pv.Multi(DIM, pool_factor=2),
    "s": pv.Sparse(1_000, dtype="u8", max_weight=2.0),
    "t": pv.BM25(),
}
WORDS = ["apt", "cache", "package", "python", "debian", "library", "tool", "shell", "audio",
         "video", "font", "kernel"]


def kinds_data(seed: int = 0) -> tuple[list[str], dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    sparse = []
    for _ in range(N):
        idx = np.sort(rng.choice(1_000, 12, replace=False))
        w = rng.uniform(0, 2.0, 12).astype(np.float32)
        w[0] = 2.0  # the top step (max_weight)
        sparse.append((idx, w))
    vectors = {
        "d": rng.standard_normal((N, DIM)).astype(np.float32),
        "m": [rng.standard_normal((int(rng.integers(3, 9)), DIM)).astype(np.float32)
              for _ in range(N)],
        "s": sparse,
        "t": [" ".join(rng.choice(WORDS, int(rng.integers(2, 30)))) for _ in range(N)],
    }
    return [f"i{i}" for i in range(N)], vectors, [{"n": i} for i in range(N)]


def copy_items(src: Any, dst: Any, keys: list[str]) -> None:
    items = src.get(keys)
    dst._restore(keys, {"d": np.stack([it.vectors["d"] for it in items]),
                        **{f: [it.vectors[f] for it in items] for f in ("m", "s", "t")}},
                 [it.payload for it in items])


def same_items(a: Any, b: Any, keys: list[str]) -> None:
    for x, y in zip(a.get(keys), b.get(keys), strict=True):
        assert x.id == y.id and x.payload == y.payload
        assert x.vectors["d"].dtype == y.vectors["d"].dtype
        np.testing.assert_array_equal(x.vectors["d"], y.vectors["d"])
        np.testing.assert_array_equal(x.vectors["m"], y.vectors["m"])
        for f in ("s", "t"):
            np.testing.assert_array_equal(x.vectors[f].indices, y.vectors[f].indices)
            np.testing.assert_array_equal(x.vectors[f].values, y.vectors[f].values)
