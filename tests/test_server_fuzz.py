"""schemathesis against a real server's /openapi.json, every operation, up to 50 examples
each: no 5xx, every answer as documented (status codes, content type, body schema, the
``Allow`` of a 405). Three passes: a read key on a real collection (every write is refused, so
the collection must come out unchanged), an admin key on a scratch collection, and an admin
key with generated collection names (creates and drops included). The folder opens and
verifies after."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import Server, in_ci

import polyvec as pv
from polyvec.server.auth import KeyStore

CHECKS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]


def _st() -> list[str]:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    if found is None:
        msg = "needs schemathesis (the [test] extra): pip install -e '.[test]'"
        if in_ci():
            pytest.fail(f"{msg}; CI=true requires it", pytrace=False)
        pytest.skip(msg)
    return [found]


def _snapshot(c: pv.Collection) -> list[tuple[object, dict, bytes]]:
    ids = sorted(c, key=str)
    return [(it.id, it.payload, it.vectors["v"].tobytes()) for it in c.get(ids) if it]


@pytest.mark.slow
def test_fuzzed_api_answers_as_documented_and_rejects_without_change(tmp_path: Path) -> None:
    st = _st()
    folder = tmp_path / "db"
    db = pv.connect(folder)
    rng = np.random.default_rng(0)
    for name in ("c", "scratch"):
        c = db.create_collection(name, {"v": pv.Dense(4)}, indexed=["g"])
        c.add(list(range(60)), {"v": rng.standard_normal((60, 4)).astype(np.float32)},
              [{"g": i % 3, "t": f"x{i}"} for i in range(60)])
    before = _snapshot(db.get_collection("c"))
    db.close()
    keys = KeyStore.of(folder)
    reader, admin = keys.create("read")[0], keys.create("admin")[0]
    server = Server(folder)
    try:
        for key, name, extra in ((reader, "c", []),
                                 (admin, "scratch", ["--exclude-method", "DELETE"]),
                                 (admin, None, [])):
            config = tmp_path / f"st-{name}.toml"
            config.write_text("" if name is None else f'[parameters]\n"path.name" = "{name}"\n')
            run = subprocess.run(
                [*st, "--config-file", str(config), "run", f"{server.url}/openapi.json",
                 "-n", "50", "--phases", "examples,coverage,fuzzing", "--seed", "1",
                 "-H", f"Authorization: Bearer {key}", *CHECKS, *extra],
                capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache there
            assert run.returncode == 0, f"pass on {name}:\n{run.stdout[-6000:]}"
            assert " passed" in run.stdout and "failures" not in run.stdout.split(
                "SUMMARY")[-1].lower()
    finally:
        server.stop()
    db = pv.connect(folder, create=False)
    assert _snapshot(db.get_collection("c")) == before  # every write was refused
    for name in db.list_collections():
        db.get_collection(name).verify()
    db.close()
