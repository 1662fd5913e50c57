"""Cold start: numba kernels load from the on-disk cache in a new process, and a process's
first queries do not wait for numba's runtime (numpy twins / faiss answer meanwhile, with the
same results).

Each case runs a fresh interpreter, since what is measured is per process.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import polyvec as pv

SRC = Path(pv.__file__).resolve().parent
KERNELS = SRC / "_kernels"


def _run(code: str, **env: str) -> dict:
    full = {**os.environ, "PYTHONPATH": str(SRC.parent), **env}
    full.pop("POLYVEC_NUMBA_WARMUP", None)
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=full, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_kernel_is_a_closure() -> None:
    """numba cannot cache a function compiled inside another one across processes (its
    cache key hashes the captured cells): every njit in the kernels is module-level."""
    for path in sorted(KERNELS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for inner in ast.walk(node):
                if inner is node or not isinstance(inner, ast.FunctionDef):
                    continue
                for dec in inner.decorator_list:
                    text = ast.unparse(dec)
                    assert "njit" not in text and "jit(" not in text, \
                        f"{path.name}: {node.name}.{inner.name} is a kernel built at run time"


def test_lazy_njit_refuses_closures() -> None:
    from polyvec._kernels._numba import lazy_njit

    k = 2

    def loop(x):  # pragma: no cover - never compiled
        return x * k

    with pytest.raises(TypeError, match="captures"):
        lazy_njit()(loop)


WALK = """
import json, numpy as np, faiss
from polyvec._kernels._numba import warm_now
from polyvec._kernels.graph import GraphSearcher, graph_from_faiss
rng = np.random.default_rng(0)
x = rng.standard_normal((300, 16)).astype(np.float32)
index = faiss.IndexHNSWSQ(16, faiss.ScalarQuantizer.QT_8bit, 8, faiss.METRIC_INNER_PRODUCT)
index.train(x); index.add(x)
warm_now()
s = GraphSearcher(graph_from_faiss(index, False))
x.flags.writeable = False
s.search(x[:3], 16, 8, rerank=x, qr=x[:3], k=4)
s.search(x[:3], 16, 8, sel=np.ones(300, bool))
from polyvec._kernels._graph_numba import search
from polyvec._kernels.topk import _push_parallel, _push_serial
def n(d): return sum(d.values())
print(json.dumps({"hits": n(search.stats.cache_hits), "misses": n(search.stats.cache_misses),
                  "sigs": len(search.signatures),
                  "serial": _push_serial.compiled().py_func.__qualname__,
                  "parallel": _push_parallel.compiled().py_func.__qualname__}))
"""


def test_second_process_loads_the_walk_from_the_cache() -> None:
    _run(WALK)  # compiles (or loads) and writes the cache
    got = _run(WALK)
    assert got["misses"] == 0 and got["hits"] >= 1, got
    assert got["sigs"] == 1, "warm-up, refined and selective searches share one signature"
    # a parallel and a serial build of one loop are cached under names of their own
    assert got["serial"] == "_push_loop__nogil"
    assert got["parallel"] == "_push_loop__nogil__parallel"


FIRST_QUERY = """
import json, sys, numpy as np, polyvec as pv
from polyvec._kernels import _numba
c = pv.connect(sys.argv[1]).get_collection("c")
q = np.load(sys.argv[2])
first = c.search(q, k=5, ef=16, oversample=2)
warm_then = _numba._warm.is_set()
assert _numba.wait_warm(600)
later = c.search(q, k=5, ef=16, oversample=2)
from polyvec._kernels._graph_numba import search
print(json.dumps({"warm_at_first": warm_then, "first": first.ids.tolist(),
                  "later": later.ids.tolist(),
                  "sigs": len(search.signatures)}))
"""


def test_first_query_does_not_wait_for_numba(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2_000, 16)).astype(np.float32)
    db = pv.connect(tmp_path / "db")
    c = db.create_collection("c", {"v": pv.Dense(16, metric="cosine")}, segment_rows=2_000)
    c.add(list(range(len(x))), {"v": x})
    c.flush()
    c.create_index("v", "HNSW16,SQ8,Refine")
    db.close()
    np.save(tmp_path / "q.npy", x[:20] + 0.1 * rng.standard_normal((20, 16)).astype(np.float32))
    code = FIRST_QUERY.replace("sys.argv[1]", repr(str(tmp_path / "db"))) \
        .replace("sys.argv[2]", repr(str(tmp_path / "q.npy")))
    got = _run(code)
    # not warm after the first search, so not during it: faiss's walk and the numpy twins
    # answered it
    assert not got["warm_at_first"]
    assert got["sigs"] == 1  # the warm-up loaded the signature later searches use
    assert got["first"] == got["later"]
    sync = _run(code, POLYVEC_NUMBA_WARMUP="sync")
    assert sync["warm_at_first"] and sync["first"] == got["first"]


def test_finding_numba_does_not_import_it() -> None:
    """Importing numba takes ~0.5 s: a light kernel asking whether numba is there (a query
    check, the first query of a process) must not pay it in the caller's thread."""
    code = """
import json, sys
from polyvec._kernels._numba import have_numba
found = have_numba()
print(json.dumps({"found": found, "imported": "numba" in sys.modules}))
"""
    got = _run(code)
    assert got == {"found": True, "imported": False}


