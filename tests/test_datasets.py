"""Data-set loaders: each on its small real fixture, then the real sets.

Fixtures come from ``scripts/make_fixtures.py``. The two Debian-package sets are fetched with
``apt-get download`` into ``~/.cache/polyvec/debian`` the first time (about 45 MB, plus about
25 s to compute fashion-mnist's exact neighbours once); later runs read the cache.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from polyvec.errors import (
    CorruptFile,
    DimensionMismatch,
    DuplicateId,
    InvalidArgument,
    MissingExtra,
)
from polyvec.eval import _debian
from polyvec.eval.datasets import (
    DATASETS,
    Dataset,
    DatasetUnavailable,
    debian_minilm_folder,
    default_cache_dir,
    exact_neighbors,
    faq_dataset,
    load,
    load_ann_hdf5,
    load_beir,
    load_debian_minilm,
    load_fashion_mnist,
    load_python_faq,
    parse_faq_folder,
    read_idx,
)

FIX = Path(__file__).parent / "fixtures" / "datasets"
NEEDS_H5PY = "needs h5py: pip install 'polyvec[eval]'"
HDF5 = FIX / "fashion-mnist-200-10-euclidean.hdf5"


def brute_force(base: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """Independent oracle: every score, float64, higher is better."""
    b, q = base.astype(np.float64), queries.astype(np.float64)
    if metric == "l2":  # the direct formula, in slices of the base to bound memory
        return np.hstack([-((q[:, None, :] - b[None, lo : lo + 2000, :]) ** 2).sum(-1)
                          for lo in range(0, len(b), 2000)])
    if metric == "cosine":
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return q @ b.T


def assert_exact(neighbors: np.ndarray, scores: np.ndarray, *, rtol: float = 0.0) -> None:
    """``neighbors`` (rows of ``scores``' columns) are a true top-k: ties may swap places."""
    k = neighbors.shape[1]
    got = np.take_along_axis(scores, neighbors, axis=1)
    want = -np.sort(-scores, axis=1)[:, :k]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6 if rtol else 0)
    assert all(len(set(row)) == k for row in neighbors.tolist())


def has_deb(package: str) -> bool:
    return shutil.which("apt-get") is not None or (default_cache_dir() / package).is_dir()


# --------------------------------------------------------------------------- Dataset


def toy(**kw) -> Dataset:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, (12, 4)).astype(np.float32)
    args = dict(
        corpus=[{"id": f"d{i}", "text": f"doc {i}", "title": ""} for i in range(12)],
        queries=[{"id": f"q{i}", "text": f"query {i}"} for i in range(3)],
        qrels={"q0": {"d1": 1, "d7": 2}, "q1": {"d7": 1}, "q2": {"d3": 1}},
        base=base, query_vectors=base[[1, 7, 3]] + 0.5, metric="l2",
        payloads=[{"n": i} for i in range(12)],
    )
    args.update(kw)
    return Dataset("toy", **args).with_neighbors(5)


def test_dataset_validates_its_shape():
    ds = toy()
    assert ds.dim == 4 and ds.neighbors.shape == (3, 5) and ds.neighbors.dtype == np.int64
    with pytest.raises(ValueError):
        ds.base[0, 0] = 1.0  # arrays are read-only views
    mine = np.zeros((12, 4), np.float32)
    toy(base=mine, query_vectors=np.ones((3, 4), np.float32))
    mine[0, 0] = 1.0  # the caller's array is left writable
    with pytest.raises(DuplicateId):
        toy(queries=[{"id": "q", "text": ""}] * 3)
    with pytest.raises(InvalidArgument, match="expected \\(12, d\\)"):
        toy(base=np.zeros((11, 4), np.float32))
    with pytest.raises(DimensionMismatch):
        toy(query_vectors=np.zeros((3, 5), np.float32))
    with pytest.raises(InvalidArgument, match="payloads"):
        toy(payloads=[{}])
    with pytest.raises(InvalidArgument, match="metric"):
        toy(metric="manhattan")
    assert ds.describe() == ("toy: 12 docs, 3 queries, 3 judged (1.3 rel/query), vectors 4-d "
                             "float32, neighbors k=5, metric l2, payloads ['n']")


