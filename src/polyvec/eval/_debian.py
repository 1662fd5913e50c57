"""Data sets shipped as Debian packages: fetch, unpack, cache, and read what is inside.

A package is fetched with ``apt-get download`` (never installed), unpacked with ``dpkg-deb -x``
into ``<cache_dir>/<package>/root`` and kept there: a second call finds the folder and runs
nothing. The folder appears in one atomic rename, so a half-finished fetch is never mistaken
for a cached one.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFile, PolyvecError
from ._dataset import Dataset, exact_neighbors
from ._faq import FaqPair, parse_faq_folder

__all__ = [
    "DatasetUnavailable",
    "default_cache_dir",
    "fetch_deb",
    "read_idx",
    "load_fashion_mnist",
    "load_python_faq",
    "faq_dataset",
]
PathLike = str | os.PathLike[str]

_INFO = "deb.json"


class DatasetUnavailable(PolyvecError, FileNotFoundError):
    """A data set's files are missing and cannot be fetched here; the message says what to do."""


def default_cache_dir() -> Path:
    """Where unpacked Debian packages are kept: ``~/.cache/polyvec/debian``."""
    return Path.home() / ".cache" / "polyvec" / "debian"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)


def _how_to_get(package: str, cache: Path) -> str:
    return (
        f"run `apt-get update && apt-get download {package}` on a Debian/Ubuntu machine "
        f"(or fetch {package}_*.deb from https://packages.debian.org/bookworm/{package}) and put "
        f"the .deb file in {cache}"
    )


def fetch_deb(package: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the root of the unpacked package ``package``, downloading it on first use.

    A ``<package>_*.deb`` already lying in ``cache_dir`` is used instead of downloading.

    Raises
    ------
    DatasetUnavailable
        ``apt-get``/``dpkg-deb`` are missing or the download failed; the message says what to
        install or run.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / package
    if (target / _INFO).is_file():
        return target / "root"
    if shutil.which("dpkg-deb") is None:
        raise DatasetUnavailable(
            f"the {package!r} data set needs Debian's dpkg-deb to unpack the package "
            f"(apt-get install dpkg); or {_how_to_get(package, cache)}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    local = sorted(cache.glob(f"{package}_*.deb"))
    work = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=cache))
    work.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        if local:
            deb = local[-1]
        else:
            if shutil.which("apt-get") is None:
                raise DatasetUnavailable(
                    f"the {package!r} data set is fetched with apt-get, which is not available "
                    f"here; {_how_to_get(package, cache)}"
                )
            done = _run(["apt-get", "download", package], cwd=work)
            if (done.returncode != 0 or not any(work.glob("*.deb"))) and os.geteuid() == 0:
                # a fresh machine may have no package lists yet: fetch them once and retry
                _run(["apt-get", "update", "-q"], cwd=work)
                done = _run(["apt-get", "download", package], cwd=work)
            debs = sorted(work.glob("*.deb"))
            if done.returncode != 0 or not debs:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise DatasetUnavailable(
                    f"`apt-get download {package}` failed (exit {done.returncode}: "
                    f"{' / '.join(tail)}); {_how_to_get(package, cache)}"
                )
            deb = debs[0]
        unpacked = _run(["dpkg-deb", "-x", str(deb), str(work / "root")], cwd=work)
        if unpacked.returncode != 0:
            raise CorruptFile(str(deb), f"dpkg-deb -x failed: {unpacked.stderr.strip()}")
        version = _run(["dpkg-deb", "-f", str(deb), "Version"], cwd=work).stdout.strip()
        info = {"package": package, "version": version, "deb": deb.name}
        (work / _INFO).write_text(json.dumps(info, indent=1) + "\n")
        if deb.parent == work:
            deb.unlink()
        if target.exists() and not (target / _INFO).is_file():
            shutil.rmtree(target)  # leftover of an interrupted fetch
        try:
            work.rename(target)
        except OSError:
            if not (target / _INFO).is_file():  # not a concurrent fetch that won the race
                raise
    finally:
        if work.exists():
            shutil.rmtree(work)
    return target / "root"


