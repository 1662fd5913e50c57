"""Multi-vector indexes (FDE stacks, token index) in collections: exact MaxSim is the oracle.

Real MiniLM token vectors of 200 Debian descriptions and 40 queries (tests/fixtures/
mv_tokens.npz). The segment-size threshold of the planner is lowered so that the fixture's
one segment is indexed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import polyvec as pv
from polyvec.errors import CorruptFile, InvalidArgument
from polyvec.factory import format_multi_index, parse_multi_index
from polyvec.index_spec import MultiIndexSpec
from polyvec.multivector import maxsim_scores, planner
from polyvec.multivector.planner import MultiQueryParams, build_multi_index

FIXTURE = Path(__file__).parent / "fixtures" / "mv_tokens.npz"
K = 10
# engine -> (factory string, candidates per query, declared mean recall@10 vs exact MaxSim);
# measured on the fixture: 0.875, 0.875, 0.668, 0.94, 0.935
ENGINES = {
    "fde-flat": ("FDE,Flat", 50, 0.82),
    "fde-hnsw": ("FDE,HNSW16", 50, 0.82),
    "fde-pq": ("FDE(r=10),PQ64x4", 50, 0.60),
    "tokens-2bit": ("TokenIndex(nbits=2)", 50, 0.88),
    "tokens-4bit": ("TokenIndex(nbits=4)", 50, 0.88),
}


@pytest.fixture(scope="module")
def mv() -> dict[str, np.ndarray]:
    z = np.load(FIXTURE)
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def queries(mv: dict[str, np.ndarray]) -> list[np.ndarray]:
    qt, qo = mv["query_tokens"].astype(np.float32), mv["query_offsets"]
    return [qt[qo[i]:qo[i + 1]] for i in range(len(qo) - 1)]


def _exact(mv: dict[str, np.ndarray], queries: list[np.ndarray], rows: np.ndarray | None = None,
           k: int = K) -> list[list[int]]:
    """Exact MaxSim top-k rows (restricted to ``rows``)."""
    dt = mv["doc_tokens"].astype(np.float32)
    out = []
    for q in queries:
        s = maxsim_scores(q, dt, mv["doc_offsets"])
        cand = np.arange(len(s)) if rows is None else rows
        out.append(cand[np.argsort(-s[cand], kind="stable")[:k]].tolist())
    return out


def _recall(got: list[list[int]], want: list[list[int]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, want, strict=True)]))


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planner, "EXACT_SEGMENT_ROWS", 100)


def _collection(tmp_path: Path, mv: dict[str, np.ndarray]) -> tuple[pv.Database, pv.Collection]:
    db = pv.connect(tmp_path / "db")
    n = len(mv["doc_offsets"]) - 1
    coll = db.create_collection("c", {"tokens": pv.Multi(128, dtype="f16")},
                                indexed=["section"], segment_rows=n)
    do = mv["doc_offsets"]
    sets = [mv["doc_tokens"][do[i]:do[i + 1]] for i in range(n)]
    coll.add(list(range(n)), {"tokens": sets}, [{"section": str(s)} for s in mv["section"]])
    return db, coll


# ------------------------------------------------------------------------------- factory


@pytest.mark.parametrize("text", ["FDE,Flat", "FDE(r=10,k=4,d=8,final=1024,seed=3),HNSW32",
                                  "FDE,IVF64,PQ64", "FDE(d=32),Proj64,HNSW16,SQ8",
                                  "TokenIndex", "TokenIndex(nbits=4,centroids=512,seed=1)"])
def test_factory_round_trip(text: str) -> None:
    spec = parse_multi_index(text)
    assert format_multi_index(spec) == text
    assert parse_multi_index(format_multi_index(spec)) == spec
    assert MultiIndexSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(("text", "match"), [
    ("HNSW32", "FDE"), ("FDE(z=3),Flat", "unknown option"), ("FDE,HNSW32,Refine", "Refine"),
    ("TokenIndex(nbits=3)", "nbits"), ("TokenIndex,HNSW32", "no stack"),
    ("FDE(r=0)", "r_reps"), ("FDE(r=2,r=3)", "twice")])
def test_factory_rejects_bad_strings(text: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        parse_multi_index(text)


def test_canonical_forms() -> None:
    assert format_multi_index(parse_multi_index("FDE(r=20,k=5,d=16)")) == "FDE,Flat"
    assert format_multi_index(parse_multi_index("TokenIndex(nbits=2)")) == "TokenIndex"


# ------------------------------------------------------------------------------- engines


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_recall_vs_exact_maxsim(mv: dict[str, np.ndarray], queries: list[np.ndarray],
                                       engine: str, tmp_path: Path) -> None:
    text, cand, floor = ENGINES[engine]
    dt, do = mv["doc_tokens"], mv["doc_offsets"]
    idx = build_multi_index(dt, do, parse_multi_index(text))
    _, rows, info = idx.search(queries, K, dt, do, params=MultiQueryParams(candidates=cand))
    assert info["stages"][1] == "maxsim-rerank"
    assert info["candidates"] == cand * len(queries)
    assert _recall(rows.tolist(), _exact(mv, queries)) >= floor
    # the rerank is exact: any returned row that exact MaxSim ranks in its top-k is scored
    # exactly, so a search over every document returns the exact answer
    every = MultiQueryParams(candidates=200, nprobe=4096)
    _, full, _ = idx.search(queries[:5], K, dt, do, params=every)
    assert full.tolist() == _exact(mv, queries[:5])
    # reopen from disk
    idx.save(tmp_path / "i")
    again = planner.load_multi_index(parse_multi_index(text), tmp_path / "i")
    _, rows2, _ = again.search(queries, K, dt, do, params=MultiQueryParams(candidates=cand))
    np.testing.assert_array_equal(rows, rows2)


def test_rerank_depth_and_selection(mv: dict[str, np.ndarray], queries: list[np.ndarray]
                                    ) -> None:
    dt, do = mv["doc_tokens"], mv["doc_offsets"]
    idx = build_multi_index(dt, do, parse_multi_index("FDE,Flat"))
    _, _, info = idx.search(queries[:3], K, dt, do,
                            params=MultiQueryParams(candidates=60, rerank_depth=20))
    assert info["reranked"] == 60 and info["params"]["rerank_depth"] == 20
    sel = np.zeros(len(do) - 1, dtype=bool)
    sel[::2] = True
    _, rows, info = idx.search(queries, K, dt, do, selection=sel,
                               params=MultiQueryParams(candidates=40))
    assert sel[rows[rows >= 0]].all()
    assert info["stages"] == ["fde", "maxsim-rerank"]
    few = np.zeros_like(sel)
    few[[3, 50, 77]] = True  # fewer than the rerank depth: exact over the three
    _, rows, info = idx.search(queries[:2], K, dt, do, selection=few)
    assert info["stages"] == ["exact-maxsim(selected)"]
    assert rows[:, :3].tolist() == _exact(mv, queries[:2], np.array([3, 50, 77]), 3)
    assert (rows[:, 3:] == -1).all()


# ------------------------------------------------------------------------------- collections


@pytest.mark.parametrize("text", ["FDE,HNSW16", "TokenIndex(nbits=2)"])
def test_collection_index_filters_deletes_reopen(tmp_path: Path, mv: dict[str, np.ndarray],
                                                 queries: list[np.ndarray], text: str,
                                                 small_segments: None) -> None:
    db, coll = _collection(tmp_path, mv)
    exact = coll.search(queries, K, candidates=None)
    assert exact.info["strategy"] == "exact"
    coll.create_index("tokens", text)
    res = coll.search(queries, K, candidates=50)
    assert res.info["strategy"] == "index" and res.info["index"] == text.replace(
        "(nbits=2)", "")
    assert res.info["stages"][1] == "maxsim-rerank"
    assert res.info["candidates"] == 50 * len(queries)
    assert _recall(res.ids.tolist(), exact.ids.tolist()) >= 0.82
    assert coll.index_info()["tokens"]["ram_bytes_per_token"] > 0

    # a filter: results agree with exact MaxSim over the subset
    sections = mv["section"]
    common = max(set(sections.tolist()), key=sections.tolist().count)
    subset = np.flatnonzero(sections == common)
    got = coll.search(queries, K, filter={"section": str(common)}, candidates=50)
    assert {i for r in got.ids.tolist() for i in r if i is not None} <= set(subset.tolist())
    assert _recall(got.ids.tolist(), _exact(mv, queries, subset)) >= 0.9
    rare = [s for s in set(sections.tolist()) if 0 < sections.tolist().count(s) <= 5][0]
    few = np.flatnonzero(sections == rare)
    got = coll.search(queries[:4], K, filter={"section": str(rare)})
    assert got.info["stages"] == ["exact-maxsim(selected)"]
    assert [[i for i in r if i is not None] for r in got.ids.tolist()] == _exact(
        mv, queries[:4], few, len(few))

    # deletes: the exact top hits of every query disappear from the indexed results
    gone = sorted({r[0] for r in exact.ids.tolist()})
    coll.delete(gone)
    after = coll.search(queries, K, candidates=50)
    assert not set(after.ids.ravel().tolist()) & set(gone)

    # reopen: the index comes back from disk and answers the same
    db.close()
    db2 = pv.connect(tmp_path / "db")
    coll2 = db2.get_collection("c")
    again = coll2.search(queries, K, candidates=50)
    assert again.info["strategy"] == "index"
    np.testing.assert_array_equal(again.ids, after.ids)
    db2.close()


def test_new_segments_are_indexed_and_errors(tmp_path: Path, mv: dict[str, np.ndarray],
                                             queries: list[np.ndarray],
                                             small_segments: None) -> None:
    db, coll = _collection(tmp_path, mv)
    coll.create_index("tokens", "FDE(r=8),Flat")
    do = mv["doc_offsets"]
    more = [mv["doc_tokens"][do[i]:do[i + 1]] for i in range(120)]
    coll.add([f"x{i}" for i in range(120)], {"tokens": more})
    coll.flush()
    res = coll.search(queries[:3], K, candidates=40)
    assert res.info["segments"] == {"indexed": 2, "exact": 0}  # the growing one is empty
    assert coll.index_info()["tokens"]["segments_indexed"] == 2
    with pytest.raises(InvalidArgument, match="target_recall"):
        coll.search(queries[0], K, target_recall=0.9)
    with pytest.raises(InvalidArgument, match="oversample"):
        coll.search(queries[0], K, oversample=2.0)
    with pytest.raises(InvalidArgument, match="candidates"):
        coll.search(queries[0], K, candidates=0)
    with pytest.raises(InvalidArgument, match="Multi"):
        coll.create_index("tokens", "HNSW32")
    # a flipped byte in an index file is caught on open
    folder = next((tmp_path / "db" / "c" / "indexes").iterdir())
    victim = next(p for p in sorted(folder.rglob("*.npy")) if p.stat().st_size > 1000)
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    db.close()
    with pytest.raises(CorruptFile):
        pv.connect(tmp_path / "db").get_collection("c")
