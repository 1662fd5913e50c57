"""Reader process of tests/test_upgrade_crash.py: searches with the new model during a backfill.

Usage: ``backfill_reader.py DB QUERIES.npy STOPFILE OUT.json``. Searches ``model="v2"`` in a
loop until STOPFILE exists, then writes ``{"searches", "errors", "routes"}`` to OUT.json. A
result with fewer than k hits, or any exception, is an error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter


def main() -> None:
    db_path, queries, stop, out = sys.argv[1:5]
    import numpy as np

    import polyvec

    q = np.load(queries)
    coll = polyvec.connect(db_path).get_collection("c")
    print("R", flush=True)
    searches, errors, routes = 0, [], Counter()
    while not os.path.exists(stop):
        try:
            res = coll.search(q, 5, model="v2")
            if any(x is None for x in res.ids.ravel()):
                errors.append(f"missing hits: {res.ids.tolist()}")
            routes[res.info["route"]] += 1
        except Exception as e:  # noqa: BLE001 - every failure is recorded for the parent
            errors.append(f"{type(e).__name__}: {e}")
        searches += 1
        time.sleep(0.02)
    with open(out, "w") as f:
        json.dump({"searches": searches, "errors": errors[:20], "routes": routes}, f)


if __name__ == "__main__":
    main()
