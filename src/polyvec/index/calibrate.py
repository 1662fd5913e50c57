"""Recall calibration: the fastest query setting that reaches each recall target, with a margin.

One procedure serves an index alone (:func:`calibrate`) and a whole collection (every segment
searched and merged, :func:`calibrate_search` with the collection's search): held-out queries
(the user's sample, or pseudo-queries: sampled rows plus small Gaussian noise) are answered
exactly, then searched at points of the index's *plane* of query settings (``ef`` x
``oversample`` for a refined HNSW, ``nprobe`` x ``oversample`` for a refined IVF, one axis
otherwise).

* **Recall** is recall@k against the exact answers, tie-tolerant as in :mod:`polyvec.eval`
  and the benchmarks: a found row is a hit when it is in the exact top-k or its exact score
  reaches the k-th exact score (``tol`` relative), so a neighbour as good as the k-th is not
  a miss. Without exact scores of the found rows it falls back to id matching (never higher).
* **Margin.** A point qualifies for a target when its mean recall reaches the target *and* a
  one-sided 95% lower confidence bound of it reaches ``target - FLOOR`` (0.01): with 95%
  confidence the recall on new queries of the same kind is within the floor. The bound is
  the smaller of (a) the mean minus ``z`` standard errors of the per-query recalls (misses
  cluster in hard queries, so queries, not the ``nq x k`` rows, are the independent trials)
  and (b) the Wilson bound over the ``nq x k`` rows, which keeps a margin when the sample
  shows no spread at all (every query perfect: (a) would claim certainty from a few queries).
  The margin thus grows as the sample shrinks (0.014 at recall 0.9 from 300 queries).
* **Fastest.** Recall grows with each knob, so each row of the plane (one ``oversample``)
  is searched for its cheapest qualifying ``ef``/``nprobe`` (galloping up from the cheap
  end, then bisecting); a row whose cheapest point is already slower than the best found is
  skipped. Among the qualifying points of the rows, one that needs at least the knob *and*
  at least the reranked rows of another is dropped (it cannot be faster), and the rest are
  ranked by a **cost model**, not by their own timings: seconds per query fitted as
  ``a + b * knob + c * reranked rows`` (least squares, slopes kept non-negative) over every
  point measured, with the frontier timed ``repeats`` times, alternated. A single timing
  of two near-equal points is a coin toss under load, and the coin decides the recall the
  user gets; the fitted model averages dozens of timings, so the same index and queries
  give the same choice (ties go to the smaller knob). When no point qualifies, the point of
  highest recall.

The table is frozen, stored with the index (``to_arrays``) or in the catalog, and answers
``params_for(target)``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from ..errors import InvalidArgument
from ..index_spec import DEFAULT_OVERSAMPLE
from .base import VectorIndex, exact_topk
from .params import CalibrationTable, FilteredBand, QueryParams

__all__ = ["CalibrationTable", "calibrate", "calibrate_bands", "calibrate_search",
           "calibrate_collection", "search_plane", "tie_recall", "recall_lower_bound",
           "pseudo_queries", "KNOB_GRIDS", "OVERSAMPLES", "TARGETS", "FILTER_BANDS"]

KNOB_GRIDS: dict[str, tuple[float, ...]] = {
    "ef": tuple(range(10, 64, 2)) + tuple(range(64, 128, 8)) + tuple(range(128, 513, 32)),
    "nprobe": tuple(range(1, 33)) + tuple(range(36, 129, 4)) + (160, 192, 256, 384, 512),
    "oversample": (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 24.0,
                   32.0),
}
OVERSAMPLES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)  # rows of a refined plane
TARGETS = (0.9, 0.95, 0.99)
Z = 1.645  # one-sided 95%
FLOOR = 0.01  # the bound must reach target - FLOOR (the mean must reach the target)
SLACK = 1.3  # frontier points within SLACK x the fastest first timing are timed again
TOL = 1e-5  # relative tie tolerance: absorbs float32 summation order between kernels
NOISE = 0.5  # pseudo-query noise norm, as a fraction of the mean row norm

Search = Callable[[QueryParams], tuple[np.ndarray, np.ndarray | None]]


def _valid(ids: np.ndarray) -> np.ndarray:
    if ids.dtype == object:
        return np.frompyfunc(lambda x: x is not None, 1, 1)(ids).astype(bool)
    return np.asarray(ids >= 0)


def tie_recall(found: np.ndarray, exact: np.ndarray, exact_scores: np.ndarray, k: int,
               found_scores: np.ndarray | None = None, *, tol: float = TOL) -> np.ndarray:
    """Per-query recall@k of ``found`` ids against the exact top-k (``exact``, best first).

    A found id is a hit when it is among the exact ids, or (with ``found_scores``, which must
    be exact scores) when its score is ``>= kth_exact * (1 - tol)`` (the ``polyvec.eval``
    definition). Pads (``-1``, or ``None`` in object arrays) never hit; a query without exact
    ids has recall 1.

    >>> ex = np.array([[1, 2, 3]]); es = np.array([[0.9, 0.8, 0.5]])
    >>> tie_recall(np.array([[1, 2, 9]]), ex, es, 3).round(4).tolist()
    [0.6667]
    >>> tie_recall(np.array([[1, 2, 9]]), ex, es, 3, np.array([[0.9, 0.8, 0.5]])).tolist()
    [1.0]
    """
    f, e = np.asarray(found)[:, :k], np.asarray(exact)[:, :k]
    f_ok, e_ok = _valid(f), _valid(e)
    same = np.asarray(f[:, :, None] == e[:, None, :], dtype=bool)  # object ids: elementwise
    hit = (same & e_ok[:, None, :]).any(axis=2)
    if found_scores is not None:
        es = np.where(e_ok, np.asarray(exact_scores, dtype=np.float64)[:, :k], np.inf)
        kth = es.min(axis=1)
        thr = np.where(np.isfinite(kth), kth - tol * np.maximum(1.0, np.abs(kth)), np.inf)
        hit |= np.asarray(found_scores, dtype=np.float64)[:, :k] >= thr[:, None]
    n_truth = e_ok.sum(axis=1)
    hits = np.minimum((hit & f_ok).sum(axis=1), n_truth)
    return np.where(n_truth > 0, hits / np.maximum(n_truth, 1), 1.0)


def recall_lower_bound(per_query: np.ndarray, k: int, z: float = Z) -> float:
    """One-sided lower confidence bound of the mean of ``per_query`` recalls (see module).

    >>> round(recall_lower_bound(np.ones(200), 10), 4)  # perfect sample: Wilson still bounds
    0.9986
    >>> round(recall_lower_bound(np.r_[np.ones(190), np.zeros(10)], 10), 4)
    0.9246
    """
    r = np.asarray(per_query, dtype=np.float64)
    n = len(r)
    if n == 0:
        return 0.0
    mean = float(r.mean())
    by_query = mean - z * (float(r.std(ddof=1)) / math.sqrt(n) if n > 1 else 1.0)
    trials = n * k
    z2 = z * z / trials
    wilson = (mean + z2 / 2 - z * math.sqrt(mean * (1 - mean) / trials + z2 / (4 * trials))) \
        / (1 + z2)
    return max(0.0, min(by_query, wilson))


def search_plane(knob: str, refines: bool, k: int, *, nlist: int | None = None
                 ) -> list[list[QueryParams]]:
    """The settings calibration may choose: rows of one ``oversample``, each ascending in the
    knob (cost and recall grow along a row). ``ef`` rows start at ``ceil(k * oversample)``
    (a walk keeps at least the candidates it returns)."""
    if knob == "oversample":
        return [[QueryParams(oversample=float(o)) for o in KNOB_GRIDS["oversample"]]]
    rows: list[list[QueryParams]] = []
    for o in OVERSAMPLES if refines else (None,):
        kc = k if o is None else math.ceil(k * o)
        if knob == "ef":
            efs = [int(e) for e in KNOB_GRIDS["ef"] if e >= kc]
            row = [QueryParams(ef=e, oversample=o) for e in efs]
        elif knob == "nprobe":
            row = [QueryParams(nprobe=int(p), oversample=o) for p in KNOB_GRIDS["nprobe"]
                   if nlist is None or p <= nlist]
        else:
            raise InvalidArgument(f"search_plane: expected knob ef, nprobe or oversample, got "
                                  f"{knob!r}")
        if row:
            rows.append(row)
    return rows


class _Probe:
    """Recall (per query) and seconds per query of each point searched, measured once."""

    def __init__(self, search: Search, exact: np.ndarray, exact_scores: np.ndarray, k: int,
                 z: float, floor: float) -> None:
        self.search, self.exact, self.exact_scores, self.k, self.z, self.floor = \
            search, exact, exact_scores, k, z, floor
        self.mean: dict[QueryParams, float] = {}
        self.lower: dict[QueryParams, float] = {}
        self.times: dict[QueryParams, list[float]] = {}

    def ok(self, p: QueryParams, target: float) -> bool:
        """Whether ``p`` qualifies: mean recall >= ``target`` and its lower confidence bound
        >= ``target - floor``."""
        self.bound(p)
        return self.mean[p] >= target and self.lower[p] >= target - self.floor

    def bound(self, p: QueryParams) -> float:
        if p not in self.lower:
            ids, scores = self.timed(p)
            r = tie_recall(ids, self.exact, self.exact_scores, self.k, scores)
            self.mean[p] = float(r.mean())
            self.lower[p] = recall_lower_bound(r, self.k, self.z)
        return self.lower[p]

    def timed(self, p: QueryParams) -> tuple[np.ndarray, np.ndarray | None]:
        t0 = time.perf_counter()
        out = self.search(p)
        self.times.setdefault(p, []).append((time.perf_counter() - t0) / len(self.exact))
        return out

    def seconds(self, p: QueryParams) -> float:
        if p not in self.times:
            self.bound(p)
        return float(np.median(self.times[p]))


def _first_reaching(probe: _Probe, row: list[QueryParams], lo: int, cap: int,
                    target: float, limit: float) -> int | None:
    """Smallest index ``>= lo`` of ``row`` whose point qualifies for ``target`` (``None``: none
    does, or none at under ``limit`` seconds per query). Gallops up from ``lo`` (cheap points
    first: one high ``ef`` costs many low ones), expecting the answer by ``cap``, then
    bisects."""
    bad, step = lo - 1, 1
    while True:
        i = min(bad + step, cap if bad < cap else len(row) - 1)
        if probe.ok(row[i], target):
            break
        if i == len(row) - 1 or probe.seconds(row[i]) > limit:
            return None  # points further along only cost more
        bad, step = i, step * 2
    while i - bad > 1:  # recall grows along the row: bad fails, i qualifies
        mid = (bad + i) // 2
        bad, i = (bad, mid) if probe.ok(row[mid], target) else (mid, i)
    return i


def _frontiers(probe: _Probe, plane: list[list[QueryParams]], targets: tuple[float, ...],
               slack: float) -> list[list[QueryParams]]:
    """Per target, the cheapest qualifying point of each row worth trying.

    The row of the default oversampling goes first, so a time to beat is known early; then
    the rows in ascending ``oversample``. A row needs at most the knob value a row of less
    oversampling needed (``cap``, a hint); points slower than ``slack`` x the fastest
    qualifying point found are not tried (points further along a row only get slower); once
    a row qualifies at its cheapest point the rows of more oversampling are dominated.
    """
    first = min(range(len(plane)), key=lambda r: abs((plane[r][0].oversample or 1.0)
                                                     - DEFAULT_OVERSAMPLE))
    order = [first] + [r for r in range(len(plane)) if r != first]
    fronts: list[list[QueryParams]] = [[] for _ in targets]
    caps: list[dict[int, int]] = [{} for _ in targets]  # row -> knob value found there
    done = [len(plane) + 1] * len(targets)  # rows from this one on are dominated
    for r in order:
        row = plane[r]
        knob = [p.ef if p.ef is not None else p.nprobe or 0 for p in row]
        lo = 0
        for j, t in enumerate(targets):
            if r >= done[j]:
                continue
            limit = slack * min(map(probe.seconds, fronts[j])) if fronts[j] else math.inf
            want = min((v for q, v in caps[j].items() if q < r), default=knob[-1])
            cap = max(lo, next(i for i, v in enumerate(knob) if v >= want or i == len(row) - 1))
            i = _first_reaching(probe, row, lo, cap, t, limit)
            if i is None:
                break  # higher targets fail in this row too
            fronts[j].append(row[i])
            caps[j][r], lo = knob[i], i
            if i == 0 and len(plane) > 1:
                done[j] = min(done[j], r + 1)
    return fronts


def _work(p: QueryParams, k: int) -> tuple[float, float]:
    """What a point costs in the two units its time grows with: the knob (``ef`` or
    ``nprobe``; 0 on a plane of ``oversample`` alone) and the rows reranked."""
    knob = p.ef if p.ef is not None else p.nprobe or 0
    return float(knob), float(math.ceil(k * p.oversample)) if p.oversample else float(k)


def _undominated(points: Sequence[QueryParams], k: int) -> list[QueryParams]:
    """``points`` less those needing at least the knob and the reranked rows of another."""
    work = {p: _work(p, k) for p in points}
    return [p for p in points
            if not any(q != p and work[q][0] <= work[p][0] and work[q][1] <= work[p][1]
                       and work[q] != work[p] for q in points)]


def _cost_model(probe: _Probe, k: int) -> Callable[[QueryParams], float]:
    """Seconds per query as ``a + b * knob + c * reranked rows``, fitted by least squares to
    the median timing of every point measured; a slope fitted negative (noise, or a plane
    where the unit does not vary) is dropped and the rest refitted."""
    points = list(probe.times)
    x = np.array([(1.0, *_work(p, k)) for p in points], dtype=np.float64)
    y = np.array([probe.seconds(p) for p in points], dtype=np.float64)
    keep = [0] + [j for j in (1, 2) if np.ptp(x[:, j]) > 0]
    while True:
        coef, *_ = np.linalg.lstsq(x[:, keep], y, rcond=None)
        negative = [j for j, c in zip(keep[1:], coef[1:], strict=True) if c < 0]
        if not negative:
            break
        keep.remove(negative[0])
    full = np.zeros(3)
    full[keep] = coef

    def cost(p: QueryParams) -> float:
        return float(full @ np.array((1.0, *_work(p, k))))

    return cost


def calibrate_search(search: Search, exact: np.ndarray, exact_scores: np.ndarray,
                     plane: list[list[QueryParams]], *, knob: str, k: int,
                     targets: Sequence[float] = TARGETS, repeats: int = 3, z: float = Z,
                     floor: float = FLOOR, slack: float = SLACK) -> CalibrationTable:
    """The calibration table of ``search`` (params -> found ids and their exact scores, or
    ``None`` for id matching) against the exact answers ``exact``/``exact_scores`` (nq, k).

    Works for any search with :class:`QueryParams`: one index, or a collection's merged
    search over all its segments. A point qualifies for a target when its mean recall
    reaches the target and its lower confidence bound reaches ``target - floor``.
    """
    ts = tuple(sorted(float(t) for t in targets))
    if not ts or not all(0.0 < t <= 1.0 for t in ts):
        raise InvalidArgument(f"calibrate: expected targets in (0, 1], got {targets!r}")
    if not plane or not all(plane):
        raise InvalidArgument("calibrate: expected a non-empty plane of settings")
    probe = _Probe(search, np.asarray(exact), np.asarray(exact_scores), k, z, floor)
    search(plane[0][0])  # warm-up (kernels compiled, pages mapped), not timed
    fronts = _frontiers(probe, plane, ts, slack)
    timed = list(dict.fromkeys(p for f in fronts if len(f) > 1 for p in f))
    for _ in range(max(0, repeats - 1)):  # more timings for the model, alternated
        for p in timed:
            probe.timed(p)
    cost = _cost_model(probe, k)
    chosen: list[QueryParams] = []
    for f in fronts:
        if f:
            chosen.append(min(_undominated(f, k), key=lambda p: (round(cost(p), 12),
                                                                 *_work(p, k))))
        else:  # nothing qualifies: the highest recall measured
            for row in plane:
                probe.bound(row[-1])
            chosen.append(max(probe.mean, key=lambda p: (probe.mean[p], -probe.seconds(p))))
    return CalibrationTable(knob, k, ts, tuple(chosen), tuple(probe.mean[p] for p in chosen),
                            tuple(probe.lower[p] for p in chosen),
                            tuple(probe.seconds(p) for p in chosen), len(probe.exact))


def calibrate_collection(search: Callable[[QueryParams | None, bool], tuple[np.ndarray,
                                                                            np.ndarray]],
                         indexes: Sequence[VectorIndex], *, k: int,
                         targets: Sequence[float] = TARGETS,
                         filtered: Callable[[QueryParams | None, np.ndarray | None, bool],
                                            tuple[np.ndarray, np.ndarray]] | None = None,
                         n: int = 0) -> CalibrationTable:
    """The table of a search over several indexed segments, merged (calibrated once, on the
    whole search: each segment of several only has to find its share of the true top-k).

    ``search(params, use_index)`` returns ``(ids, scores)`` of the calibration queries; with
    ``use_index=False`` it is the exact search. Found scores count for ties only where every
    index returns exact scores (it refines, or its candidates are uncompressed).
    ``filtered(params, selection, use_index)``, where given, is that search among a
    selection of the ``n`` rows: the table's filtered bands (:func:`calibrate_bands`).
    """
    exact, exact_scores = search(None, False)
    probe = indexes[0]
    exact_found = all(i.refines or not i.spec.compressed for i in indexes)
    nlists = [getattr(getattr(i, "faiss_index", None), "nlist", None) for i in indexes]
    plane = search_plane(probe.knob, probe.refines, k,
                         nlist=min((n for n in nlists if n is not None), default=None))

    def run(p: QueryParams) -> tuple[np.ndarray, np.ndarray | None]:
        ids, scores = search(p, True)
        return ids, scores if exact_found else None

    table = calibrate_search(run, exact, exact_scores, plane, knob=probe.knob, k=k,
                             targets=targets)
    if filtered is None:
        return table

    def run_filtered(p: QueryParams | None, sel: np.ndarray | None, use_index: bool
                     ) -> tuple[np.ndarray, np.ndarray | None]:
        assert filtered is not None
        ids, scores = filtered(p, sel, use_index)
        return ids, scores if exact_found or not use_index else None

    return calibrate_bands(run_filtered, table, plane, n, k=k)


FILTER_BANDS = (0.5, 0.2)  # selected fractions whose filtered searches are calibrated too
BAND_Z = 2.0  # a band's lower bound (97.7%, one-sided) must reach the target itself


def calibrate_bands(search: Callable[[QueryParams | None, np.ndarray | None, bool],
                                     tuple[np.ndarray, np.ndarray | None]],
                    table: CalibrationTable, plane: list[list[QueryParams]], n: int, *,
                    k: int, bands: Sequence[float] = FILTER_BANDS, seed: int = 0
                    ) -> CalibrationTable:
    """``table`` with its rows measured again on filtered searches, per band: a random
    selection of that fraction of the ``n`` rows (a filter the query does not know of; a
    filter correlated with the query makes the walk scan, see ``hnsw.NEAR_SHARE``). Each
    row's params become the first point of their row of the plane that qualifies there
    (the last point where none does): up where the unfiltered params fall short, down
    where fewer reach the target (a walk keeping ``ef`` selected rows scores more nodes
    than an unfiltered one: on Debian at 20% selected ``ef`` 14 reached 0.95, where
    unfiltered takes 24). A band's point qualifies when the lower confidence bound of its
    recall at :data:`BAND_Z` reaches the target itself (unfiltered rows: at :data:`Z`,
    :data:`FLOOR` below it): a band's estimate stands on one random selection too, and its
    rows reach below the unfiltered ones (on Debian at 20%, ``ef`` 12 measured 0.956 on the
    calibration queries, its bound at z 1.645 just 0.950, and 0.9495 on 200 others).

    ``search(params, selection, use_index)``: ``(ids, scores)`` of the calibration queries
    among the selected rows; ``use_index=False`` is the exact search."""
    rng = np.random.default_rng(seed)
    out = []
    for fraction in bands:
        sel = rng.random(n) < fraction
        exact, exact_scores = search(None, sel, False)
        probe = _Probe(functools.partial(_filtered_run, search, sel), exact,
                       np.asarray(exact_scores), k, BAND_Z, 0.0)
        params = []
        for target, p in zip(table.targets, table.params, strict=True):
            row = next((r for r in plane if p in r), [p])
            i = _first_reaching(probe, row, 0, row.index(p), target, math.inf)
            params.append(row[-1] if i is None else row[i])
            probe.bound(params[-1])
        out.append(FilteredBand(fraction, tuple(params),
                                tuple(probe.mean[p] for p in params)))
    return replace(table, bands=tuple(out))


def _filtered_run(search: Callable[[QueryParams | None, np.ndarray | None, bool],
                                   tuple[np.ndarray, np.ndarray | None]],
                  sel: np.ndarray, p: QueryParams) -> tuple[np.ndarray, np.ndarray | None]:
    return search(p, sel, True)


def pseudo_queries(vectors: np.ndarray, nq: int, seed: int, metric: str) -> np.ndarray:
    """Sampled rows plus Gaussian noise (re-normalized under cosine)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=min(nq, len(vectors)), replace=False)
    x = np.asarray(vectors[np.sort(rows)], dtype=np.float32)
    scale = NOISE * float(np.linalg.norm(x, axis=1).mean()) / math.sqrt(x.shape[1])
    q = x + rng.normal(0.0, scale, size=x.shape).astype(np.float32)
    if metric == "cosine":
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q


