"""The import direction of DESIGN.md holds, and importing polyvec does no heavy work."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "polyvec"

# package -> polyvec subpackages/modules it must NOT import
FORBIDDEN = {
    "storage": {"collection", "db", "index", "multivector", "filters", "cli", "_kernels"},
    "_kernels": {"collection", "db", "storage", "index", "multivector", "filters", "cli"},
    "filters": {"collection", "db", "storage", "index", "multivector", "cli", "_kernels"},
    "codecs": {"collection", "db", "storage", "index", "multivector", "filters", "cli"},
    "index": {"collection", "db", "storage", "multivector", "filters", "cli"},
    "multivector": {"collection", "db", "storage", "filters", "cli"},
    "cli": {"storage", "index", "multivector", "_kernels", "_live", "_growing", "_validate"},
    "fields": {"collection", "db", "cli", "engine", "storage", "filters", "server", "client"},
    "engine": {"collection", "db", "cli", "server", "client", "distributed"},
    # the spec layer (modules) sits under every engine; models holds numpy parts, no embedder
    "spec": {"collection", "db", "storage", "index", "multivector", "filters", "cli", "_kernels",
             "codecs", "models", "embed", "factory", "index_spec"},
    "index_spec": {"collection", "db", "storage", "index", "multivector", "filters", "cli",
                   "_kernels", "codecs", "models", "embed", "factory"},
    "factory": {"collection", "db", "storage", "index", "multivector", "filters", "cli",
                "_kernels", "codecs", "models", "embed"},
    "models": {"collection", "db", "storage", "index", "multivector", "filters", "cli",
               "_kernels", "codecs", "embed"},
}


def _polyvec_imports(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package depth
                parts = path.relative_to(SRC).parts[:-1]
                base = parts[: len(parts) - (node.level - 1)]
                mod = ".".join((*base, node.module)) if node.module else ".".join(base)
                names = [mod] if node.module else [f"{'.'.join(base)}.{a.name}".strip(".")
                                                    for a in node.names]
            else:
                names = [node.module.removeprefix("polyvec.")] if node.module and \
                    node.module.startswith("polyvec") else []
            found.update(n.split(".")[0] for n in names if n)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("polyvec."))
    found.discard(package)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    root = SRC / package
    module = SRC / f"{package}.py"  # a top-level module (spec, index_spec, factory) is one file
    files = list(root.rglob("*.py")) if root.is_dir() else [module] if module.is_file() else []
    if not files:
        pytest.skip(f"polyvec.{package} does not exist yet")
    for f in files:
        bad = _polyvec_imports(f, package) & FORBIDDEN[package]
        assert not bad, f"{f.relative_to(SRC)} imports {sorted(bad)}"


def test_only_cli_imports_eval() -> None:
    for f in SRC.rglob("*.py"):
        top = f.relative_to(SRC).parts[0]
        if top in ("cli", "eval"):
            continue
        assert "eval" not in _polyvec_imports(f, top.removesuffix(".py")), f


def test_import_is_cheap() -> None:
    code = ("import sys, polyvec; heavy = [m for m in ('numba', 'faiss', 'matplotlib', 'torch') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
