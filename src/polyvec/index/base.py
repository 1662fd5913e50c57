"""The base class of every single-vector ANN index, and the search pipeline they share.

An index is a *stack* (``IndexSpec``): an optional transform maps vectors to the indexed
space, a candidate stage (flat scan, HNSW graph, IVF cells) stores them, possibly compressed
by a codec, and an optional exact refine rescores ``ceil(k * oversample)`` candidates against
full-precision vectors the caller passes per search (``rerank``; they are not part of the
index, so a segment's own vector file can be handed in, memory-mapped).

Query-time knobs (``ef``, ``nprobe``, ``oversample``) come per call in :class:`QueryParams`;
a selection (bool mask over the index's rows) is one argument of ``search``. When the
selection is small (fewer than ``k`` rows, or under :data:`EXACT_BELOW` of the rows) the
candidate stage is skipped and the selected rows are scanned exhaustively, so a search never
returns fewer than ``k`` rows when ``k`` rows are selected. Above that each index plans the
search for its selection (the HNSW graph: scan, or a filtered walk that gives up for the
scan; IVF: as many cells as hold the selected rows it needs, or the scan; see their
``_filtered``), and any query still short of ``min(k, selected)`` rows scans them.

Scores are "higher is better": inner product for ``cosine``/``dot``, minus the squared
Euclidean distance for ``l2``; rows are local row numbers (int64), ``-1`` pads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Self

import numpy as np

from ..codecs import load_transform, make_transform
from ..codecs.base import Transform
from ..errors import CorruptFile, DimensionMismatch, InvalidArgument
from ..index_spec import DEFAULT_OVERSAMPLE, IndexSpec
from .params import CalibrationTable, QueryParams
from .parts import Group, Part, Parts
from .refine import rerank_candidates

__all__ = ["QueryParams", "VectorIndex", "EXACT_BELOW", "NEAR_SHARE", "METRICS", "faiss_threads",
           "exact_topk", "faiss_search"]

EXACT_BELOW = 0.03  # selected fraction under which the selected rows are scanned exactly
# a filtered search whose first rows (a walk's first nodes, the probed cells) hold selected
# rows at under this share of the selected fraction scans the selected rows: the filter is
# far from the query, where neither a graph walk nor the cells' order reaches its best rows
NEAR_SHARE = 0.25
METRICS = ("cosine", "dot", "l2")
FORMAT_VERSION = 1


def faiss_module() -> Any:
    """The faiss module, imported on first use (typed ``Any``: its stubs lag its API)."""
    import faiss

    return faiss


@contextlib.contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """Run faiss with ``threads`` OpenMP threads (``None``: leave it as it is)."""
    if threads is None:
        yield
        return
    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


SMALL_EXACT = 1024  # rows of a one-query exact_topk scored without the streaming top-k
FEW_EXACT = 256  # a selection this small is scored exactly, codes and walks skipped (0.01
# ms for 58 rows): by the engine's quick path and by the HNSW planner


def exact_topk(q: np.ndarray, x: np.ndarray, k: int, metric: str,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``q`` against ``x`` (or against ``x[rows]``, reporting ``rows``)."""
    from .._kernels import TopK
    from .flat import scan_dense

    ids = np.arange(len(x), dtype=np.int64) if rows is None else rows.astype(np.int64)
    vecs = x if rows is None else x[rows]
    if len(q) == 1 and len(vecs) <= SMALL_EXACT:  # a few rows: one product, one sort
        s = vecs.astype(np.float32, copy=False) @ q[0]
        if metric == "l2":
            s = 2 * s - float(q[0] @ q[0]) - np.einsum("ij,ij->i", vecs, vecs)
        order = np.lexsort((ids, -s))[:k]  # higher score first, then the lower row
        scores = np.full((1, k), -np.inf, np.float32)
        out = np.full((1, k), -1, np.int64)
        scores[0, :len(order)], out[0, :len(order)] = s[order], ids[order]
        return scores, out
    top = TopK(len(q), k)
    scan_dense(q, vecs, ids, top, metric="l2" if metric == "l2" else "dot")
    return top.result()


