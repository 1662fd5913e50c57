"""Long work as background jobs: index builds, compaction, merges, seals.

A job runs in its own process (``python -m polyvec.server.jobs DB ID``), started by whichever
worker took the request, in a session of its own. Its state is a JSON file in
``<db>/.polyvec-jobs/``, replaced atomically, so every worker answers for every job. Cancelling
kills the job's process: the engine is crash-safe, so a killed index build or compaction leaves
the collection as it was (its partial files are swept by the next writer). A job whose process
died without saying so is reported ``failed``, or ``cancelled`` if a cancel asked for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, UnknownJob

__all__ = ["JOBS_DIR", "KINDS", "Jobs"]

JOBS_DIR = ".polyvec-jobs"
# what a job may run: Collection methods (backfill re-embeds with a registered model version)
KINDS = ("create_index", "compact", "merge", "flush", "backfill")


class Jobs:
    """The jobs of one database folder."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.folder = self.db_path / JOBS_DIR

    def start(self, collection: str, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        """Start ``kind`` on ``collection`` with ``args`` in a new process; its record."""
        if kind not in KINDS:
            raise InvalidArgument(f"job kind: expected one of {list(KINDS)}, got {kind!r}")
        if not isinstance(args, dict):
            raise InvalidArgument(f"job args: expected an object, got {type(args).__name__}")
        self.folder.mkdir(exist_ok=True)
        job_id = f"job-{int(time.time())}-{secrets.token_hex(4)}"
        record = {"id": job_id, "collection": collection, "kind": kind, "args": args,
                  "status": "starting", "created": time.time(), "started": None,
                  "finished": None, "pid": None, "error": None, "cancel": False}
        self._write(record)
        proc = subprocess.Popen([sys.executable, "-m", "polyvec.server.jobs",
                                 str(self.db_path), job_id], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        record["pid"] = proc.pid
        self._update(job_id, pid=proc.pid)
        return self.get(job_id)

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's record; a job whose process is gone without a word is ``failed`` (or
        ``cancelled``)."""
        record = self._read(job_id)
        if record["status"] in ("starting", "running") and record["pid"] and \
                not _alive(record["pid"]):
            time.sleep(0.05)  # the process may have written its last state just now
            record = self._read(job_id)
            if record["status"] in ("starting", "running"):
                record = self._update(job_id, status="cancelled" if record["cancel"] else
                                      "failed", finished=time.time(), error=None if
                                      record["cancel"] else {"error": "JobDied", "message":
                                                             "the job's process exited without "
                                                             "finishing", "details": None})
        return record

    def list(self) -> list[dict[str, Any]]:
        if not self.folder.exists():
            return []
        return sorted((self.get(p.stem) for p in self.folder.glob("job-*.json")),
                      key=lambda r: r["created"])

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Kill a running job (its process group); a finished one stays as it ended."""
        record = self._read(job_id)
        if record["status"] in ("starting", "running"):
            self._update(job_id, cancel=True)
            pid = record["pid"]
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                _reap(pid)
        return self.get(job_id)

    # -- the file -------------------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not job_id.startswith("job-") or \
                not job_id.replace("-", "").isalnum():
            raise UnknownJob(f"no job {job_id!r}")
        return self.folder / f"{job_id}.json"

    def _read(self, job_id: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self._path(job_id).read_text()))
        except FileNotFoundError:
            raise UnknownJob(f"no job {job_id!r}") from None

    def _write(self, record: dict[str, Any]) -> None:
        path = self._path(record["id"])
        tmp = path.with_suffix(f".tmp-{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        record = self._read(job_id)
        record.update(changes)
        self._write(record)
        return record


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # our own child: reap it if it ended
        if done:
            return False
    except ChildProcessError:
        pass  # another worker's child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.02)


def run(db_path: Path, job_id: str) -> int:
    """The job process: run the job on an embedded handle and record how it ended."""
    from ..db import connect
    from ..wire import error_body

    jobs = Jobs(db_path)
    record = jobs._update(job_id, status="running", started=time.time(), pid=os.getpid())
    try:
        db = connect(db_path, create=False)
        coll = db.get_collection(record["collection"])
        getattr(coll, record["kind"])(**record["args"])
        coll.wait_for_maintenance()
        db.close()
    except Exception as e:  # noqa: BLE001 (recorded: the job's answer)
        jobs._update(job_id, status="failed", finished=time.time(), error=error_body(e))
        return 1
    jobs._update(job_id, status="done", finished=time.time())
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2]))