def test_head_and_subset():
    ds = toy()
    head = ds.head(2)
    assert [q["id"] for q in head.queries] == ["q0", "q1"] and set(head.qrels) == {"q0", "q1"}
    np.testing.assert_array_equal(head.neighbors, ds.neighbors[:2])
    sub = ds.subset(docs=[0, 1, 2, 3, 5, 8], queries=np.array([True, False, True]))
    assert [d["id"] for d in sub.corpus] == ["d0", "d1", "d2", "d3", "d5", "d8"]
    assert sub.qrels == {"q0": {"d1": 1}, "q2": {"d3": 1}}  # d7 left, q1 dropped
    assert [p["n"] for p in sub.payloads] == [0, 1, 2, 3, 5, 8]
    assert sub.neighbors.shape == (2, 5)  # recomputed over the kept rows
    assert_exact(sub.neighbors, brute_force(sub.base, sub.query_vectors, "l2"))


def test_exact_neighbors_backends_agree_with_ties():
    base = np.load(FIX / "debian-minilm" / "base_f16.npy").astype(np.float32)
    q = np.load(FIX / "debian-minilm" / "queries_f16.npy").astype(np.float32)
    pixels = np.round(base * 8)  # coarse integer data: many exact ties
    for data, queries in ((base, q), (pixels, np.round(q * 8))):
        for metric in ("l2", "dot", "cosine"):
            ids, scores = exact_neighbors(data, queries, 10, metric=metric)
            full = brute_force(data, queries, metric)
            assert_exact(ids, full, rtol=1e-9)
            fids, fscores = exact_neighbors(data, queries, 10, metric=metric, backend="faiss")
            np.testing.assert_allclose(fscores, scores, rtol=1e-9)
            if metric != "cosine":  # exact scores (no re-normalization): same tie-breaking
                np.testing.assert_array_equal(fids, ids)
    ids, _ = exact_neighbors(pixels, pixels[:3], 4, metric="l2")
    ties = -brute_force(pixels, pixels[:3], "l2")
    for row, got in zip(ties, ids, strict=True):  # ties go to the lower row
        want = sorted(range(len(row)), key=lambda j: (row[j], j))[:4]
        assert got.tolist() == want
    with pytest.raises(InvalidArgument):
        exact_neighbors(base, q, 0, metric="l2")
    with pytest.raises(DimensionMismatch):
        exact_neighbors(base, q[:, :3], 1, metric="l2")


# --------------------------------------------------------------------------- BEIR


def test_beir_fixture():
    ds = load_beir(FIX / "beir")
    assert ds.name == "beir:beir" and len(ds.corpus) == 30 and len(ds.queries) == 5
    assert [q["id"] for q in ds.queries] == ["q0", "q1", "q2", "q3", "q4"]  # q5 is dev only
    doc_ids = {d["id"] for d in ds.corpus}
    assert all(set(rel) <= doc_ids for rel in ds.qrels.values())
    assert set(ds.qrels) == {q["id"] for q in ds.queries}
    assert all(d["title"] and d["text"] and "section" in d["metadata"] for d in ds.corpus)
    assert ds.base is None and ds.neighbors is None and ds.metric is None
    dev = load_beir(FIX / "beir", split="dev")
    assert [q["id"] for q in dev.queries] == ["q5"] and len(dev.qrels["q5"]) == 1


