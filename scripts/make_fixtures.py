"""Build the small, real data-set fixtures under ``tests/fixtures/datasets/``.

Run from the repository root: ``PYTHONPATH=src .venv/bin/python scripts/make_fixtures.py``.
Needs the shared debian-minilm set, h5py, and apt-get (the two Debian packages are fetched into
the polyvec cache on first use). Deterministic: a second run rewrites identical bytes.

What it writes (everything is cut from real data; no number is made up):

- ``beir/``: 30 debian-minilm documents and 6 queries in BEIR layout; ``qrels/test.tsv`` judges
  queries q0-q4, ``qrels/dev.tsv`` judges q5.
- ``fashion-mnist-200-10-euclidean.hdf5``: fashion-mnist train rows 0-199 and test rows 0-9 in
  the ann-benchmarks layout and attributes, with exact top-100 neighbours by brute force.
- ``faq/``: two FAQ pages (``installed.html``, ``gui.html``) copied verbatim from python3.11-doc.
- ``debian-minilm/``: the same file layout as the shared set, for 50 documents (rows 0-44 and
  the relevant documents of queries 0-4) and queries 0-4, renumbered; neighbours are the exact
  inner-product top-10 over those 50; ``source_rows.json`` maps back to the full set.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from polyvec.eval._debian import fetch_deb
from polyvec.eval.datasets import debian_minilm_folder, exact_neighbors, read_idx

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "datasets"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def make_beir(src: Path, out: Path) -> None:
    docs = [json.loads(line) for line in (src / "docs.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (src / "queries.jsonl").open(encoding="utf-8")][:6]
    relevant = {q["doc_id"] for q in queries}
    others = np.random.default_rng(0).choice(np.arange(1000), 40, replace=False).tolist()
    chosen = sorted(relevant | set([x for x in others if x not in relevant][: 30 - len(relevant)]))
    (out / "qrels").mkdir(parents=True)
    _write_jsonl(out / "corpus.jsonl", [
        {"_id": str(docs[i]["id"]), "title": docs[i]["package"], "text": docs[i]["description"],
         "metadata": {"section": docs[i]["section"]}} for i in chosen])
    _write_jsonl(out / "queries.jsonl", [{"_id": f"q{q['qid']}", "text": q["text"]}
                                         for q in queries])
    for split, qs in (("test", queries[:5]), ("dev", queries[5:])):
        lines = ["query-id\tcorpus-id\tscore"] + [f"q{q['qid']}\t{q['doc_id']}\t1" for q in qs]
        (out / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def make_ann_hdf5(path: Path) -> None:
    import h5py

    data = fetch_deb("dataset-fashion-mnist") / "usr/share/datasets/fashion-mnist"
    train = read_idx(data / "train-images-idx3-ubyte.gz")[:200].reshape(200, -1)
    test = read_idx(data / "t10k-images-idx3-ubyte.gz")[:10].reshape(10, -1)
    train, test = train.astype(np.float32), test.astype(np.float32)  # as ann-benchmarks stores
    ids, scores = exact_neighbors(train, test, 100, metric="l2")
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["type"] = "dense"
        f.attrs["distance"] = "euclidean"
        f.attrs["dimension"] = train.shape[1]
        f.attrs["point_type"] = "float"
        opts = {"compression": "gzip", "compression_opts": 9, "shuffle": True,
                "track_times": False}
        f.create_dataset("train", data=train, **opts)
        f.create_dataset("test", data=test, **opts)
        f.create_dataset("neighbors", data=ids.astype(np.int32), **opts)
        f.create_dataset("distances", data=np.sqrt(-scores).astype(np.float32), **opts)


def make_faq(out: Path) -> None:
    faq = fetch_deb("python3.11-doc") / "usr/share/doc/python3.11/html/faq"
    out.mkdir(parents=True)
    for page in ("installed.html", "gui.html"):
        shutil.copyfile(faq / page, out / page)


def make_minilm(src: Path, out: Path) -> None:
    docs = [json.loads(line) for line in (src / "docs.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (src / "queries.jsonl").open(encoding="utf-8")][:5]
    rows = sorted(set(range(45)) | {q["doc_id"] for q in queries})
    if len(rows) != 50:
        sys.exit(f"expected 50 fixture docs, got {len(rows)}")
    new = {old: i for i, old in enumerate(rows)}
    out.mkdir(parents=True)
    _write_jsonl(out / "docs.jsonl", [{**docs[old], "id": new[old]} for old in rows])
    _write_jsonl(out / "queries.jsonl", [{**q, "doc_id": new[q["doc_id"]]} for q in queries])
    (out / "qrels.tsv").write_text("".join(f"{q['qid']}\t{new[q['doc_id']]}\t1\n"
                                           for q in queries))
    base16 = np.load(src / "base_f16.npy", mmap_mode="r")[rows]
    q16 = np.load(src / "queries_f16.npy", mmap_mode="r")[: len(queries)]
    np.save(out / "base_f16.npy", np.ascontiguousarray(base16))
    np.save(out / "queries_f16.npy", np.ascontiguousarray(q16))
    ids, scores = exact_neighbors(base16.astype(np.float32), q16.astype(np.float32), 10,
                                  metric="dot")
    np.save(out / "gt_top100_ids.npy", ids.astype(np.int32))
    np.save(out / "gt_top100_scores.npy", scores.astype(np.float32))
    relevant = sorted({new[q["doc_id"]] for q in queries})
    rest = [i for i in np.random.default_rng(0).permutation(50).tolist() if i not in relevant]
    np.save(out / "mv_doc_ids.npy", np.array(sorted(relevant + rest[: 20 - len(relevant)]),
                                             np.int64))
    (out / "source_rows.json").write_text(json.dumps(
        {"docs": rows, "queries": [q["qid"] for q in queries]}) + "\n")


def main() -> None:
    src = debian_minilm_folder()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    make_beir(src, OUT / "beir")
    make_ann_hdf5(OUT / "fashion-mnist-200-10-euclidean.hdf5")
    make_faq(OUT / "faq")
    make_minilm(src, OUT / "debian-minilm")
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            print(f"{p.stat().st_size:8d}  {digest}  {p.relative_to(OUT)}")
    print(f"{total:8d}  total")


if __name__ == "__main__":
    main()
