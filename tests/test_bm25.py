"""BM25 fields against a pure-Python oracle of Lucene's formula (over terms as strings, with
the whole collection's statistics) across growing rows, sealed segments, deletes, upserts,
compaction, filters and reopening; the analyzer; typed refusals that change nothing."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import polyvec as pv
from polyvec.errors import InvalidArgument, InvalidVector
from polyvec.lexical import Analyzer
from polyvec.spec import field_from_dict

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
         "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi",
         "chi", "psi", "omega", "the", "of", "and"]


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, int(rng.integers(1, 25)), p=_zipf())) for _ in range(n)]


def _zipf() -> np.ndarray:
    w = 1.0 / np.arange(1, len(WORDS) + 1)
    return w / w.sum()


def _oracle(held: dict[Any, str], query: str, analyzer: Analyzer, k1: float, b: float,
            keep: Any = None) -> list[tuple[Any, float]]:
    """Lucene's BM25 by hand: terms as strings, statistics over every held document."""
    docs = {i: Counter(analyzer.terms(t)) for i, t in held.items()}
    lengths = {i: sum(c.values()) for i, c in docs.items()}
    n, avgdl = len(docs), sum(lengths.values()) / len(docs)
    q = Counter(analyzer.terms(query))
    out = []
    for i, tf in docs.items():
        if keep is not None and not keep(i):
            continue
        shared = [t for t in q if t in tf]
        if not shared:
            continue
        score = 0.0
        for t in shared:
            df = sum(t in c for c in docs.values())
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            score += q[t] * idf * tf[t] / (tf[t] + k1 * (1 - b + b * lengths[i] / avgdl))
        out.append((i, score))
    return sorted(out, key=lambda p: -p[1])


@pytest.mark.parametrize(("k1", "b"), [(0.9, 0.4), (1.2, 0.75)])
def test_scores_equal_the_oracle_over_segments_deletes_and_upserts(tmp_path: Path, k1: float,
                                                                   b: float) -> None:
    rng = np.random.default_rng(0)
    db = pv.connect(tmp_path / "db")
    spec = pv.BM25(k1=k1, b=b)
    c = db.create_collection("t", {"text": spec}, indexed=["g"], segment_rows=200)
    held: dict[Any, str] = {}
    for lo in (0, 250, 500):  # sealed segments and growing rows
        texts = _texts(rng, 250)
        c.add(list(range(lo, lo + 250)), {"text": texts},
              [{"g": i % 2} for i in range(lo, lo + 250)])
        held |= dict(zip(range(lo, lo + 250), texts, strict=True))
        if lo < 500:
            c.flush()
    c.delete(list(range(0, 750, 5)))
    for i in range(0, 750, 5):
        held.pop(i)
    again = _texts(rng, len(range(3, 750, 12)))
    c.upsert(list(range(3, 750, 12)), {"text": again}, [{"g": i % 2} for i in range(3, 750, 12)])
    held |= dict(zip(range(3, 750, 12), again, strict=True))
    queries = ["alpha beta", "omega psi psi", "the gamma of delta", "kappa", "nothing matches"]

    def check(coll: Any) -> None:
        for q in queries:
            for flt, keep in ((None, None), ({"g": 1}, lambda i: i % 2 == 1)):
                every = _oracle(held, q, spec.analyzer, k1, b, keep)
                want = every[:10]
                got = coll.search(q, 10, filter=flt)
                ids = [i for i in got.ids if i is not None]
                assert len(ids) == len(want)
                # the top-10 scores; each returned id carries its own oracle score (ties of
                # equal score may come in either order)
                np.testing.assert_allclose(got.scores[:len(ids)], [s for _, s in want],
                                           rtol=1e-5)
                scores = dict(every)
                np.testing.assert_allclose([scores[i] for i in ids], got.scores[:len(ids)],
                                           rtol=1e-5)

    check(c)
    batch = c.search(queries[:2], 3)
    assert batch.ids.shape == (2, 3)
    c.compact()
    c.merge(force=True)
    check(c)
    c.close()
    db.close()
    db = pv.connect(tmp_path / "db")
    check(db.get_collection("t"))
    db.close()


def test_the_analyzer() -> None:
    import doctest

    import polyvec.lexical.analyzer

    assert doctest.testmod(polyvec.lexical.analyzer).failed == 0
    a = Analyzer()
    assert a.terms("The FOX, the Dog!") == ["fox", "dog"]
    assert a.terms("Ｆｕｌｌｗｉｄｔｈ ｗｏｒｄ") == ["fullwidth", "word"]  # NFKC
    assert a.terms("Ärger über Öl") == ["ärger", "über", "öl"]
    assert Analyzer(stopwords=None).terms("the a") == ["the", "a"]
    assert Analyzer(stopwords=["fox"]).terms("the fox") == ["the"]
    assert Analyzer(min_length=3).terms("a bb ccc dddd") == ["ccc", "dddd"]
    ids = Analyzer(split_identifiers=True).terms("use numpy.linalg.norm with read_csv, XMLParser")
    assert ids == ["use", "numpy.linalg.norm", "numpy", "linalg", "norm", "read_csv", "read",
                   "csv", "xmlparser", "xml", "parser"]
    assert Analyzer.from_dict(Analyzer(stopwords=["x"], min_length=2).to_dict()) == \
        Analyzer(stopwords=["x"], min_length=2)
    for bad in ({"stopwords": "klingon"}, {"min_length": 0}, {"split_identifiers": "yes"},
                {"stemmer": "klingon"}):
        with pytest.raises(InvalidArgument):
            Analyzer(**bad)
    with pytest.raises(InvalidArgument, match=r"unknown options \['lowercase'\]"):
        Analyzer.from_dict({"lowercase": False})


def test_stemming_through_pystemmer() -> None:
    from conftest import extra

    extra("lexical", "Stemmer")
    assert Analyzer(stemmer="english").terms("running packages") == ["run", "packag"]


def test_bad_input_is_typed_and_changes_nothing(tmp_path: Path) -> None:
    db = pv.connect(tmp_path / "db")
    c = db.create_collection("t", {"text": pv.BM25(), "v": pv.Dense(2)})
    c.add(["a"], {"text": ["kept text"], "v": np.ones((1, 2), np.float32)})
    for bad, match in (([""], "non-empty text"), (["  \n"], "non-empty text"),
                       ([3], "expected a text"), ("one string", "list of texts"),
                       (["x", "y"], "expected 1 texts, got 2")):
        with pytest.raises(InvalidVector, match=match):
            c.upsert(["a"], {"text": bad, "v": np.ones((1, 2), np.float32)})
    for q, match in (("", "non-empty"), ([], "non-empty list"), (3, "text or a list of texts"),
                     (["ok", None], r"query\[1\]")):
        with pytest.raises(InvalidVector, match=match):
            c.search(q, 1, field="text")
    with pytest.raises(InvalidArgument, match="searched exactly"):
        c.create_index("text", "HNSW32")
    assert c.search("kept", 1, field="text").ids.tolist() == ["a"]
    assert c.search("the", 1, field="text").ids.tolist() == [None]  # only a stop word
    for bad in ({"k1": -1}, {"b": 1.5}, {"b": True}, {"analyzer": "english"},
                {"analyzer": {"stem": "english"}}):
        with pytest.raises(InvalidArgument):
            pv.BM25(**bad)
    spec = pv.BM25(Analyzer(split_identifiers=True, stopwords=None), k1=1.2, b=0.75)
    assert field_from_dict(spec.to_dict()) == spec
    db.close()