def test_beir_errors(tmp_path):
    folder = tmp_path / "beir"
    shutil.copytree(FIX / "beir", folder)
    (folder / "qrels" / "test.tsv").unlink()
    with pytest.raises(DatasetUnavailable, match="no qrels for split 'test'.*\\['dev'\\]"):
        load_beir(folder)
    with pytest.raises(FileNotFoundError):  # DatasetUnavailable is one
        load_beir(folder, split="train")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq5\t1\tbad\n")
    # match on .reason: str(CorruptFile) is mangled by OSError's filename formatting
    with pytest.raises(CorruptFile) as err:
        load_beir(folder, split="dev")
    assert err.value.reason.startswith("line 2: expected")
    (folder / "qrels" / "dev.tsv").write_text("q9\t1\t1\n")
    with pytest.raises(CorruptFile) as err:
        load_beir(folder, split="dev")
    assert err.value.reason == "line 1: query 'q9' not in queries"


# --------------------------------------------------------------------------- ann-benchmarks HDF5


def test_ann_hdf5_fixture():
    pytest.importorskip("h5py", reason=NEEDS_H5PY)
    ds = load_ann_hdf5(HDF5)
    assert ds.base.shape == (200, 784) and ds.query_vectors.shape == (10, 784)
    assert ds.base.dtype == np.float32 and ds.metric == "l2"
    assert ds.neighbors.shape == (10, 100) and ds.neighbors.dtype == np.int64
    assert ds.info["attrs"]["distance"] == "euclidean" and ds.qrels == {}
    scores = brute_force(ds.base, ds.query_vectors, "l2")
    assert_exact(ds.neighbors, scores)  # integer pixels: exact
    want = np.sqrt(-np.take_along_axis(scores, ds.neighbors, axis=1))
    np.testing.assert_allclose(ds.info["distances"], want, rtol=1e-6)


def test_ann_hdf5_angular_and_unsupported(tmp_path):
    h5py = pytest.importorskip("h5py", reason=NEEDS_H5PY)
    src = load_ann_hdf5(HDF5)
    for distance, metric in (("angular", "cosine"), ("jaccard", None)):
        path = tmp_path / f"x-{distance}.hdf5"
        with h5py.File(path, "w") as f:
            f.attrs["distance"] = distance
            f["train"], f["test"] = src.base, src.query_vectors
        if metric is None:
            with pytest.raises(InvalidArgument, match="jaccard"):
                load_ann_hdf5(path)
        else:
            ds = load_ann_hdf5(path)
            assert ds.metric == metric and ds.neighbors is None


