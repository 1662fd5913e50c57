"""Text to terms: the analyzer of a BM25 field, frozen in the collection's schema.

Steps, in order: Unicode NFKC normalisation; tokens are runs of word characters (``\\w+``,
Unicode-aware), or, with ``split_identifiers``, identifiers with dots (``os.path.join``), each
kept whole and also split at dots, underscores and camel-case boundaries (``getHTTPResponse``
-> ``gethttpresponse get http response``), since dense and WordPiece models shred them;
lowercasing (``str.lower``); tokens shorter than ``min_length`` dropped; stop words dropped
(``"english"`` is Lucene's classic English set of 33 words, or give your own); Snowball stemming
through PyStemmer (``stemmer="english"``, ... ; extra ``[lexical]``). A term's id is the
xxHash32 of its UTF-8 bytes: no vocabulary to store or share between processes (two terms of
one collection share an id with probability ~ terms**2 / 2**33; their statistics then merge).

>>> Analyzer().terms("The Quick brown fox, the QUICK dog")
['quick', 'brown', 'fox', 'quick', 'dog']
>>> Analyzer(split_identifiers=True, stopwords=None).terms("call os.path.join or getHTTPResponse")
['call', 'os.path.join', 'os', 'path', 'join', 'or', 'gethttpresponse', 'get', 'http', 'response']
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from ..errors import InvalidArgument, MissingExtra

__all__ = ["Analyzer", "ENGLISH_STOPWORDS", "term_id", "term_ids"]

ENGLISH_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with"})
_WORDS = re.compile(r"\w+")
_IDENTIFIERS = re.compile(r"\w+(?:\.\w+)*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_OPTIONS = ("stopwords", "stemmer", "split_identifiers", "min_length")


@dataclass(frozen=True)
class Analyzer:
    """How a BM25 field's texts and queries become terms (see the module)."""

    stopwords: str | tuple[str, ...] | None = "english"
    stemmer: str | None = None
    split_identifiers: bool = False
    min_length: int = 1
    _stem: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sw = self.stopwords
        if isinstance(sw, list | frozenset | set):
            object.__setattr__(self, "stopwords", tuple(sorted(sw)))
        elif not (sw is None or sw == "english" or isinstance(sw, tuple)):
            raise InvalidArgument(f"Analyzer(stopwords=...): expected 'english', None or a list "
                                  f"of words, got {sw!r}")
        if isinstance(self.stopwords, tuple) and not all(isinstance(w, str)
                                                         for w in self.stopwords):
            raise InvalidArgument("Analyzer(stopwords=...): expected words (str)")
        if not isinstance(self.split_identifiers, bool):
            raise InvalidArgument(f"Analyzer(split_identifiers=...): expected a bool, got "
                                  f"{self.split_identifiers!r}")
        m = self.min_length
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise InvalidArgument(f"Analyzer(min_length=...): expected an int >= 1, got {m!r}")
        if self.stemmer is not None:
            object.__setattr__(self, "_stem", _stemmer(self.stemmer))

    @property
    def _stop(self) -> frozenset[str]:
        sw = self.stopwords
        return ENGLISH_STOPWORDS if sw == "english" else frozenset(sw or ())

    def terms(self, text: str) -> list[str]:
        """The terms of ``text``, in order (repeats kept: they are term frequencies)."""
        text = unicodedata.normalize("NFKC", text)
        if self.split_identifiers:
            tokens = [t for whole in _IDENTIFIERS.findall(text) for t in _split(whole)]
        else:
            tokens = _WORDS.findall(text)
        stop, m = self._stop, self.min_length
        out = [t for t in (t.lower() for t in tokens) if len(t) >= m and t not in stop]
        return self._stem.stemWords(out) if self._stem is not None and out else out

    def to_dict(self) -> dict[str, Any]:
        sw = self.stopwords
        return {"stopwords": list(sw) if isinstance(sw, tuple) else sw, "stemmer": self.stemmer,
                "split_identifiers": self.split_identifiers, "min_length": self.min_length}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Analyzer:
        if not isinstance(d, dict):
            raise InvalidArgument(f"analyzer: expected a dict of options, got {d!r}")
        unknown = sorted(set(d) - set(_OPTIONS))
        if unknown:
            raise InvalidArgument(f"analyzer: unknown options {unknown}; expected some of "
                                  f"{list(_OPTIONS)}")
        return cls(**d)


def _split(whole: str) -> list[str]:
    parts = [p for piece in re.split(r"[._]", whole) for p in _CAMEL.split(piece) if p]
    return [whole] if len(parts) <= 1 else [whole, *parts]


def _stemmer(language: Any) -> Any:
    try:
        import Stemmer
    except ImportError as e:
        raise MissingExtra("Analyzer(stemmer=...) needs PyStemmer: pip install "
                           "'polyvec[lexical]'") from e
    if language not in Stemmer.algorithms():
        raise InvalidArgument(f"Analyzer(stemmer=...): expected one of "
                              f"{sorted(Stemmer.algorithms())}, got {language!r}")
    return Stemmer.Stemmer(language)


def term_id(term: str) -> int:
    """A term's id: xxHash32 of its UTF-8 bytes, seed 0."""
    return xxhash.xxh32_intdigest(term.encode("utf-8"))


def term_ids(terms: list[str]) -> np.ndarray:
    """The uint32 ids of ``terms`` (:func:`term_id` each)."""
    return np.fromiter((xxhash.xxh32_intdigest(t.encode("utf-8")) for t in terms),
                       dtype=np.uint32, count=len(terms))