def test_a_process_that_only_adds_dense_vectors_never_starts_numba(tmp_path) -> None:
    """Checking a batch of dense vectors is numpy work: starting numba's runtime (~1 s) in a
    process that only writes would cost more than the whole ingest of tens of thousands of
    items (and the last, small batch of an ingest must not start it either)."""
    code = f"""
import json, sys
import numpy as np
import polyvec as pv
coll = pv.connect({str(tmp_path)!r}).create_collection("c", {{"v": pv.Dense(8)}},
                                                         indexed=["s"])
x = np.random.default_rng(0).standard_normal((1003, 8)).astype(np.float32)
for lo in range(0, 1003, 500):
    coll.add(list(range(lo, min(1003, lo + 500))), x[lo:lo + 500],
             [{{"s": str(i % 3)}} for i in range(lo, min(1003, lo + 500))])
print(json.dumps({{"n": len(coll), "numba": "numba" in sys.modules}}))
"""
    assert _run(code) == {"n": 1003, "numba": False}


def test_a_first_search_runs_before_numba_loads_and_starts_it_when_done(tmp_path: Path) -> None:
    """numba's import holds the GIL for ~1 s: loaded beside a process's first (numpy) exact
    scan it tripled that scan's time. The first search defers the warm-up to its own end."""
    x = np.random.default_rng(3).standard_normal((3_000, 16)).astype(np.float16)
    with pv.connect(tmp_path / "db") as db:
        db.create_collection("c", {"v": pv.Dense(16, dtype="f16")}).add(list(range(3000)),
                                                                         {"v": x})
        db.get_collection("c").flush()
    code = f"""
import json, sys, numpy as np, polyvec as pv
from polyvec._kernels import _numba
import polyvec.index.flat as flat
seen = []
real = flat.scan_dense
def spy(*a, **kw):
    seen.append(bool(_numba._warm_thread) or "numba" in sys.modules)
    return real(*a, **kw)
flat.scan_dense = spy
import polyvec.fields.dense as dense
dense.scan_dense = spy
c = pv.connect({str(tmp_path / "db")!r}).get_collection("c")
q = np.ones(16, np.float32)
first = c.search(q, k=3).ids.tolist()
started = bool(_numba._warm_thread)
assert _numba.wait_warm(600)
later = c.search(q, k=3).ids.tolist()
print(json.dumps({{"during": seen[0], "started": started, "same": first == later}}))
"""
    assert _run(code) == {"during": False, "started": True, "same": True}


FIRST_FILTERED = """
import json, sys, numpy as np, polyvec as pv
from polyvec._kernels import _numba
c = pv.connect(sys.argv[1]).get_collection("c")
q = np.load(sys.argv[2])
first = c.search(q, k=5, filter={"far": True})
warm_then = _numba._warm.is_set()
assert _numba.wait_warm(600)
later = c.search(q, k=5, filter={"far": True})
print(json.dumps({"warm_at_first": warm_then, "first": first.ids.tolist(),
                  "later": later.ids.tolist(), "plan": first.info.get("plan")}))
"""


def test_a_first_filtered_search_plans_like_later_ones(tmp_path: Path) -> None:
    """A new process's first filtered searches run while numba starts: the numpy twins walk
    and scan with the kernel's plan (faiss's selector walk would stop near the query and
    miss a filter far from it), so the first answer is the later one."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3_000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:1] + 0.05 * rng.standard_normal((1, 16)).astype(np.float32)
    far = (x @ q[0]) < np.quantile(x @ q[0], 0.4)  # the 40% of the rows farthest from q
    db = pv.connect(tmp_path / "db")
    c = db.create_collection("c", {"v": pv.Dense(16, metric="cosine")}, indexed=["far"])
    c.add(list(range(len(x))), {"v": x}, [{"far": bool(f)} for f in far])
    c.create_index("v", "HNSW16,SQ8,Refine")
    db.close()
    np.save(tmp_path / "q.npy", q)
    code = FIRST_FILTERED.replace("sys.argv[1]", repr(str(tmp_path / "db"))) \
        .replace("sys.argv[2]", repr(str(tmp_path / "q.npy")))
    got = _run(code)
    assert not got["warm_at_first"] and got["plan"]["selected"] == int(far.sum())
    s = x @ q[0]
    best = set(np.flatnonzero(far)[np.argsort(-s[far])[:5]].tolist())
    assert len(best & set(got["first"][0])) >= 4 and got["first"] == got["later"]
