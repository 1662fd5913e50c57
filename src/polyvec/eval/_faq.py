"""Parse the Python FAQ as rendered by Sphinx (``/usr/share/doc/python3.X/html/faq/*.html``).

Each FAQ page is a tree of ``<section id=...>`` elements (``<div class="section">`` in older
Sphinx), each opening with a heading. A question is a *leaf* section: its heading is the question
and its text is the answer. Sections with sub-sections are groupings ("Core Language"); a leaf
with no text (gui.html's "General GUI Questions") is a heading without an answer and is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["FaqPair", "parse_faq_page", "parse_faq_folder"]

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {"p", "pre", "li", "dt", "dd", "div", "blockquote", "tr", "table", "ul", "ol", "dl"}
_VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "col", "area", "base", "source"}


@dataclass(frozen=True)
class FaqPair:
    """One question and its answer. ``anchor`` is the section id, unique within its page."""

    page: str
    anchor: str
    question: str
    answer: str
    page_title: str
    section: str  # title of the enclosing grouping section, "" for a top-level question


@dataclass
class _Section:
    anchor: str
    parent: _Section | None
    title: str = ""
    chunks: list[str] = field(default_factory=list)
    children: int = 0


class _FaqParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[_Section] = []
        self._open: list[tuple[str, _Section | None]] = []  # (tag, section it opened)
        self._heading: list[str] | None = None
        self._skip = 0  # depth inside <a class="headerlink"> (the pilcrow)
        self._pre = 0

    def _current(self) -> _Section | None:
        for _, sec in reversed(self._open):
            if sec is not None:
                return sec
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br":
                self.handle_data("\n")
            return
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        sec = None
        if tag == "section" or (tag == "div" and "section" in classes):
            parent = self._current()
            sec = _Section(anchor=a.get("id") or "", parent=parent)
            if parent is not None:
                parent.children += 1
            self.sections.append(sec)
        self._open.append((tag, sec))
        current = self._current()
        if tag in _HEADINGS and current is not None and not current.title:
            self._heading = []
        elif (tag == "a" and "headerlink" in classes) or self._skip:
            self._skip += 1
        elif tag == "pre":
            self._pre += 1
        if tag in _BLOCKS and current is not None:
            current.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or all(open_tag != tag for open_tag, _ in self._open):
            return  # a stray end tag
        while self._open:  # pop to the matching tag (tolerates unclosed <p>, <li>)
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break
        current = self._current()
        if self._skip:
            self._skip -= 1
        elif tag in _HEADINGS and self._heading is not None and current is not None:
            current.title = _squash("".join(self._heading))
            self._heading = None
        elif tag == "pre":
            self._pre -= 1
        if tag in _BLOCKS and current is not None:
            current.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._heading is not None:
            self._heading.append(data)
            return
        current = self._current()
        if current is not None:
            current.chunks.append(data if self._pre else re.sub(r"\s+", " ", data))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _clean(chunks: list[str]) -> str:
    lines = (line.rstrip() for line in "".join(chunks).split("\n"))
    text = "\n".join(line for line in lines if line.strip())
    return text.strip()


def parse_faq_page(html: str, page: str) -> list[FaqPair]:
    """Question/answer pairs of one rendered FAQ page, in document order.

    Examples
    --------
    >>> html = ('<section id="faq"><h1>Some FAQ</h1><section id="q1"><h2>Why?<a class="headerlink"'
    ...         ' href="#q1">¶</a></h2><p>Because.</p><pre>x = 1\\ny = 2</pre></section></section>')
    >>> [(p.anchor, p.question, p.answer, p.page_title) for p in parse_faq_page(html, "some")]
    [('q1', 'Why?', 'Because.\\nx = 1\\ny = 2', 'Some FAQ')]
    """
    parser = _FaqParser()
    parser.feed(html)
    parser.close()
    roots = [s for s in parser.sections if s.parent is None]
    page_title = roots[0].title if roots else page
    pairs = []
    for sec in parser.sections:
        answer = _clean(sec.chunks)
        if sec.children or sec.parent is None or not answer or not sec.title:
            continue
        group = sec.parent.title if sec.parent.parent is not None else ""
        pairs.append(FaqPair(page, sec.anchor, sec.title, answer, page_title, group))
    return pairs


def _page_order(folder: Path) -> list[str]:
    pages = sorted(p.stem for p in folder.glob("*.html") if p.stem != "index")
    index = folder / "index.html"
    if not index.is_file():
        return pages
    listed = re.findall(r'class="toctree-l1"><a class="reference internal" href="([\w-]+)\.html"',
                        index.read_text(encoding="utf-8"))
    rank = {name: i for i, name in enumerate(dict.fromkeys(listed))}
    return sorted(pages, key=lambda p: (rank.get(p, len(rank)), p))


def parse_faq_folder(folder: Path) -> list[FaqPair]:
    """All pairs of a folder of FAQ pages, pages in the order of ``index.html``'s table of contents
    (alphabetical when there is no index)."""
    pairs: list[FaqPair] = []
    for page in _page_order(folder):
        pairs.extend(parse_faq_page((folder / f"{page}.html").read_text(encoding="utf-8"), page))
    return pairs