def deb_info(root: Path) -> dict[str, str]:
    """The ``{"package", "version", "deb"}`` record written next to an unpacked package."""
    info: dict[str, str] = json.loads((root.parent / _INFO).read_text())
    return info


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzipped when the name ends in ``.gz``).

    Layout: two zero bytes, a type code, the number of dimensions, one big-endian uint32 per
    dimension, then the values in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise CorruptFile(str(path), f"not an IDX file (header bytes {raw[:4]!r})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    shape = tuple(int(x) for x in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = head + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise CorruptFile(str(path), f"expected {expected} bytes for shape {shape}, got {len(raw)}")
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- Debian packages

_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot")


def load_fashion_mnist(cache_dir: PathLike | None = None, *, k: int = 100) -> Dataset:
    """Fashion-MNIST as ann-benchmarks uses it: 60,000 train x 784 as base, 10,000 test as
    queries, L2, exact top-``k`` neighbours (``k=0``: none).

    Read from the Debian package ``dataset-fashion-mnist`` (Zalando's gzipped IDX files under
    ``/usr/share/datasets/fashion-mnist``), fetched with ``apt-get download`` into
    ``cache_dir`` (default ``~/.cache/polyvec/debian``). Pixels 0-255 become float32. The
    package has no neighbours: they are computed once (faiss candidates re-scored exactly in
    float64, ties to the lower row; about 25 s on 2 cores) and cached beside it. Payloads and
    query dicts carry the class ``label`` (0-9) and its ``class`` name.

    Raises
    ------
    DatasetUnavailable
        apt-get/dpkg-deb are missing or the download failed.
    """
    root = fetch_deb("dataset-fashion-mnist", cache_dir)
    data = root / "usr" / "share" / "datasets" / "fashion-mnist"
    train = read_idx(data / "train-images-idx3-ubyte.gz")
    test = read_idx(data / "t10k-images-idx3-ubyte.gz")
    base = train.reshape(len(train), -1).astype(np.float32)  # 28 x 28 pixels -> 784
    qv = test.reshape(len(test), -1).astype(np.float32)
    train_y = read_idx(data / "train-labels-idx1-ubyte.gz")
    test_y = read_idx(data / "t10k-labels-idx1-ubyte.gz")
    neighbors = None
    if k:
        cached = root.parent / f"neighbors-l2-k{k}.npy"
        if cached.is_file():
            neighbors = np.load(cached).astype(np.int64)
        else:
            neighbors, _ = exact_neighbors(base, qv, k, metric="l2", backend="faiss")
            tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, neighbors.astype(np.int32))
            os.replace(tmp, cached)
    payloads = [{"label": int(y), "class": _FASHION_CLASSES[y]} for y in train_y]
    queries = [{"id": str(i), "text": "", "label": int(y), "class": _FASHION_CLASSES[y]}
               for i, y in enumerate(test_y)]
    corpus = [{"id": str(i), "text": "", "title": ""} for i in range(len(base))]
    return Dataset("fashion-mnist", corpus, queries, {}, base=base, query_vectors=qv,
                   neighbors=neighbors, metric="l2", payloads=payloads,
                   info={"debian": deb_info(root), "path": str(data)})


def load_python_faq(cache_dir: PathLike | None = None, *, package: str = "python3.11-doc"
                    ) -> Dataset:
    """The Python FAQ as a retrieval set: each question a query, its answer the one relevant doc.

    Read from the rendered HTML pages ``/usr/share/doc/python3.X/html/faq/*.html`` of the Debian
    package ``package``, fetched with ``apt-get download`` into ``cache_dir``. Doc and query ids
    are both ``"<page>#<section anchor>"``; doc ``title`` is the page title, plus the grouping
    section when there is one (``"Programming FAQ: Core Language"``); payloads are
    ``{"page", "question", "section"}``. For python3.11-doc 3.11.2 that is 179 pairs.
    """
    root = fetch_deb(package, cache_dir)
    folders = sorted((root / "usr" / "share" / "doc").glob("python3*/html/faq"))
    if not folders:
        raise CorruptFile(str(root), f"no usr/share/doc/python3*/html/faq in package {package}")
    return faq_dataset(parse_faq_folder(folders[0]), name="python-faq",
                       info={"debian": deb_info(root), "path": str(folders[0])})


def faq_dataset(pairs: list[FaqPair], *, name: str = "python-faq",
                info: dict[str, Any] | None = None) -> Dataset:
    """Turn parsed FAQ pairs into a :class:`Dataset` (see :func:`load_python_faq`)."""
    corpus, queries, payloads = [], [], []
    qrels: dict[str, dict[str, int]] = {}
    for p in pairs:
        pid = f"{p.page}#{p.anchor}"
        title = f"{p.page_title}: {p.section}" if p.section else p.page_title
        corpus.append({"id": pid, "text": p.answer, "title": title})
        queries.append({"id": pid, "text": p.question})
        payloads.append({"page": p.page, "question": p.question, "section": p.section})
        qrels[pid] = {pid: 1}
    return Dataset(name, corpus, queries, qrels, payloads=payloads, info=dict(info or {}))
