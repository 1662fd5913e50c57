"""Evaluation reports: one JSON file (the data), one Markdown file (a table), PNG plots.

A report is a flat table of rows (one dict per system / setting / sample size) plus any extra
data. Plots are described by :class:`PlotSpec` and drawn from the table's columns, so what is
plotted is always what is tabulated. matplotlib is optional (the ``[eval]`` extra), imported
only when a plot is drawn and used through its Agg canvas (no pyplot, no global backend); without
it the JSON and Markdown are still written and the Markdown says why there is no plot.

Examples
--------
>>> rows = [{"system": "flat", "R@10": 1.0}, {"system": "hnsw", "R@10": 0.97}]
>>> print(markdown_table(rows, floatfmt=".2f"))
| system | R@10 |
| :--- | ---: |
| flat | 1.00 |
| hnsw | 0.97 |
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InvalidArgument, MissingExtra

__all__ = ["PlotSpec", "ReportFiles", "markdown_table", "write_report", "to_jsonable"]

_EVAL_EXTRA = "pip install 'polyvec[eval]'"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class PlotSpec:
    """One plot drawn from the report's table rows.

    - ``kind="bar"``: grouped bars, one group per distinct value of column ``x`` (e.g.
      ``"system"``), one bar per column in ``y`` (e.g. ``("MRR@10", "nDCG@10")``).
    - ``kind="line"``: y against x (e.g. ``x="recall", y=("qps",)``), one line per distinct
      value of ``series`` (and per ``y`` column), points sorted by x.

    ``name`` makes the file name ``<report>_<name>.png``.
    """

    name: str
    kind: Literal["bar", "line"]
    x: str
    y: tuple[str, ...]
    series: str | None = None
    title: str = ""
    xlabel: str | None = None
    ylabel: str | None = None
    logx: bool = False
    logy: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidArgument(f"PlotSpec.name: expected [A-Za-z0-9._-]+, got {self.name!r}")
        if self.kind not in ("bar", "line"):
            raise InvalidArgument(f"PlotSpec.kind: expected 'bar' or 'line', got {self.kind!r}")
        if isinstance(self.y, str) or not self.y:
            raise InvalidArgument(
                f"PlotSpec.y: expected a non-empty tuple of columns, got {self.y!r}"
            )
        object.__setattr__(self, "y", tuple(self.y))  # a list is fine too; keep it hashable
        if self.kind == "bar" and self.series is not None:
            raise InvalidArgument("PlotSpec.series: bar charts group by x; expected None")


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote. ``notes`` says e.g. why plots were skipped."""

    json: Path
    markdown: Path
    plots: tuple[Path, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tuples and paths made JSON types; NaN/inf become None.

    Mapping keys become strings. Anything else that JSON cannot hold raises InvalidArgument.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    raise InvalidArgument(f"report data: expected JSON-like values, got {type(obj).__name__}")


# --------------------------------------------------------------------------- Markdown


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        text = format(float(value), floatfmt) if math.isfinite(value) else str(float(value))
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    floatfmt: str = ".4f",
) -> str:
    """A GitHub-flavoured Markdown table of ``rows``.

    ``columns`` defaults to every key in first-seen order; a missing or ``None`` cell is empty.
    Floats use ``floatfmt``; all-numeric columns are right-aligned; ``|`` in text is escaped.
    """
    if columns is None:
        cols: list[str] = []
        for row in rows:
            cols.extend(c for c in row if c not in cols)
    else:
        cols = list(columns)
    if not cols:
        raise InvalidArgument("markdown_table: expected at least one column, got none")
    try:
        format(0.0, floatfmt)
    except ValueError as e:
        raise InvalidArgument(f"floatfmt: expected a float format spec, got {floatfmt!r}") from e
    header = "| " + " | ".join(_cell(c, floatfmt) for c in cols) + " |"
    aligns = []
    for c in cols:
        present = [row[c] for row in rows if row.get(c) is not None]
        aligns.append("---:" if present and all(_is_number(v) for v in present) else ":---")
    lines = [header, "| " + " | ".join(aligns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), floatfmt) for c in cols) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtra(f"plots need matplotlib; install it with: {_EVAL_EXTRA}") from e
    return Figure, FigureCanvasAgg


def _check_columns(spec: PlotSpec, rows: Sequence[Mapping[str, Any]]) -> None:
    for col in (spec.x, *spec.y, *([spec.series] if spec.series else [])):
        if not any(col in row for row in rows):
            raise InvalidArgument(f"plot {spec.name!r}: column {col!r} is in no table row")


