"""Lexical retrieval: the analyzer that turns text into terms, and BM25 scoring.

A ``pv.BM25`` field stores each item's term ids and frequencies (a Sparse field's layout, plus
each item's length) and scores queries with the whole collection's statistics.
"""

from __future__ import annotations

from .analyzer import ENGLISH_STOPWORDS, Analyzer, term_id, term_ids

__all__ = ["Analyzer", "ENGLISH_STOPWORDS", "term_id", "term_ids"]