def test_ann_hdf5_without_h5py(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'polyvec\[eval\]'"):
        load_ann_hdf5(HDF5)


# --------------------------------------------------------------------------- Python FAQ


def test_faq_parser_on_fixture_pages():
    pairs = parse_faq_folder(FIX / "faq")
    assert [(p.page, p.question) for p in pairs] == [
        ("gui", "What GUI toolkits exist for Python?"),
        ("gui", "How do I freeze Tkinter applications?"),
        ("gui", "Can I have Tk events handled while waiting for I/O?"),
        ("gui", "I can’t get key bindings to work in Tkinter: why?"),
        ("installed", "What is Python?"),
        ("installed", "Why is Python installed on my machine?"),
        ("installed", "Can I delete Python?"),
    ]  # gui's "General GUI Questions" is a heading with no answer
    assert [p.section for p in pairs[:4]] == ["", "Tkinter questions", "Tkinter questions",
                                             "Tkinter questions"]
    assert all(p.answer and "¶" not in p.answer + p.question for p in pairs)
    assert pairs[4].answer.startswith("Python is a programming language.")
    ds = faq_dataset(pairs)
    assert ds.corpus[1]["title"] == "Graphic User Interface FAQ: Tkinter questions"
    assert ds.corpus[1]["id"] == "gui#how-do-i-freeze-tkinter-applications"
    assert all(ds.qrels[q["id"]] == {q["id"]: 1} for q in ds.queries)
    assert ds.payloads[4] == {"page": "installed", "question": "What is Python?", "section": ""}


# --------------------------------------------------------------------------- debian-minilm


def test_debian_minilm_fixture():
    ds = load_debian_minilm(FIX / "debian-minilm")
    assert len(ds.corpus) == 50 and len(ds.queries) == 5 and ds.metric == "cosine"
    assert ds.base.shape == (50, 384) and ds.base.dtype == np.float32
    assert ds.neighbors.shape == (5, 10)
    assert_exact(ds.neighbors, brute_force(ds.base, ds.query_vectors, "dot"), rtol=1e-6)
    assert all(set(rel) <= {d["id"] for d in ds.corpus} for rel in ds.qrels.values())
    assert set(ds.payloads[0]) == {"package", "source", "section", "synopsis"}
    assert ds.corpus[0]["title"] == "" and ds.payloads[0]["package"]  # description alone
    mv = load_debian_minilm(FIX / "debian-minilm", mv_subset=True)
    assert mv.name == "debian-minilm-mv" and len(mv.corpus) == 20 and len(mv.queries) == 5
    assert set(mv.qrels) == {q["id"] for q in mv.queries}
    assert_exact(mv.neighbors, brute_force(mv.base, mv.query_vectors, "dot"), rtol=1e-6)


def test_debian_minilm_fixture_matches_shared_rows():
    shared = shared_data("debian-minilm", "base_f16.npy")
    rows = json.loads((FIX / "debian-minilm" / "source_rows.json").read_text())
    fixture = np.load(FIX / "debian-minilm" / "base_f16.npy")
    full = np.load(shared / "base_f16.npy", mmap_mode="r")
    np.testing.assert_array_equal(fixture, full[rows["docs"]])


def test_debian_minilm_folder_lookup(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYVEC_DATA", str(FIX))  # the folder that holds debian-minilm/
    assert load_debian_minilm().info["path"] == str(FIX / "debian-minilm")
    with pytest.raises(DatasetUnavailable, match="lacks"):
        load_debian_minilm(tmp_path)


@pytest.fixture(scope="module")
def minilm() -> Dataset:
    return load_debian_minilm(shared_data("debian-minilm"))


def test_debian_minilm_default_folder_is_the_shared_one_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("POLYVEC_DATA", raising=False)
    folder = shared_data("debian-minilm", "docs.jsonl")
    assert debian_minilm_folder().resolve() == folder.resolve()


def test_debian_minilm_full(minilm):
    ds = minilm
    assert ds.base.shape == (58026, 384) and ds.query_vectors.shape == (2000, 384)
    assert ds.neighbors.shape == (2000, 100) and len(ds.qrels) == 2000
    assert ds.corpus[0] == {"id": "0", "text": ds.corpus[0]["text"], "title": ""}
    assert ds.payloads[0]["package"] == "0ad"
    assert all(len(rel) == 1 for rel in ds.qrels.values())
    pick = [0, 777, 1999]  # gt was made in float32 on the float16 rows: ties within 1e-5
    assert_exact(ds.neighbors[pick], brute_force(ds.base, ds.query_vectors[pick], "dot"),
                 rtol=1e-5)


def test_debian_minilm_mv_subset():
    ds = load_debian_minilm(shared_data("debian-minilm"), mv_subset=True)
    assert len(ds.corpus) == 10000 and len(ds.queries) == 1000 and len(ds.qrels) == 1000
    ids = [d["id"] for d in ds.corpus]
    assert ids == sorted(ids, key=int) and ds.queries[-1]["id"] == "999"
    pick = [0, 500, 999]
    assert_exact(ds.neighbors[pick], brute_force(ds.base, ds.query_vectors[pick], "dot"),
                 rtol=1e-9)


# --------------------------------------------------------------------------- Debian packages


def test_read_idx_roundtrip_and_corrupt(tmp_path):
    pytest.importorskip("h5py", reason=NEEDS_H5PY)
    images = load_ann_hdf5(HDF5).query_vectors.astype(np.uint8).reshape(10, 28, 28)
    head = bytes([0, 0, 0x08, 3]) + np.array(images.shape, ">u4").tobytes()
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(head + images.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), images)
    (tmp_path / "short").write_bytes(head + images.tobytes()[:-1])
    with pytest.raises(CorruptFile) as err:
        read_idx(tmp_path / "short")
    assert "expected 7856 bytes" in err.value.reason
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(CorruptFile) as err:
        read_idx(tmp_path / "junk")
    assert err.value.reason.startswith("not an IDX file")


def test_fetch_without_apt_says_what_to_run(monkeypatch, tmp_path):
    which = shutil.which
    monkeypatch.setattr(_debian.shutil, "which", lambda name: None if name == "apt-get" else
                        which(name))
    with pytest.raises(DatasetUnavailable, match="apt-get, which is not available here; run "
                       "`apt-get update && apt-get download dataset-fashion-mnist`"):
        load_fashion_mnist(tmp_path)
    monkeypatch.setattr(_debian.shutil, "which", lambda name: None)
    with pytest.raises(DatasetUnavailable, match="needs Debian's dpkg-deb"):
        load_python_faq(tmp_path)
    monkeypatch.setattr(_debian.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(_debian, "_run", lambda cmd, cwd: _debian.subprocess.CompletedProcess(
        cmd, 100, "", "E: Unable to locate package dataset-fashion-mnist"))
    with pytest.raises(DatasetUnavailable, match="Unable to locate package"):
        load_fashion_mnist(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-made is left behind


@pytest.mark.skipif(not has_deb("dataset-fashion-mnist"),
                    reason="needs apt-get to download the Debian package dataset-fashion-mnist")
def test_fashion_mnist_real(monkeypatch):
    load_fashion_mnist()  # first call may download and compute neighbours; this one is cached
    monkeypatch.setattr(_debian, "_run", lambda *a, **k: pytest.fail("cached set ran a command"))
    ds = load_fashion_mnist()
    assert ds.base.shape == (60000, 784) and ds.query_vectors.shape == (10000, 784)
    assert ds.neighbors.shape == (10000, 100) and ds.metric == "l2"
    assert ds.info["debian"]["package"] == "dataset-fashion-mnist"
    assert {p["label"] for p in ds.payloads} == set(range(10)) and ds.queries[0]["label"] == 9
    if _has_h5py():  # the fixture is a real slice of this set
        np.testing.assert_array_equal(load_ann_hdf5(HDF5).base, ds.base[:200])
    pick = [0, 4321, 9999]
    assert_exact(ds.neighbors[pick], brute_force(ds.base, ds.query_vectors[pick], "l2"))


def _has_h5py() -> bool:
    try:
        import h5py  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not has_deb("python3.11-doc"),
                    reason="needs apt-get to download the Debian package python3.11-doc")
def test_python_faq_real():
    ds = load_python_faq()
    # 179 answered questions in python3.11-doc 3.11.2 (see load_python_faq's note)
    assert len(ds.corpus) == len(ds.queries) == len(ds.qrels) == 179
    pages = [p["page"] for p in ds.payloads]
    assert {pg: pages.count(pg) for pg in dict.fromkeys(pages)} == {
        "general": 23, "programming": 67, "design": 28, "library": 28,
        "extending": 17, "windows": 9, "gui": 4, "installed": 3}
    assert ds.queries[0] == {"id": "general#what-is-python", "text": "What is Python?"}
    assert ds.corpus[0]["title"] == "General Python FAQ: General Information"
    assert min(len(d["text"]) for d in ds.corpus) > 10


# --------------------------------------------------------------------------- registry


def test_load_by_name_and_path(monkeypatch):
    assert set(DATASETS) == {"beir", "ann-hdf5", "debian-minilm", "fashion-mnist", "python-faq"}
    assert len(load(FIX / "beir").queries) == 5
    assert len(load(str(FIX / "debian-minilm")).corpus) == 50
    monkeypatch.setenv("POLYVEC_DATA", str(FIX))
    assert len(load("debian-minilm").corpus) == 50
    if _has_h5py():
        assert load(HDF5).base.shape == (200, 784)
    with pytest.raises(InvalidArgument, match="expected a name in"):
        load("no-such-set")