def exact_scores_of(q: np.ndarray, vectors: np.ndarray, rows: np.ndarray, metric: str
                    ) -> np.ndarray:
    """Exact float64 scores of ``rows`` (nq, m) for their queries (``-inf`` at pads)."""
    x = np.asarray(vectors[np.maximum(rows, 0)], dtype=np.float64)
    qq = np.asarray(q, dtype=np.float64)[:, None, :]
    s = -((x - qq) ** 2).sum(-1) if metric == "l2" else (x * qq).sum(-1)
    return np.where(rows >= 0, s, -np.inf)


def calibrate(index: VectorIndex, vectors: np.ndarray, *, queries: np.ndarray | None = None,
              targets: tuple[float, ...] = TARGETS, k: int = 10, nq: int = 200,
              seed: int = 0) -> CalibrationTable:
    """Measure ``index`` on held-out queries and store the resulting table on it.

    ``vectors`` are the index's full rows (the oracle, and the rerank vectors).
    """
    q = pseudo_queries(vectors, nq, seed, index.metric) if queries is None else \
        np.ascontiguousarray(queries, dtype=np.float32)
    _, truth = exact_topk(q, vectors, k, index.metric)
    truth_scores = exact_scores_of(q, vectors, truth, index.metric)

    def search(p: QueryParams) -> tuple[np.ndarray, np.ndarray]:
        _, rows = index.search(q, k, params=p, rerank=vectors)
        return rows, exact_scores_of(q, vectors, rows, index.metric)

    nlist = getattr(getattr(index, "faiss_index", None), "nlist", None)
    plane = search_plane(index.knob, index.refines, k, nlist=nlist)
    table = calibrate_search(search, truth, truth_scores, plane, knob=index.knob, k=k,
                             targets=targets)
    index.calibration = table
    return table
