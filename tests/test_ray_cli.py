"""The README's cluster commands, run: ``ray start --head`` and two ``ray start --address``
(each a node of its own on this machine, token authentication on as Ray 2.59+ turns it on),
then a driver that joins with ``connect_ray(root, address="auto")`` in its own process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import extra

extra("ray", "ray")

from ray._common.utils import get_ray_address_file  # noqa: E402

PORT = 6411  # the head's GCS (a fixed port, as on a real cluster)
TOKEN = "polyvec-test-token-0123456789abcdef"  # what RAY_AUTH_TOKEN carries to each node
DRIVER = Path(__file__).parent / "helpers" / "ray_cli_driver.py"
# where `ray start` records the latest head (a private helper of Ray's, as its CLI finds it)
CURRENT = Path(get_ray_address_file(None))


RAY = str(Path(sys.executable).parent / "ray")


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([RAY, "start", "--num-cpus=1", "--disable-usage-stats", "--block",
                             *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_for_nodes(env: dict[str, str], n: int) -> None:
    """Until ``ray status`` shows ``n`` live nodes (nodes started together on these two cores
    can time out registering: each is started once the one before has joined)."""
    deadline = time.monotonic() + 120
    while True:
        status = subprocess.run([RAY, "status", f"--address=127.0.0.1:{PORT}"], env=env,
                                capture_output=True, text=True, timeout=60)
        active = status.stdout.split("Active:")[-1].split("Pending:")[0]
        if status.returncode == 0 and active.count("node_") >= n:
            return
        assert time.monotonic() < deadline, f"{n} nodes did not join: {status.stdout[-500:]}"
        time.sleep(1)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Each node's ``ray start --block`` drains and stops its processes on SIGTERM."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def test_a_cluster_started_by_ray_start_serves_a_sharded_collection(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    latest = CURRENT.read_text() if CURRENT.exists() else None
    nodes = [_start(["--head", f"--port={PORT}", "--include-dashboard=false"], env)]
    try:
        _wait_for_nodes(env, 1)
        for i in range(2):
            nodes.append(_start([f"--address=127.0.0.1:{PORT}",
                                 f"--dashboard-agent-listen-port={52400 + i}"], env))
            _wait_for_nodes(env, 2 + i)
        run = subprocess.run([sys.executable, str(DRIVER), str(tmp_path / "data"), "3"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and run.stdout.split()[-2:] == ["ok", "3"], \
            (run.stdout[-2_000:], run.stderr[-4_000:])
    finally:
        _stop(nodes)
        _forget(latest)
    assert not CURRENT.exists() or not CURRENT.read_text().strip().endswith(f":{PORT}")


def _forget(latest: str | None) -> None:
    """Put back the address of the cluster ``ray start`` last started before this one:
    stopped by a signal, the head leaves its own there, and a later ``ray.init()`` (no
    address) would try to join the stopped cluster."""
    if CURRENT.exists() and CURRENT.read_text().strip().endswith(f":{PORT}"):
        if latest is None:
            CURRENT.unlink()
        else:
            CURRENT.write_text(latest)


def test_connect_ray_without_an_address_starts_its_own_cluster(tmp_path: Path) -> None:
    """``connect_ray(root)`` starts a local cluster, as it says, even where ``ray start``
    left the address of a stopped head as the latest cluster (Ray's default would try to
    join it)."""
    temp = Path(tempfile.mkdtemp(prefix="pv", dir="/tmp"))  # (short: Ray's socket paths)
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text("127.0.0.1:6499")  # nobody there
        code = ("import numpy as np, polyvec as pv\n"
                "from polyvec.distributed import connect_ray\n"
                f"rdb = connect_ray({str(tmp_path)!r}, num_cpus=1, include_dashboard=False)\n"
                "c = rdb.create_collection('one', {'v': pv.Dense(4)}, shards=2)\n"
                "c.add([1, 2], {'v': np.eye(2, 4, dtype=np.float32)})\n"
                "print('ok', len(c))\n")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=180, env={**os.environ, "RAY_TMPDIR": str(temp),
                                               "RAY_USAGE_STATS_ENABLED": "0"})
        assert run.returncode == 0 and run.stdout.split()[-2:] == ["ok", "2"], \
            (run.stdout[-2_000:], run.stderr[-4_000:])
    finally:
        shutil.rmtree(temp, ignore_errors=True)
