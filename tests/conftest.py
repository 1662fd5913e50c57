"""Shared fixtures: small seeded data, fresh database folders, and the shared data sets.

Data sets too large for the repository live in ``../shared/data/<name>/`` beside the checkout
(never an absolute path); :func:`shared_data` finds one. ``POLYVEC_DATA`` overrides the folder
that holds them, as it does for ``polyvec.eval.load_debian_minilm``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import polyvec as pv

# numba loads in the caller, not in the background: every test sees the kernels it asks for
# (tests/test_cold_start.py covers the background warm-up in fresh processes)
os.environ.setdefault("POLYVEC_NUMBA_WARMUP", "sync")
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def in_ci() -> bool:
    """``CI`` is set to a true value (GitHub Actions and most CI systems set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def shared_data(name: str, *files: str) -> Path:
    """The folder of the shared data set ``name`` (``../shared/data/<name>`` beside the repository).

    When it (or one of ``files`` in it) is missing, the calling test skips with a message that
    names the data set and where it was looked for; under CI (:func:`in_ci`) it fails instead,
    so a CI run never passes without the tests that need the data.
    """
    env = os.environ.get("POLYVEC_DATA")
    folder = (Path(env) if env else SHARED_DATA) / name
    missing = [f for f in files if not (folder / f).is_file()]
    if not folder.is_dir() or missing:
        what = f"lacks {missing}" if folder.is_dir() else "does not exist"
        msg = (f"needs the shared data set {name!r}: {folder} {what} (put the shared folder "
               f"beside the repository as ../shared, or set POLYVEC_DATA)")
        if in_ci():
            pytest.fail(f"{msg}; CI=true requires it", pytrace=False)
        pytest.skip(msg)
    return folder


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


def wait_forked(pid: int, what: str, timeout: float = 60.0) -> None:
    """Wait for the forked child ``pid`` to exit 0; kill it and fail if it hangs."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, f"the forked child's {what} failed"
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child's {what} hung")