def _draw(spec: PlotSpec, rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    figure_cls, canvas_cls = _matplotlib()
    fig = figure_cls(figsize=(7.0, 4.5), dpi=100)
    canvas_cls(fig)
    ax = fig.add_subplot()
    if spec.kind == "bar":
        groups = list(  # x values with at least one bar
            dict.fromkeys(
                str(r.get(spec.x)) for r in rows if any(_is_number(r.get(c)) for c in spec.y)
            )
        )
        width = 0.8 / len(spec.y)
        base = np.arange(len(groups), dtype=np.float64)
        for j, col in enumerate(spec.y):
            heights = [math.nan] * len(groups)
            for r in rows:
                if _is_number(r.get(col)):
                    heights[groups.index(str(r.get(spec.x)))] = float(r[col])
            ax.bar(base + (j - (len(spec.y) - 1) / 2) * width, heights, width, label=col)
        # long system names would run into each other: wrap them onto several lines
        ax.set_xticks(base, [textwrap.fill(str(g), 24) for g in groups])
    else:
        keys = list(dict.fromkeys(r.get(spec.series) for r in rows)) if spec.series else [None]
        for key in keys:
            sel = [r for r in rows if spec.series is None or r.get(spec.series) == key]
            for col in spec.y:
                pts = sorted(
                    (float(r[spec.x]), float(r[col]))
                    for r in sel
                    if _is_number(r.get(spec.x)) and _is_number(r.get(col))
                )
                if not pts:
                    continue
                label = " ".join(str(p) for p in (key, col if len(spec.y) > 1 else None) if p)
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=label or col)
    if spec.logx:
        ax.set_xscale("log")
    if spec.logy:
        ax.set_yscale("log")
    ax.set_xlabel(spec.xlabel if spec.xlabel is not None else spec.x)
    ax.set_ylabel(spec.ylabel if spec.ylabel is not None else ", ".join(spec.y))
    if spec.title:
        ax.set_title(spec.title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})


# --------------------------------------------------------------------------- report


def write_report(
    out_dir: str | Path,
    name: str,
    data: Mapping[str, Any],
    table_rows: Sequence[Mapping[str, Any]],
    *,
    plots: Sequence[PlotSpec] | None = None,
    columns: Sequence[str] | None = None,
    floatfmt: str = ".4f",
) -> ReportFiles:
    """Write ``<name>.json``, ``<name>.md`` and one ``<name>_<plot>.png`` per plot.

    Parameters
    ----------
    out_dir
        Folder, created if missing; files of the same name are overwritten.
    name
        Report name, ``[A-Za-z0-9._-]+``; the Markdown title and the file stem.
    data
        Anything else worth keeping (settings, data-set facts, per-query values); stored in
        the JSON under ``"data"`` (numpy values converted, NaN/inf stored as null).
    table_rows
        The results table, one dict per row; stored under ``"table"`` and drawn as Markdown.
    plots
        Plots drawn from ``table_rows``. Without matplotlib they are skipped, and the
        Markdown and ``ReportFiles.notes`` say so.
    columns, floatfmt
        Passed to :func:`markdown_table`.

    Returns
    -------
    ReportFiles
        Paths written, and notes.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(f"name: expected [A-Za-z0-9._-]+, got {name!r}")
    specs = list(plots or [])
    if len({s.name for s in specs}) != len(specs):
        raise InvalidArgument("plots: expected distinct PlotSpec names")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [dict(r) for r in table_rows]
    for spec in specs:
        _check_columns(spec, rows)

    written: list[Path] = []
    notes: list[str] = []
    for spec in specs:
        path = out / f"{name}_{spec.name}.png"
        try:
            _draw(spec, rows, path)
        except MissingExtra as e:
            notes.append(f"plots not drawn: {e}")
            break
        written.append(path)

    doc = {
        "name": name,
        "data": to_jsonable(data),
        "table": to_jsonable(rows),
        "plots": [p.name for p in written],
        "notes": notes,
    }
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    parts = [f"# {name}", ""]
    if rows or columns:
        parts += [markdown_table(rows, columns, floatfmt), ""]
    for spec, path in zip(specs, written, strict=False):
        parts += [f"![{spec.title or spec.name}]({path.name})", ""]
    parts += [f"_{n}_" for n in notes]
    md_path = out / f"{name}.md"
    md_path.write_text("\n".join(parts).rstrip("\n") + "\n", encoding="utf-8")
    return ReportFiles(json=json_path, markdown=md_path, plots=tuple(written), notes=tuple(notes))
