"""Child process of tests/test_upgrade_crash.py: runs (or resumes) a backfill until killed.

Usage: ``backfill_worker.py DB LOG BATCH``. Prints ``R`` once the collection is open, ``P`` just
before a batch's shadow vectors are written (inside its transaction), ``B`` after each batch
committed, ``W`` when the switch starts and ``DONE`` at the end (each line flushed at once).
Every text the new model embeds is appended to LOG first, so the parent can count re-embedded
items.
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


def main() -> None:
    db_path, log, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import polyvec
    from polyvec.engine.upgrade import backfill as _backfill
    from polyvec.storage import upgrade

    put, step, switch = upgrade.put_shadow, _backfill.Backfill._batch, \
        _backfill.Backfill._switch

    def putting(*a: Any, **k: Any) -> Any:
        emit("P")
        return put(*a, **k)

    def batching(*a: Any, **k: Any) -> Any:
        out = step(*a, **k)
        emit("B")
        return out

    def switching(*a: Any, **k: Any) -> Any:
        emit("W")
        return switch(*a, **k)

    upgrade.put_shadow = putting  # type: ignore[assignment]
    _backfill.Backfill._batch = batching  # type: ignore[method-assign]
    _backfill.Backfill._switch = switching  # type: ignore[method-assign]
    coll = polyvec.connect(db_path).get_collection("c")
    emb = Logged(log)
    coll.register_model("emb", emb, name="v2")
    emit("R")
    coll.backfill("emb", "v2", batch_size=batch, progress=False)
    emit("DONE")


if __name__ == "__main__":
    main()
