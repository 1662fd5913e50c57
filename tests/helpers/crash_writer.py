"""Child process of tests/test_crash.py: writes batches ``start .. stop-1`` of a stream.

Usage: ``crash_writer.py FOLDER SEED START STOP [POINT TARGET MODE]``. Prints ``R`` once the
collection is open, ``S i`` before starting batch i and ``A i SECONDS`` after the call for
batch i returned (each line flushed at once), so the parent knows which batches were
acknowledged when it kills us (and how long each kind of call takes, to aim its kills).

With ``POINT TARGET MODE``, the engine's hook point POINT (a name of
``polyvec.engine.hooks.POINTS``; it is armed at startup, so an unknown name fails this process)
acts while batch TARGET is written: it prints ``P POINT``, and in MODE ``fault`` kills this
process with SIGKILL right there (in MODE ``probe`` the parent kills it a few microseconds
later, somewhere in the next step).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import durability_stream as stream  # noqa: E402


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    folder, seed, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    point, target, mode = (sys.argv[5], int(sys.argv[6]), sys.argv[7]) if len(sys.argv) > 5 \
        else (None, -1, "")
    import polyvec
    from polyvec.engine import hooks

    coll = polyvec.connect(folder).get_collection(stream.COLLECTION)
    batch = start - 1  # the batch being written

    def probe(name: str) -> None:
        if batch == target:
            emit(f"P {name}")
            if mode == "fault":
                hooks.kill(name)

    if point is not None:  # after opening: the orphan sweep of open is not a probe point
        hooks.arm(point, probe)
    st = stream.Stream(seed)
    st.skip_to(start)
    out = sys.stdout
    out.write("R\n")
    out.flush()
    for i in range(start, stop):
        b = st.take()  # generated before the "S" line: the kill delay is all write
        assert b.index == i
        batch = i
        out.write(f"S {i}\n")
        out.flush()
        t0 = time.perf_counter()
        b.apply(coll)
        out.write(f"A {i} {time.perf_counter() - t0:.6f}\n")
        out.flush()
    out.write("DONE\n")
    out.flush()


if __name__ == "__main__":
    main()
