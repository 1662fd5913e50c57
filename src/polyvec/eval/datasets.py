"""Retrieval data sets behind one shape, :class:`Dataset`, and a registry of loaders.

Every loader returns the same thing: a corpus (``{"id", "text", "title"}`` dicts), queries
(``{"id", "text"}``), graded relevance judgments (``qrels``), and where the set has them,
row-aligned vectors of the corpus and queries, exact neighbours (ann-benchmarks style) and
payloads.

=================  ============================================================================
name               source
=================  ============================================================================
``beir``           a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``
``ann-hdf5``       an ann-benchmarks HDF5 file (needs ``h5py``, in the ``eval`` extra)
``debian-minilm``  the project's Debian descriptions set (MiniLM vectors, see its README)
``fashion-mnist``  Debian package ``dataset-fashion-mnist`` (IDX files), exact L2 neighbours
``python-faq``     Debian package ``python3.11-doc``: the Python FAQ as question/answer pairs
=================  ============================================================================

The two Debian-package sets are fetched with ``apt-get download`` (never installed) into
``~/.cache/polyvec/debian`` on first use; later calls read the cache.

Examples
--------
>>> import numpy as np
>>> ds = Dataset("toy", corpus=[{"id": "a", "text": "x", "title": ""},
...                             {"id": "b", "text": "y", "title": ""}],
...              queries=[{"id": "q", "text": "x?"}], qrels={"q": {"a": 1}},
...              base=np.eye(2, dtype=np.float32), query_vectors=np.ones((1, 2), np.float32),
...              metric="l2")
>>> ds.with_neighbors(1).neighbors.tolist()
[[0]]
>>> ds.describe()
'toy: 2 docs, 1 queries, 1 judged (1.0 rel/query), vectors 2-d float32, metric l2'
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFile, InvalidArgument, MissingExtra
from ._dataset import Dataset, exact_neighbors
from ._debian import (
    DatasetUnavailable,
    default_cache_dir,
    faq_dataset,
    load_fashion_mnist,
    load_python_faq,
    read_idx,
)
from ._faq import FaqPair, parse_faq_folder, parse_faq_page

__all__ = [
    "Dataset",
    "DatasetUnavailable",
    "DATASETS",
    "load",
    "load_beir",
    "load_ann_hdf5",
    "load_debian_minilm",
    "debian_minilm_folder",
    "load_fashion_mnist",
    "load_python_faq",
    "exact_neighbors",
    "FaqPair",
    "parse_faq_page",
    "parse_faq_folder",
    "faq_dataset",
    "read_idx",
    "default_cache_dir",
]

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- file loaders


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetUnavailable(f"missing file {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise CorruptFile(str(path), f"line {n} is not JSON ({e.msg})") from None
    return rows


def load_beir(folder: PathLike, *, split: str = "test") -> Dataset:
    """Load a BEIR-format folder; only queries judged in ``qrels/<split>.tsv`` are kept.

    The corpus keeps file order and any extra keys of its lines (``metadata``, ...); qrels keep
    every grade as given, including 0.

    Raises
    ------
    DatasetUnavailable
        A file is missing (the message lists the splits that exist).
    CorruptFile
        A line is not JSON, a qrels row is malformed or names an unknown query.
    """
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise DatasetUnavailable(
            f"BEIR folder {root}: no qrels for split {split!r} (expected {qrels_path}; "
            f"splits present: {have or 'none'})"
        )
    corpus = []
    for row in _read_jsonl(root / "corpus.jsonl"):
        extra = {k: v for k, v in row.items() if k not in ("_id", "title", "text")}
        corpus.append({"id": str(row["_id"]), "text": row.get("text") or "",
                       "title": row.get("title") or "", **extra})
    texts = {str(r["_id"]): r.get("text") or "" for r in _read_jsonl(root / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            cells = line.rstrip("\n\r").split("\t")
            if (n == 1 and cells[:2] == ["query-id", "corpus-id"]) or not line.strip():
                continue
            if len(cells) != 3 or not cells[2].lstrip("-").isdigit():
                raise CorruptFile(str(qrels_path), f"line {n}: expected 'qid<TAB>docid<TAB>int'")
            if cells[0] not in texts:
                raise CorruptFile(str(qrels_path), f"line {n}: query {cells[0]!r} not in queries")
            qrels.setdefault(cells[0], {})[cells[1]] = int(cells[2])
    queries = [{"id": q, "text": t} for q, t in texts.items() if q in qrels]
    return Dataset(f"beir:{root.name}", corpus, queries, qrels,
                   info={"path": str(root), "split": split})


_HDF5_METRICS = {"euclidean": "l2", "angular": "cosine"}


def load_ann_hdf5(path: PathLike) -> Dataset:
    """Load an ann-benchmarks HDF5 file (``train``, ``test``, ``neighbors``, ``distances``).

    ``train`` becomes ``base`` (float32), ``test`` the query vectors, ``neighbors`` (int64) the
    exact neighbours; the ``distance`` attribute maps ``euclidean`` -> ``l2`` and ``angular``
    -> ``cosine``. Texts are empty and ids are row numbers as strings. The file's
    ``distances`` go to ``info["distances"]``.

    Raises
    ------
    MissingExtra
        h5py is not installed.
    InvalidArgument
        The file's distance (e.g. ``hamming``, ``jaccard``) is not one polyvec searches with.
    """
    try:
        import h5py
    except ImportError as e:
        raise MissingExtra(
            "load_ann_hdf5 needs h5py; install it with: pip install 'polyvec[eval]' "
            "(or pip install h5py)"
        ) from e
    p = Path(path)
    if not p.is_file():
        raise DatasetUnavailable(f"missing file {p}")
    with h5py.File(p, "r") as f:
        missing = [n for n in ("train", "test") if n not in f]
        if missing:
            raise CorruptFile(str(p), f"no {missing} dataset (ann-benchmarks layout expected)")
        distance = str(f.attrs.get("distance", ""))
        if distance not in _HDF5_METRICS:
            raise InvalidArgument(
                f"{p.name}: distance {distance!r} is not supported; expected one of "
                f"{sorted(_HDF5_METRICS)}"
            )
        base = np.asarray(f["train"][:], np.float32)
        qv = np.asarray(f["test"][:], np.float32)
        nb = np.asarray(f["neighbors"][:], np.int64) if "neighbors" in f else None
        dist = np.asarray(f["distances"][:], np.float32) if "distances" in f else None
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    return Dataset(
        p.stem, _vector_rows(len(base)), _vector_rows(len(qv), corpus=False), {},
        base=base, query_vectors=qv, neighbors=nb, metric=_HDF5_METRICS[distance],
        info={"path": str(p), "attrs": attrs, "distances": dist},
    )


def _vector_rows(n: int, *, corpus: bool = True) -> list[dict[str, Any]]:
    if corpus:
        return [{"id": str(i), "text": "", "title": ""} for i in range(n)]
    return [{"id": str(i), "text": ""} for i in range(n)]


# --------------------------------------------------------------------------- debian-minilm

_MINILM_FILES = ("docs.jsonl", "queries.jsonl", "qrels.tsv", "base_f16.npy", "queries_f16.npy",
                 "gt_top100_ids.npy")
_MV_QUERIES = 1000  # the README pairs mv_doc_ids.npy with queries qid 0-999


def debian_minilm_folder(folder: PathLike | None = None) -> Path:
    """The debian-minilm folder :func:`load_debian_minilm` reads (see there for the search)."""
    if folder is not None:
        return Path(folder)
    tried = []
    env = os.environ.get("POLYVEC_DATA")
    if env:
        tried += [Path(env) / "debian-minilm", Path(env)]
    here = Path(__file__).resolve()
    for root in here.parents:
        if (root / "pyproject.toml").is_file():  # a source checkout: <repo>/src/polyvec/eval
            tried += [root / "shared" / "data" / "debian-minilm",
                      root.parent / "shared" / "data" / "debian-minilm"]
            break
    for cand in tried:
        if (cand / "docs.jsonl").is_file():
            return cand
    raise DatasetUnavailable(
        "debian-minilm data not found; pass folder=..., or set POLYVEC_DATA to the folder that "
        f"holds debian-minilm/ (looked in: {', '.join(map(str, tried)) or 'nowhere'})"
    )


def load_debian_minilm(folder: PathLike | None = None, *, mv_subset: bool = False) -> Dataset:
    """Load the debian-minilm set: Debian package descriptions with MiniLM vectors.

    Docs: ``text`` = long description, ``title`` = package name, id = row (as str); payloads
    ``{package, source, section, synopsis}``; vectors upcast to float32 (cosine = inner
    product); ``neighbors`` = ``gt_top100_ids.npy``. The folder defaults to ``$POLYVEC_DATA``
    (its ``debian-minilm/`` or itself), else ``shared/data/debian-minilm`` beside or inside the
    source checkout.

    ``mv_subset=True`` keeps the 10,000 documents of ``mv_doc_ids.npy`` (ascending) and queries
    0-999, as the README prescribes for multi-vector work; doc ids keep their full-set values,
    and the neighbours are recomputed exactly over the subset (inner product in float64, as
    the full set's were made with inner product).
    """
    root = debian_minilm_folder(folder)
    missing = [n for n in _MINILM_FILES if not (root / n).is_file()]
    if missing:
        raise DatasetUnavailable(f"debian-minilm folder {root} lacks {missing}")
    docs = _read_jsonl(root / "docs.jsonl")
    for row, d in enumerate(docs):
        if d["id"] != row:
            raise CorruptFile(str(root / "docs.jsonl"), f"line {row + 1} has id {d['id']}")
    # the document is the description alone, as embedded in base_f16.npy (title left empty so
    # that text evaluations embed the same text); the package name stays in the payload
    corpus = [{"id": str(d["id"]), "text": d["description"], "title": ""} for d in docs]
    payloads = [{k: d[k] for k in ("package", "source", "section", "synopsis")} for d in docs]
    queries = [{"id": str(q["qid"]), "text": q["text"]}
               for q in _read_jsonl(root / "queries.jsonl")]
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "qrels.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, doc, grade = line.split("\t")
            qrels.setdefault(qid, {})[doc] = int(grade)
    base = np.load(root / "base_f16.npy").astype(np.float32)
    qv = np.load(root / "queries_f16.npy").astype(np.float32)
    neighbors = np.load(root / "gt_top100_ids.npy").astype(np.int64)
    for name, arr, rows in (("base_f16.npy", base, len(docs)),
                            ("queries_f16.npy", qv, len(queries)),
                            ("gt_top100_ids.npy", neighbors, len(queries))):
        if arr.shape[0] != rows:
            raise CorruptFile(str(root / name), f"expected {rows} rows, got {arr.shape[0]}")
    ds = Dataset("debian-minilm", corpus, queries, qrels, base=base, query_vectors=qv,
                 neighbors=neighbors, metric="cosine", payloads=payloads,
                 info={"path": str(root)})
    if not mv_subset:
        return ds
    mv = np.load(root / "mv_doc_ids.npy").astype(np.int64)
    n_q = min(_MV_QUERIES, len(queries))
    keep = np.sort(mv)
    sub = replace(ds, neighbors=None).subset(docs=keep, queries=slice(0, n_q))
    if len(sub.qrels) != n_q:
        raise CorruptFile(str(root / "mv_doc_ids.npy"),
                          f"{n_q - len(sub.qrels)} of queries 0-{n_q - 1} lose their relevant doc")
    # inner product, as gt_top100_ids.npy was made (cosine would re-normalize the float16 rows)
    ids, _ = exact_neighbors(base[keep], qv[:n_q], neighbors.shape[1], metric="dot")
    return replace(sub, name="debian-minilm-mv", neighbors=ids,
                   info={**ds.info, "mv_subset": True})


# --------------------------------------------------------------------------- registry
DATASETS: dict[str, Callable[..., Dataset]] = {
    "beir": load_beir,
    "ann-hdf5": load_ann_hdf5,
    "debian-minilm": load_debian_minilm,
    "fashion-mnist": load_fashion_mnist,
    "python-faq": load_python_faq,
}


def load(name_or_path: PathLike, **kw: Any) -> Dataset:
    """Load a registered data set by name, or a path by its layout.

    A path is a BEIR folder (has ``corpus.jsonl``), a debian-minilm folder (has
    ``docs.jsonl``) or an ann-benchmarks file (``.hdf5``/``.h5``).
    """
    key = os.fspath(name_or_path)
    if key in DATASETS:
        return DATASETS[key](**kw)
    p = Path(key)
    if p.is_dir() and (p / "corpus.jsonl").is_file():
        return load_beir(p, **kw)
    if p.is_dir() and (p / "docs.jsonl").is_file():
        return load_debian_minilm(p, **kw)
    if p.is_file() and p.suffix in (".hdf5", ".h5"):
        return load_ann_hdf5(p, **kw)
    raise InvalidArgument(
        f"load({key!r}): expected a name in {sorted(DATASETS)}, a BEIR or debian-minilm folder, "
        "or an ann-benchmarks .hdf5 file"
    )

