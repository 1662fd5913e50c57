"""Search quality: ANN recall against exact search, and IR metrics against relevance judgments.

Two questions, two functions:

- :func:`recall_at_k` asks "how much of the exact top-k did the approximate index find?" The
  oracle is exact search over the same vectors; an equally good neighbour swapped for another
  (a score tie at the k-th place) is not a miss when scores are given.
- :func:`ir_metrics` asks "how good is the ranking for the user?" against human (or synthetic)
  relevance judgments (qrels). The formulas come from ``ir-measures`` (pytrec_eval underneath),
  imported only when the function is called.

Scores are "higher is better" everywhere, as in :class:`polyvec.SearchResult`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from ..errors import InvalidArgument, MissingExtra

__all__ = ["RecallAtK", "recall_at_k", "ir_metrics", "run_from_results", "DEFAULT_IR_METRICS"]

DEFAULT_IR_METRICS: tuple[str, ...] = ("MRR@10", "nDCG@10", "R@10")
_EVAL_EXTRA = "pip install 'polyvec[eval]'"

Run = Mapping[Any, Mapping[Any, float]]
Qrels = Mapping[Any, Mapping[Any, int]]


# --------------------------------------------------------------------------- recall@k (ANN)


@dataclass(frozen=True)
class RecallAtK:
    """Recall@k of an approximate search against exact search.

    ``per_query`` is float64 of shape ``(nq,)``; ``mean`` is its mean.
    """

    k: int
    per_query: np.ndarray
    mean: float


def _as_2d(name: str, a: object) -> np.ndarray:
    """Ids as a 2-D array (a 1-D array is one query): int, str or object dtype."""
    try:
        arr = np.asarray(a)
    except ValueError:  # ragged nested lists
        raise InvalidArgument(f"{name}: expected a rectangular 2-D array of ids") from None
    if arr.dtype.kind not in "iuUO":
        raise InvalidArgument(f"{name}: expected int, str or object ids, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidArgument(f"{name}: expected a 2-D array (nq, k), got shape {arr.shape}")
    return arr


def _scores_2d(name: str, a: object) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidArgument(f"{name}: expected a 2-D array (nq, k), got shape {arr.shape}")
    return arr


def _valid_mask(ids: np.ndarray) -> np.ndarray:
    """True where a slot holds a real id: ``None`` pads object arrays, ``-1`` pads int arrays."""
    if ids.dtype.kind in "iu":
        return np.asarray(ids != -1)
    if ids.dtype == object:
        return np.frompyfunc(lambda x: x is not None, 1, 1)(ids).astype(bool)
    return np.ones(ids.shape, dtype=bool)  # str arrays have no padding value


def recall_at_k(
    found_ids: object,
    exact_ids: object,
    k: int,
    *,
    exact_scores: object | None = None,
    found_scores: object | None = None,
    tol: float = 1e-6,
) -> RecallAtK:
    """Recall@k of ``found_ids`` (an approximate search) against ``exact_ids`` (exact search).

    Per query, recall is the number of distinct found ids among the first ``k`` that are hits,
    divided by the number of real exact ids among the first ``k`` (``k`` unless the exact
    search itself returned fewer; a query with no exact ids has recall 1).

    Without scores a hit is a found id that is in the exact top-k. With ``exact_scores`` and
    ``found_scores`` (both, or neither) the comparison is tie-tolerant: a found id is also a
    hit when its score is ``>= kth_exact_score - tol``, so a neighbour as good as the k-th is
    not a miss. ``found_scores`` should be exact scores (e.g. after re-ranking), not scores
    from compressed codes.

    Parameters
    ----------
    found_ids, exact_ids
        ``(nq, k')`` arrays of ids, int or str (object arrays allowed); a 1-D array is one
        query. ``exact_ids`` needs at least ``k`` columns; ``found_ids`` may have fewer (the
        missing slots are misses). Padding (``None`` in object arrays, ``-1`` in int arrays)
        is never a hit.
    k
        Cut-off, ``>= 1``.
    exact_scores, found_scores
        Scores aligned with the id arrays, higher is better.
    tol
        Absolute tolerance of the tie test.

    Returns
    -------
    RecallAtK
        ``per_query`` (float64, ``(nq,)``) and ``mean``.

    Examples
    --------
    >>> r = recall_at_k([[1, 2, 9]], [[1, 2, 3]], k=3)
    >>> round(r.mean, 4)
    0.6667
    >>> # id 9 scores the same as the 3rd exact neighbour: a tie, not a miss
    >>> r = recall_at_k([[1, 2, 9]], [[1, 2, 3]], k=3,
    ...                 found_scores=[[0.9, 0.8, 0.5]], exact_scores=[[0.9, 0.8, 0.5]])
    >>> r.mean
    1.0
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidArgument(f"k: expected an int >= 1, got {k!r}")
    k = int(k)
    if (exact_scores is None) != (found_scores is None):
        raise InvalidArgument(
            "exact_scores and found_scores: expected both (tie-tolerant) or neither, got one"
        )
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol >= 0):
        raise InvalidArgument(f"tol: expected a finite float >= 0, got {tol!r}")
    found = _as_2d("found_ids", found_ids)
    exact = _as_2d("exact_ids", exact_ids)
    nq = exact.shape[0]
    if found.shape[0] != nq:
        raise InvalidArgument(f"found_ids: expected {nq} rows like exact_ids, got {found.shape[0]}")
    if exact.shape[1] < k:
        raise InvalidArgument(f"exact_ids: expected at least k={k} columns, got {exact.shape[1]}")
    found, exact = found[:, :k], exact[:, :k]
    found_ok, exact_ok = _valid_mask(found), _valid_mask(exact)

    threshold: np.ndarray | None = None
    fscores: np.ndarray | None = None
    if exact_scores is not None and found_scores is not None:
        escores = _scores_2d("exact_scores", exact_scores)
        fscores = _scores_2d("found_scores", found_scores)
        if escores.shape[0] != nq or escores.shape[1] < k:
            raise InvalidArgument(
                f"exact_scores: expected shape ({nq}, >={k}) like exact_ids, got {escores.shape}"
            )
        if fscores.shape[0] != nq or fscores.shape[1] < found.shape[1]:
            raise InvalidArgument(
                f"found_scores: expected shape {found.shape} like found_ids, got {fscores.shape}"
            )
        masked = np.where(exact_ok, escores[:, :k], np.inf)
        threshold = masked.min(axis=1) - tol  # the k-th exact score (or the last real one)
        fscores = fscores[:, : found.shape[1]]

    per_query = np.ones(nq, dtype=np.float64)
    for q in range(nq):
        truth = set(exact[q][exact_ok[q]].tolist())
        if not truth:
            continue
        seen: set[Any] = set()
        hits = 0
        for j, fid in enumerate(found[q].tolist()):
            if not found_ok[q, j] or fid in seen:
                continue
            seen.add(fid)
            if fid in truth or (
                threshold is not None and fscores is not None and fscores[q, j] >= threshold[q]
            ):
                hits += 1
        per_query[q] = min(hits, len(truth)) / len(truth)
    return RecallAtK(k=k, per_query=per_query, mean=float(per_query.mean()) if nq else 1.0)


