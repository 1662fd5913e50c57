"""Reports: JSON round-trip, well-formed Markdown tables, PNG plots (when matplotlib is there)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import numpy as np
import pytest

from polyvec.errors import InvalidArgument, MissingExtra
from polyvec.eval.report import PlotSpec, markdown_table, to_jsonable, write_report
from polyvec.models.report import CompatReport

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="needs matplotlib: pip install 'polyvec[eval]'"
)

ROWS = [
    {"system": "flat", "MRR@10": 0.5, "nDCG@10": np.float32(0.625), "qps": 120},
    {"system": "hnsw", "MRR@10": 0.47, "nDCG@10": 0.6, "qps": 2400},
]
SWEEP = [  # recall vs QPS of one system at three settings, out of x order on purpose
    {"system": "hnsw", "ef": 64, "recall": 0.95, "qps": 900.0},
    {"system": "hnsw", "ef": 16, "recall": 0.80, "qps": 3000.0},
    {"system": "ivf", "ef": 8, "recall": 0.70, "qps": 5000.0},
    {"system": "hnsw", "ef": 32, "recall": 0.90, "qps": 1800.0},
]
PLOTS = [
    PlotSpec("metrics", "bar", x="system", y=("MRR@10", "nDCG@10"), title="Quality"),
    PlotSpec("pareto", "line", x="recall", y=("qps",), series="system", logy=True),
]


def cells(line: str) -> list[str]:
    """Cells of a Markdown table line, honouring escaped pipes."""
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in re.split(r"(?<!\\)\|", line[2:-2])]


def test_markdown_table_exact():
    rows = [{"name": "a|b", "score": 0.123456, "n": 3}, {"name": "c", "n": 10, "note": None}]
    assert markdown_table(rows, floatfmt=".3f") == "\n".join(
        [
            "| name | score | n | note |",  # columns in first-seen order
            "| :--- | ---: | ---: | :--- |",  # numeric columns right-aligned
            "| a\\|b | 0.123 | 3 |  |",  # the pipe in the text is escaped
            "| c |  | 10 |  |",  # missing and None cells are empty
        ]
    )


def test_markdown_table_well_formed_with_columns():
    text = markdown_table(ROWS + [{"system": "x", "extra": float("nan")}], ["system", "qps"])
    lines = text.splitlines()
    assert len(lines) == 2 + 3
    assert all(len(cells(line)) == 2 for line in lines)
    assert cells(lines[0]) == ["system", "qps"]
    assert set(lines[1]) <= set("|-: ")
    assert cells(lines[3]) == ["hnsw", "2400"]
    with pytest.raises(InvalidArgument, match="column"):
        markdown_table([])
    with pytest.raises(InvalidArgument, match="floatfmt"):
        markdown_table(ROWS, floatfmt="%d")


def test_to_jsonable():
    data = {"a": np.arange(3), "b": (np.float64(1.5), np.int32(2)), 3: float("inf"), "p": None}
    assert to_jsonable(data) == {"a": [0, 1, 2], "b": [1.5, 2], "3": None, "p": None}
    with pytest.raises(InvalidArgument, match="JSON"):
        to_jsonable({"s": {1, 2}})


def test_write_report_json_and_markdown(tmp_path):
    data = {"dataset": "toy", "per_query": np.array([0.5, 1.0]), "note": float("nan")}
    files = write_report(tmp_path / "out", "bench-1", data, ROWS)
    assert files.json == tmp_path / "out" / "bench-1.json"
    assert files.plots == () and files.notes == ()
    doc = json.loads(files.json.read_text())
    assert doc == {
        "name": "bench-1",
        "data": {"dataset": "toy", "per_query": [0.5, 1.0], "note": None},
        "table": [
            {"system": "flat", "MRR@10": 0.5, "nDCG@10": 0.625, "qps": 120},
            {"system": "hnsw", "MRR@10": 0.47, "nDCG@10": 0.6, "qps": 2400},
        ],
        "plots": [],
        "notes": [],
    }
    md = files.markdown.read_text().splitlines()
    assert md[0] == "# bench-1"
    table = [line for line in md if line.startswith("|")]
    assert cells(table[0]) == ["system", "MRR@10", "nDCG@10", "qps"]
    assert cells(table[2]) == ["flat", "0.5000", "0.6250", "120"]


@needs_matplotlib
def test_write_report_plots_are_png(tmp_path):
    files = write_report(tmp_path, "run", {}, ROWS + SWEEP, plots=PLOTS)
    assert [p.name for p in files.plots] == ["run_metrics.png", "run_pareto.png"]
    for path in files.plots:
        blob = path.read_bytes()
        assert blob[:8] == PNG_MAGIC and len(blob) > 1000
    assert json.loads(files.json.read_text())["plots"] == ["run_metrics.png", "run_pareto.png"]
    md = files.markdown.read_text()
    assert "![Quality](run_metrics.png)" in md and "![pareto](run_pareto.png)" in md


def test_without_matplotlib_writes_json_and_markdown_and_says_so(tmp_path, monkeypatch):
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the lazy import fail
    files = write_report(tmp_path, "run", {"a": 1}, ROWS + SWEEP, plots=PLOTS)
    assert files.plots == () and not list(tmp_path.glob("*.png"))
    assert len(files.notes) == 1 and "pip install 'polyvec[eval]'" in files.notes[0]
    assert "plots not drawn" in files.markdown.read_text()
    assert json.loads(files.json.read_text())["notes"] == list(files.notes)


def test_compat_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    """The model-upgrade report imports matplotlib only to plot, and says what to install."""
    for mod in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the lazy import fail
    rep = CompatReport("emb", "v2", "v1", 10, 1)
    with pytest.raises(MissingExtra, match=r"pip install 'polyvec\[eval\]'"):
        rep.plot(tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()
    assert "| method |" in rep.to_markdown()  # the rest of the report needs no extra


def test_bad_names_and_columns(tmp_path):
    with pytest.raises(InvalidArgument, match="name"):
        write_report(tmp_path, "../escape", {}, ROWS)
    with pytest.raises(InvalidArgument, match="name"):
        PlotSpec("a b", "bar", x="system", y=("qps",))
    with pytest.raises(InvalidArgument, match="kind"):
        PlotSpec("p", "pie", x="system", y=("qps",))
    with pytest.raises(InvalidArgument, match="tuple"):
        PlotSpec("p", "bar", x="system", y="qps")
    assert PlotSpec("p", "bar", x="s", y=["a"]).y == ("a",)
    # a plot column missing from the table fails before anything is drawn
    with pytest.raises(InvalidArgument, match="'latency'"):
        write_report(tmp_path, "r", {}, ROWS, plots=[PlotSpec("p", "bar", "system", ("latency",))])
