"""Child process of tests/test_crash.py: writes batches ``start .. stop-1`` of a stream.

Usage: ``crash_writer.py FOLDER SEED START STOP``. Prints ``R`` once the collection is open,
``S i`` before starting batch i and ``A i SECONDS`` after the call for batch i returned (each
line flushed at once), so the parent knows which batches were acknowledged when it kills us
(and how long each kind of call takes, to aim its kills).

Probes (fault-injection points, best effort: a probe whose target was renamed is skipped)
also print ``P written`` after each sealed segment's files are written, ``P register`` just
before segments are registered in the catalog (inside the transaction, so the commit comes
next) and ``P rmtree`` before a folder is removed, so the parent can kill inside a seal or a
compaction at those points.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import durability_stream as stream  # noqa: E402


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def install_probes() -> int:
    import shutil

    import polyvec.collection as pc
    from polyvec.storage.catalog import Catalog

    n = 0
    if hasattr(pc, "write_segment"):
        write_segment = pc.write_segment

        def written(*args: Any, **kwargs: Any) -> Any:
            out = write_segment(*args, **kwargs)
            emit("P written")
            return out

        pc.write_segment = written
        n += 1
    if hasattr(Catalog, "register_segments"):
        register = Catalog.register_segments

        def registering(self: Any, *args: Any, **kwargs: Any) -> Any:
            emit("P register")
            return register(self, *args, **kwargs)

        Catalog.register_segments = registering  # type: ignore[method-assign]
        n += 1
    rmtree = shutil.rmtree

    def removing(*args: Any, **kwargs: Any) -> Any:
        emit("P rmtree")
        return rmtree(*args, **kwargs)

    shutil.rmtree = removing  # type: ignore[assignment]
    return n + 1


def main() -> None:
    folder, seed, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import polyvec

    coll = polyvec.connect(folder).get_collection(stream.COLLECTION)
    install_probes()  # after opening: the orphan sweep of open is not a probe point
    st = stream.Stream(seed)
    st.skip_to(start)
    out = sys.stdout
    out.write("R\n")
    out.flush()
    for i in range(start, stop):
        b = st.take()  # generated before the "S" line: the kill delay is all write
        assert b.index == i
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