# --------------------------------------------------------------------------- IR metrics (qrels)


def _import_ir_measures() -> Any:
    try:
        import ir_measures
    except ImportError as e:
        raise MissingExtra(
            f"ir_metrics needs the ir-measures package; install it with: {_EVAL_EXTRA}"
        ) from e
    return ir_measures


def run_from_results(
    query_ids: Sequence[Any], ids: object, scores: object | None = None
) -> dict[str, dict[str, float]]:
    """Turn batch search results into a run: query id -> doc id -> score.

    Parameters
    ----------
    query_ids
        One id per row of ``ids``.
    ids
        ``(nq, k)`` ranked ids, e.g. ``SearchResult.ids`` of a batch search; padding
        (``None``, or ``-1`` in int arrays) is skipped, and a repeated id keeps its first rank.
    scores
        ``(nq, k)`` scores aligned with ``ids``. Without them each hit scores ``k - rank``, so
        the run keeps the result order exactly.

    Ids are converted with ``str`` (qrels are keyed the same way by :func:`ir_metrics`).

    Examples
    --------
    >>> run_from_results(["q1"], np.array([[7, 3, -1]]))
    {'q1': {'7': 3.0, '3': 2.0}}
    """
    arr = _as_2d("ids", ids)
    qids = list(query_ids)
    if len(qids) != arr.shape[0]:
        raise InvalidArgument(
            f"query_ids: expected one per row of ids ({arr.shape[0]}), got {len(qids)}"
        )
    if scores is None:
        sc = np.broadcast_to(np.arange(arr.shape[1], 0, -1, dtype=np.float64), arr.shape)
    else:
        sc = _scores_2d("scores", scores)
        if sc.shape != arr.shape:
            raise InvalidArgument(f"scores: expected shape {arr.shape} like ids, got {sc.shape}")
    ok = _valid_mask(arr)
    run: dict[str, dict[str, float]] = {}
    for q, qid in enumerate(qids):
        key = str(qid)
        if key in run:
            raise InvalidArgument(f"query_ids: expected unique ids, got {qid!r} twice")
        docs: dict[str, float] = {}
        for j, doc in enumerate(arr[q].tolist()):
            if ok[q, j] and str(doc) not in docs:
                docs[str(doc)] = float(sc[q, j])
        run[key] = docs
    return run


