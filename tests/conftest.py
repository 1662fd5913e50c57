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


def extra(name: str, *modules: str) -> None:
    """Skip (fail under CI) a test, or a whole module when called at its top, that needs the
    extra ``[name]`` (providing ``modules``) when it is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        msg = (f"needs the [{name}] extra ({', '.join(missing)} missing): "
               f"pip install -e '.[{name}]'")
        if in_ci():
            pytest.fail(f"{msg}; CI=true requires it", pytrace=False)
        pytest.skip(msg, allow_module_level=True)


def server_extra() -> None:
    """Skip (fail under CI) a test that needs the ``[server]`` extra when it is missing."""
    extra("server", "fastapi", "uvicorn")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``polyvec serve`` on a database folder, in a real subprocess (see :func:`serve`)."""

    def __init__(self, db_path: Path, *args: str, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        import subprocess
        import sys
        import time
        import urllib.request

        server_extra()
        self.db_path, self.args, self.env = db_path, args, env
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "polyvec.cli", "--db", str(db_path), "serve", "--port",
             str(self.port), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise RuntimeError(f"the server did not come up: {out[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        if self.proc.stdout:
            self.proc.stdout.close()