class _Final:
    """An exact answer found while planning a filtered search: ``scores, rows`` as returned."""

    __slots__ = ("scores", "rows")

    def __init__(self, scores: np.ndarray, rows: np.ndarray) -> None:
        self.scores, self.rows = scores, rows


_NO_PARAMS = QueryParams()


def _as_queries(q: object, dim: int) -> np.ndarray:
    if (type(q) is np.ndarray and q.dtype == np.float32 and q.ndim == 2  # the common case
            and q.shape[1] == dim and q.flags.c_contiguous):
        return q
    arr = np.asarray(q)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise DimensionMismatch(f"queries: expected shape (nq, {dim}), got {arr.shape}")
    if arr.dtype.kind != "f":
        raise InvalidArgument(f"queries: expected a float array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _json_array(obj: object) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode(), dtype=np.uint8).copy()


def _read_json(arrays: dict[str, np.ndarray], key: str) -> Any:
    if key not in arrays:
        raise CorruptFile("index arrays", f"missing array {key!r}")
    try:
        return json.loads(np.asarray(arrays[key], dtype=np.uint8).tobytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFile("index arrays", f"unreadable {key!r}: {e}") from None


class VectorIndex(ABC):
    """One built index over ``n`` rows of dimension ``dim``.

    Subclasses implement the candidate stage: ``_build``, ``_candidates``, ``_exhaustive``,
    ``_stage_arrays``/``_load_stage`` and ``_stage_bytes``; ``knob`` names the query
    parameter that trades speed for recall (used by :mod:`polyvec.index.calibrate`).
    """

    knob: ClassVar[str] = "oversample"
    family: ClassVar[str] = "flat"  # a filtered search's strategy when it uses the index
    partitioned: ClassVar[bool] = False  # builds partition graphs (see polyvec.index.parts)

    def __init__(self, spec: IndexSpec, metric: str, dim: int, n: int) -> None:
        self.spec = spec
        self.metric = metric
        self.dim = dim
        self.n = n
        self.transform: Transform | None = None
        self.calibration: CalibrationTable | None = None
        self.parts: Parts | None = None

    # ----------------------------------------------------------------- build / load
    @classmethod
    def build(cls, vectors: np.ndarray, *, spec: IndexSpec, metric: str,
              sample_queries: np.ndarray | None = None, seed: int = 0,
              threads: int | None = None, groups: list[Group] | None = None) -> Self:
        """Fit the transform/codec and build the candidate stage over ``vectors`` (n, d);
        where the index is :attr:`partitioned`, one more index (same spec) over the rows of
        each of ``groups`` (see :mod:`polyvec.index.parts`)."""
        if metric not in METRICS:
            raise InvalidArgument(f"metric: expected one of {list(METRICS)}, got {metric!r}")
        x = np.asarray(vectors)
        if x.ndim != 2 or len(x) == 0:
            raise DimensionMismatch(f"vectors: expected a non-empty (n, d) array, got shape "
                                    f"{x.shape}")
        x = full = np.ascontiguousarray(x, dtype=np.float32)
        spec.check_dim(x.shape[1])
        index = cls(spec, metric, x.shape[1], len(x))
        if spec.transform is not None:
            index.transform = make_transform(spec.transform).fit(x, queries=sample_queries)
            x = index.transform.transform_docs(x)
        with faiss_threads(threads):
            index._build(np.ascontiguousarray(x, dtype=np.float32), seed)
        if groups and cls.partitioned:
            index.parts = Parts(len(x), [
                Part(g, cls.build(full[g.rows], spec=spec, metric=metric,
                                  sample_queries=sample_queries, seed=seed, threads=threads))
                for g in groups])
        return index

    @abstractmethod
    def _build(self, x: np.ndarray, seed: int) -> None: ...

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The whole index as named numpy arrays (JSON header, transform, stage, calibration)."""
        head: dict[str, Any] = {"format": FORMAT_VERSION, "spec": self.spec.to_dict(),
                                "metric": self.metric, "dim": self.dim, "n": self.n}
        parts = self.parts.parts if self.parts is not None else []
        if parts:  # older versions read past them
            head["parts"] = [[list(p.group.path), p.group.value] for p in parts]
        out = {"header": _json_array(head)}
        for i, p in enumerate(parts):
            out[f"part.{i}.rows"] = p.group.rows
            out.update({f"part.{i}.{k}": v for k, v in p.index.to_arrays().items()})
        if self.transform is not None:
            out.update({f"transform.{k}": v for k, v in self.transform.to_arrays().items()})
        out.update({f"stage.{k}": v for k, v in self._stage_arrays().items()})
        if self.calibration is not None:
            out["calibration"] = _json_array(self.calibration.to_dict())
        return out

    @classmethod
    def from_arrays(cls, spec: IndexSpec, arrays: dict[str, np.ndarray], metric: str, *,
                    part_arrays: Callable[[int], dict[str, np.ndarray]] | None = None
                    ) -> Self:
        """Rebuild from :meth:`to_arrays`; the stored spec and metric must match. Partition
        ``i``'s index arrays come from ``part_arrays(i)`` on its first use when given (its
        rows from ``arrays`` now), else from ``arrays``."""
        head = _read_json(arrays, "header")
        if not isinstance(head, dict) or head.get("format") != FORMAT_VERSION:
            got = head.get("format") if isinstance(head, dict) else head
            raise CorruptFile("index arrays", f"expected format {FORMAT_VERSION}, got {got!r}")
        try:
            stored = IndexSpec.from_dict(head["spec"])
        except (KeyError, InvalidArgument) as e:
            raise CorruptFile("index arrays", f"unreadable spec: {e}") from None
        if stored != spec or head.get("metric") != metric:
            raise CorruptFile("index arrays", f"built for {stored!r} / {head.get('metric')!r}, "
                                              f"not for {spec!r} / {metric!r}")
        index = cls(spec, metric, int(head["dim"]), int(head["n"]))
        if spec.transform is not None:
            sub = {k[10:]: v for k, v in arrays.items() if k.startswith("transform.")}
            index.transform = load_transform(spec.transform, sub, where="index transform")
        index._load_stage({k[6:]: v for k, v in arrays.items() if k.startswith("stage.")})
        if "calibration" in arrays:
            index.calibration = CalibrationTable.from_dict(_read_json(arrays, "calibration"))
        if head.get("parts"):
            index.parts = Parts(index.n, [
                _load_part(cls, spec, metric, i, path, value, arrays, index.n, part_arrays)
                for i, (path, value) in enumerate(head["parts"])])
        return index

    @abstractmethod
    def _stage_arrays(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _load_stage(self, arrays: dict[str, np.ndarray]) -> None: ...

    def bytes_in_ram(self) -> int:
        """Bytes the index holds: graph/cells, codes and fitted state (not rerank vectors)."""
        extra = 0
        if self.transform is not None:
            extra = sum(a.nbytes for a in self.transform.to_arrays().values())
        if self.parts is not None:
            extra += self.parts.nbytes()
        return int(self._stage_bytes() + extra)

    @abstractmethod
    def _stage_bytes(self) -> int: ...

    def partitions(self) -> list[dict[str, Any]]:
        """The partition graphs: column path, value and rows of each (see
        :mod:`polyvec.index.parts`)."""
        return [] if self.parts is None else [p.describe() for p in self.parts.parts]

    # ----------------------------------------------------------------- search
    @property
    def refines(self) -> bool:
        """Whether searches rescore candidates exactly (a compressed stage and a Refine)."""
        return self.spec.refine is not None and self.spec.compressed

    def oversample(self, params: QueryParams) -> float:
        if params.oversample is not None:  # checked by QueryParams
            return params.oversample
        if self.spec.refine is None:
            return DEFAULT_OVERSAMPLE
        return self.spec.refine.effective(None)

    def search(self, queries: np.ndarray, k: int, *, params: QueryParams | None = None,
               selection: np.ndarray | None = None, rerank: np.ndarray | None = None,
               report: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows of each query: ``(scores, rows)``, each (nq, k), best first.

        ``selection`` (bool, (n,)) restricts the rows that may be returned; ``rerank``
        (float32/float16 (n, d), may be memory-mapped) are the full vectors used by the
        exact refine, required when the spec refines a compressed stage. ``report``, where
        given, gets what a filtered search did: its ``strategy`` (``scan``: the selected
        rows exactly; ``graph``/``ivf``: the index with the selection; ``graph+scan``: walks
        that gave up and scanned; ``partition``: a partition's graph), the ``selected``
        rows, and where the kernel counts them the mean nodes ``scored`` per query and the
        queries that ``scanned``.

        An unfiltered search takes a short path (a few checks, one candidate call, one refine
        kernel call): per-query Python time matters when a graph walk costs ~100 µs.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidArgument(f"search: expected k an int >= 1, got {k!r}")
        if params is None:
            params = _NO_PARAMS
        elif not isinstance(params, QueryParams):
            raise InvalidArgument(f"search: expected params a QueryParams, got {params!r}")
        q = _as_queries(queries, self.dim)
        if rerank is not None and (rerank.ndim != 2 or rerank.shape != (self.n, self.dim)):
            raise DimensionMismatch(f"rerank: expected shape ({self.n}, {self.dim}), got "
                                    f"{rerank.shape}")
        refine = self.refines
        if refine and rerank is None:
            raise InvalidArgument(f"search: the index {self.spec!r} refines its candidates; "
                                  "expected rerank vectors, got None")
        kc = max(k, math.ceil(k * self.oversample(params))) if refine else k
        qt = q if self.transform is None else self.transform.transform_queries(q)
        sel, n_sel = self._check_selection(selection)
        if sel is None:  # the short path
            done = self._fast_search(q, qt, k, min(kc, self.n), params,
                                     rerank if refine else None)
            if done is not None:
                return done
            s, r = self._candidates(qt, min(kc, self.n), params, None)
        else:
            got = self._filtered_parts(q, qt, k, kc, params, sel, n_sel, rerank, report) \
                if n_sel else None
            if report is not None and not n_sel:
                report.update(strategy="scan", selected=0)
            if got is None:
                return (np.full((len(q), k), -np.inf, np.float32),
                        np.full((len(q), k), -1, np.int64))
            if isinstance(got, _Final):
                return got.scores, got.rows
            s, r = got
        if refine and rerank is not None:
            return rerank_candidates(q, r, rerank, k, self.metric)
        return _pad(s[:, :k], r[:, :k], k)

    def bind(self, k: int, *, params: QueryParams | None = None,
             selection: np.ndarray | None = None, rerank: np.ndarray | None = None
             ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``queries -> (scores, rows)``: :meth:`search` with every other argument bound, for
        a caller that repeats one call with queries it has checked (float32, C-contiguous,
        ``(nq, dim)``; a collection's search). The arguments are checked once, here, or on
        each call where a subclass binds nothing shorter than :meth:`search`."""
        return functools.partial(self.search, k=k, params=params, selection=selection,
                                 rerank=rerank)

    def _fast_search(self, q: np.ndarray, qt: np.ndarray, k: int, kc: int, params: QueryParams,
                     rerank: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The whole unfiltered search (candidates and refine) in one kernel, where the index
        has one; ``None`` sends it the general way."""
        return None

    def _filtered_parts(self, q: np.ndarray, qt: np.ndarray, k: int, kc: int,
                        params: QueryParams, sel: np.ndarray, n_sel: int,
                        rerank: np.ndarray | None, report: dict[str, Any] | None = None
                        ) -> tuple[np.ndarray, np.ndarray] | _Final | None:
        """:meth:`_filtered`, or its candidates from the smallest partition holding every
        selected row (``n_sel`` > 0 of them; see :mod:`polyvec.index.parts`), mapped back to
        this index's rows."""
        part = None if self.parts is None else self.parts.find(sel, n_sel)
        if part is None:
            return self._filtered(q, qt, k, kc, params, sel, n_sel, rerank, report)
        sub, rows = part.index, part.group.rows
        if report is not None:
            report.update(strategy="partition", selected=n_sel, partition_rows=len(rows))
        qs = q if sub.transform is None else sub.transform.transform_queries(q)
        return sub._as_part(q, qs, k, kc, params,
                            None if n_sel == len(rows) else sel[rows], n_sel, rerank, rows)

    def _as_part(self, q: np.ndarray, qt: np.ndarray, k: int, kc: int, params: QueryParams,
                 sel: np.ndarray | None, n_sel: int, rerank: np.ndarray | None,
                 rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | _Final:
        """Candidates of this index as a partition of a larger one over its ``rows``, among
        ``sel`` (``n_sel`` rows; ``None``: all), as rows of the larger index (whose
        ``rerank`` vectors they are)."""
        if sel is None:
            s, r = self._candidates(qt, min(kc, self.n), params, None)
        else:
            got = self._filtered(q, qt, k, kc, params, sel, n_sel, None)
            assert got is not None  # a partition is found for a non-empty selection
            s, r = (got.scores, got.rows) if isinstance(got, _Final) else got
        return s, np.where(r >= 0, rows[np.maximum(r, 0)], -1)

    def _filtered(self, q: np.ndarray, qt: np.ndarray, k: int, kc: int, params: QueryParams,
                  sel: np.ndarray, n_sel: int, rerank: np.ndarray | None,
                  report: dict[str, Any] | None = None
                  ) -> tuple[np.ndarray, np.ndarray] | _Final | None:
        """Candidates under a selection of ``n_sel`` > 0 rows: a widened walk, or an exact
        scan when few rows are selected (``_Final`` when that scan already gives the
        answer)."""
        params = self._widen(params, kc, n_sel / self.n)  # in proportion to what is removed
        scan = n_sel <= kc or n_sel < EXACT_BELOW * self.n or self._prefer_exact(params, n_sel)
        if report is not None:
            report.update(strategy="scan" if scan else self.family, selected=n_sel)
        if scan:
            if rerank is not None:  # the selected rows, exactly, in the original space
                return _Final(*exact_topk(q, rerank, k, self.metric, np.flatnonzero(sel)))
            return self._exhaustive(qt, min(kc, n_sel), sel)
        s, r = self._candidates(qt, min(kc, self.n), params, sel)
        scanned = self._scan_short(qt, s, r, min(kc, n_sel), sel)
        if scanned and report is not None:
            report.update(strategy=f"{self.family}+scan", scanned=scanned)
        return s, r

    def _scan_short(self, qt: np.ndarray, s: np.ndarray, r: np.ndarray, want: int,
                    sel: np.ndarray) -> int:
        """The queries whose filtered candidates ``(s, r)`` hold fewer than ``want`` rows get
        the selected rows' exhaustive scan in place (never fewer than k); how many did."""
        short = np.flatnonzero((r >= 0).sum(axis=1) < want)
        if len(short):
            s[short, :want], r[short, :want] = self._exhaustive(qt[short], want, sel)
        return len(short)

    def _check_selection(self, selection: np.ndarray | None) -> tuple[np.ndarray | None, int]:
        """The selection and how many rows it selects; ``None`` where it selects all."""
        if selection is None:
            return None, self.n
        sel = np.asarray(selection)
        if sel.dtype != np.bool_ or sel.shape != (self.n,):
            raise InvalidArgument(f"selection: expected a bool array of shape ({self.n},), got "
                                  f"{sel.dtype} {sel.shape}")
        n_sel = int(np.count_nonzero(sel))
        return (None if n_sel == self.n else sel), n_sel

    def _widen(self, params: QueryParams, kc: int, fraction: float) -> QueryParams:
        """Query params for a filtered search that keeps ``fraction`` of the rows."""
        return params

    def _prefer_exact(self, params: QueryParams, n_sel: int) -> bool:
        """Whether scanning the ``n_sel`` selected rows is cheaper than the widened search."""
        return False

    @abstractmethod
    def _candidates(self, q: np.ndarray, kc: int, params: QueryParams,
                    sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``kc`` in the indexed space, honoring ``sel``; (-inf, -1) pads."""

    @abstractmethod
    def _exhaustive(self, q: np.ndarray, kc: int, sel: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``kc`` of a full scan of the stored codes over the selected rows."""


def _load_part(cls: type[VectorIndex], spec: IndexSpec, metric: str, i: int, path: Any,
               value: Any, arrays: dict[str, np.ndarray], n: int,
               part_arrays: Callable[[int], dict[str, np.ndarray]] | None) -> Part:
    """Partition ``i`` of an index over ``n`` rows, from :meth:`VectorIndex.to_arrays`: its
    rows checked now, its index loaded now or, with ``part_arrays``, on first use."""
    pre = f"part.{i}."
    rows = arrays.get(pre + "rows")
    if rows is None or rows.dtype != np.int64 or rows.ndim != 1 or not len(rows) \
            or rows[0] < 0 or rows[-1] >= n or not bool((np.diff(rows) > 0).all()):
        raise CorruptFile("index arrays", f"partition {i}: expected sorted rows in [0, {n})")

    def load() -> VectorIndex:
        got = part_arrays(i) if part_arrays is not None else arrays
        sub = cls.from_arrays(spec, {k[len(pre):]: v for k, v in got.items()
                                     if k.startswith(pre) and k != pre + "rows"}, metric)
        if sub.n != len(rows):
            raise CorruptFile("index arrays", f"partition {i}: {len(rows)} rows, index of "
                              f"{sub.n}")
        return sub

    group = Group(tuple(path), value, np.asarray(rows))
    return Part(group, load=load) if part_arrays is not None else Part(group, load())


def _pad(s: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(s, dtype=np.float32)
    r = np.asarray(r, dtype=np.int64)
    if s.shape[1] < k:
        s = np.pad(s, ((0, 0), (0, k - s.shape[1])), constant_values=-np.inf)
        r = np.pad(r, ((0, 0), (0, k - r.shape[1])), constant_values=-1)
    s = s.copy()
    s[r < 0] = -np.inf
    return s, r


def faiss_selector(sel: np.ndarray | None) -> tuple[Any, Any]:
    """A faiss ``IDSelectorBitmap`` for ``sel`` and the packed bits it reads (keep both alive)."""
    if sel is None:
        return None, None
    faiss = faiss_module()
    bits = np.packbits(sel, bitorder="little")
    return faiss.IDSelectorBitmap(len(sel), faiss.swig_ptr(bits)), bits


def faiss_result(dist: np.ndarray, ids: np.ndarray, l2: bool) -> tuple[np.ndarray, np.ndarray]:
    """faiss (distances, labels) -> higher-is-better scores and int64 rows, (-inf, -1) pads.

    Works in place on the arrays faiss returned (they are the caller's to give away).
    """
    s = np.asarray(dist, dtype=np.float32)
    if l2:
        np.negative(s, out=s)
    r = np.asarray(ids, dtype=np.int64)
    if r.size and r.min() < 0:
        s[r < 0] = -np.inf
    return s, r


def faiss_search(index: Any, q: np.ndarray, k: int, params: Any) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """``index.search`` through faiss's C entry point: no wrapper checks, no extra copies.

    ``q`` must be float32, C-contiguous, (nq, d); returns faiss's (distances, labels).
    """
    faiss = faiss_module()
    nq = len(q)
    dist = np.empty((nq, k), dtype=np.float32)
    ids = np.empty((nq, k), dtype=np.int64)
    index.search_c(nq, faiss.swig_ptr(q), k, faiss.swig_ptr(dist), faiss.swig_ptr(ids), params)
    return dist, ids


def serialize(index: Any) -> np.ndarray:
    faiss = faiss_module()
    return np.asarray(faiss.serialize_index(index), dtype=np.uint8)


def deserialize(arrays: dict[str, np.ndarray], key: str = "faiss") -> Any:
    faiss = faiss_module()
    if key not in arrays:
        raise CorruptFile("index arrays", f"missing array {key!r}")
    try:
        # already the concrete class; a downcast would wrap it in a non-owning proxy
        return faiss.deserialize_index(np.ascontiguousarray(arrays[key], dtype=np.uint8))
    except RuntimeError as e:
        raise CorruptFile("index arrays", f"unreadable faiss index: {e}") from None