def _canonical_run(run: Run) -> dict[str, dict[str, float]]:
    """Scores -> strictly decreasing rank scores, ties kept in the order the run lists them.

    Evaluators break score ties differently (trec_eval by doc id descending, others ascending),
    so the same run could score differently per metric. The metrics offered here depend only on
    the ranking, so handing over rank scores loses nothing and pins the order.
    """
    out: dict[str, dict[str, float]] = {}
    for qid, docs in run.items():
        items: list[tuple[str, float]] = []
        for doc, s in docs.items():
            score = float(s)
            if math.isnan(score):
                raise InvalidArgument(f"run[{qid!r}][{doc!r}]: expected a number, got NaN")
            items.append((str(doc), score))
        items.sort(key=lambda t: -t[1])  # stable: ties keep the run's order
        n = len(items)
        key = str(qid)
        if key in out:
            raise InvalidArgument(f"run: query id {qid!r} collides with another as a string")
        out[key] = {doc: float(n - i) for i, (doc, _) in enumerate(items)}
    return out


def _canonical_qrels(qrels: Qrels) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for qid, docs in qrels.items():
        judged: dict[str, int] = {}
        for doc, rel in docs.items():
            if isinstance(rel, bool) or not isinstance(rel, int | np.integer):
                raise InvalidArgument(
                    f"qrels[{qid!r}][{doc!r}]: expected an int relevance grade, got {rel!r}"
                )
            judged[str(doc)] = int(rel)
        out[str(qid)] = judged
    if not out:
        raise InvalidArgument("qrels: expected at least one judged query, got none")
    return out


@overload
def ir_metrics(
    run: Run,
    qrels: Qrels,
    metrics: Iterable[str] = ...,
    *,
    per_query: Literal[False] = ...,
) -> dict[str, float]: ...


@overload
def ir_metrics(
    run: Run,
    qrels: Qrels,
    metrics: Iterable[str] = ...,
    *,
    per_query: Literal[True],
) -> dict[str, dict[str, float]]: ...


def ir_metrics(
    run: Run,
    qrels: Qrels,
    metrics: Iterable[str] = DEFAULT_IR_METRICS,
    *,
    per_query: bool = False,
) -> dict[str, float] | dict[str, dict[str, float]]:
    """Retrieval quality of ``run`` against relevance judgments ``qrels``, via ir-measures.

    Parameters
    ----------
    run
        query id -> doc id -> score (higher is better), e.g. from :func:`run_from_results`.
        Only the ranking matters: docs are ranked by score, ties in the order the run lists
        them.
    qrels
        query id -> doc id -> int relevance grade (``>= 1`` is relevant; grades are the gains
        of nDCG).
    metrics
        ir-measures names, e.g. ``"MRR@10"`` (an alias of ``RR@10``), ``"nDCG@10"``, ``"R@10"``,
        ``"P@5"``, ``"AP"``.
    per_query
        If true, return metric -> query id -> value instead of the means.

    Returns
    -------
    dict
        metric name (as given) -> mean over the queries of ``qrels``, or per query values.
        Ids are compared as strings. A judged query missing from the run scores 0; run
        queries without judgments are ignored.

    Raises
    ------
    MissingExtra
        ir-measures is not installed.
    InvalidArgument
        An unknown metric name or malformed run/qrels.

    Examples
    --------
    >>> run = {"q1": {"a": 0.9, "b": 0.8, "c": 0.1}}
    >>> ir_metrics(run, {"q1": {"c": 1}}, ["MRR@10"])  # relevant doc at rank 3
    {'MRR@10': 0.3333333333333333}
    """
    names = list(metrics)
    if not names or len(set(names)) != len(names):
        raise InvalidArgument(f"metrics: expected distinct metric names, got {names!r}")
    irm = _import_ir_measures()
    measures = []
    for name in names:
        try:
            measures.append(irm.parse_measure(name))
        except Exception as e:  # ir-measures raises NameError/ValueError/...
            raise InvalidArgument(f"metrics: unknown ir-measures name {name!r} ({e})") from e
    by_measure = {str(m): name for m, name in zip(measures, names, strict=True)}
    if len(by_measure) != len(names):
        raise InvalidArgument(f"metrics: expected distinct measures, got aliases in {names!r}")
    qr = _canonical_qrels(qrels)
    rn = _canonical_run(run)
    for qid in qr:  # a judged query the run lacks scores 0, whatever the library's default
        rn.setdefault(qid, {})
    if per_query:
        values: dict[str, dict[str, float]] = {name: {} for name in names}
        for m in irm.iter_calc(measures, qr, rn):
            values[by_measure[str(m.measure)]][m.query_id] = float(m.value)
        return values
    agg = {str(m): float(v) for m, v in irm.calc_aggregate(measures, qr, rn).items()}
    return {name: agg[str(m)] for m, name in zip(measures, names, strict=True)}
