"""Shared fixtures: small seeded data and fresh database folders."""

from __future__ import annotations

import numpy as np
import pytest

import polyvec as pv


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def db(tmp_path) -> pv.Database:
    database = pv.connect(tmp_path / "db")
    yield database
    database.close()


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def token_sets(rng: np.random.Generator, n: int, d: int, lo: int = 1, hi: int = 6
               ) -> list[np.ndarray]:
    return [unit(rng, int(rng.integers(lo, hi + 1)), d) for _ in range(n)]
