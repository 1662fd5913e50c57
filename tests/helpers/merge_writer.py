"""Child process of tests/test_merge_crash.py: writes batches ``start .. stop-1``.

Usage: ``merge_writer.py FOLDER START STOP``. Prints ``R`` once the collection is open,
``S i`` before and ``A i`` after batch i, and ``P <point>`` at each fault-injection point of
a merge (the engine's hook points ``merge.written``, ``merge.before_commit`` inside the
transaction, ``merge.committed`` before the old folders go), each line flushed at once.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import merge_stream as ms  # noqa: E402


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    folder, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import polyvec
    from polyvec.engine import hooks

    coll = polyvec.connect(folder).get_collection(ms.COLLECTION)
    for point in ("merge.written", "merge.before_commit", "merge.committed"):
        hooks.arm(point, lambda name: emit(f"P {name}"))
    model, next_id = ms.replay(start)
    emit("R")
    for i in range(start, stop):
        op, ids, vectors = ms.batch(i, model, next_id)
        next_id = ms.apply_model(model, next_id, op, ids, vectors)
        emit(f"S {i}")
        ms.apply(coll, op, ids, vectors)
        emit(f"A {i}")
    emit("DONE")


if __name__ == "__main__":
    main()
