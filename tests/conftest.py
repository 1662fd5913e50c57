"""Shared fixtures: small seeded data and fresh database folders."""

from __future__ import annotations

import os

import numpy as np
import pytest

import polyvec as pv

# numba loads in the caller, not in the background: every test sees the kernels it asks for
# (tests/test_cold_start.py covers the background warm-up in fresh processes)
os.environ.setdefault("POLYVEC_NUMBA_WARMUP", "sync")


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
