"""Child process of tests/test_refresh.py: a long-lived reader of one collection.

Usage: ``refresh_reader.py FOLDER``. Opens collection ``c`` once, prints ``READY``, then for
each ``check`` line on stdin prints one JSON line: what this reader sees (every id with its
payload and dense vector, and the top-5 of a fixed query) and how its mirror caught up
(``catch_ups``: full reloads and incremental catch-ups so far).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import polyvec


def main() -> None:
    db = polyvec.connect(sys.argv[1])
    coll = db.get_collection("c")
    print("READY", flush=True)
    q = np.linspace(-1, 1, 8).astype(np.float32)
    for line in sys.stdin:
        if line.strip() != "check":
            continue
        t0 = time.perf_counter()
        res = coll.search(q, k=5, field="d")
        ms = (time.perf_counter() - t0) * 1e3
        ids = sorted(coll, key=str)
        items = coll.get(ids)
        out = {"ids": [[type(k).__name__, k] for k in ids],
               "payloads": [it.payload for it in items if it is not None],
               "vectors": [it.vectors["d"].tolist() for it in items if it is not None],
               "top": [[type(k).__name__, k] for k in res.ids.tolist()],
               "len": len(coll), "ms": ms, "catch_ups": coll._store.catch_ups}
        print(json.dumps(out), flush=True)
    db.close()


if __name__ == "__main__":
    main()
