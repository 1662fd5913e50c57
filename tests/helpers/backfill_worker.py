"""Child process of tests/test_upgrade_crash.py: runs (or resumes) a backfill until killed.

Usage: ``backfill_worker.py DB LOG BATCH [POINT@N]``. Prints ``R`` once the collection is open,
then at the engine's hook points (``polyvec.engine.hooks``) ``P`` just before a batch's shadow
vectors are written (inside its transaction: ``backfill.before_write``), ``B`` after each batch
committed (``backfill.batch_committed``), ``W`` when the switch starts
(``backfill.before_switch``), and ``DONE`` at the end (each line flushed at once). With
``POINT@N`` the N-th hit of that point prints its letter and kills this process with SIGKILL
(the hits before it print nothing). Every text the new model embeds is appended to LOG first,
so the parent can count re-embedded items.
"""

from __future__ import annotations

import sys
from typing import Any


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Logged:
    """The real new model (paraphrase-MiniLM-L3-v2 ONNX), logging what it embeds."""

    def __init__(self, log: str) -> None:
        from polyvec.embed import paraphrase_minilm

        self.inner = paraphrase_minilm()
        self.spec = self.inner.spec
        self.log = open(log, "a", encoding="utf-8")  # noqa: SIM115 - lives with the process

    def embed_documents(self, texts: list[str], **kw: Any) -> Any:
        for t in texts:
            self.log.write(t + "\n")
        self.log.flush()
        return self.inner.embed_documents(texts, **kw)


TAGS = {"backfill.before_write": "P", "backfill.batch_committed": "B",
        "backfill.before_switch": "W"}


def main() -> None:
    db_path, log, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fault, _, at = (sys.argv[4] if len(sys.argv) > 4 else "").partition("@")
    import polyvec
    from polyvec.engine import hooks

    for point, tag in TAGS.items():
        def say(name: str, tag: str = tag) -> None:
            emit(tag)

        def say_and_die(name: str, tag: str = tag) -> None:
            emit(tag)
            hooks.kill(name)

        if point == fault:
            hooks.arm(point, say_and_die, at=int(at or 1))
        else:
            hooks.arm(point, say)
    if fault and fault not in TAGS:
        hooks.arm(fault, hooks.kill, at=int(at or 1))  # fails on a name the engine lacks
    coll = polyvec.connect(db_path).get_collection("c")
    emb = Logged(log)
    coll.register_model("emb", emb, name="v2")
    emit("R")
    coll.backfill("emb", "v2", batch_size=batch, progress=False)
    emit("DONE")


if __name__ == "__main__":
    main()
