"""The import direction of DESIGN.md holds, and importing polyvec does no heavy work.

Every top-level package and module of ``src/polyvec`` has a rule in :data:`FORBIDDEN` (the
polyvec packages/modules it must not import), so a new package cannot escape the layering.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "polyvec"

# every top-level package or module of polyvec (module names without ".py")
TOP_LEVEL = frozenset(p.name.removesuffix(".py") for p in SRC.iterdir()
                      if (p.is_dir() and any(p.rglob("*.py"))) or p.suffix == ".py")
# the private modules under the engine (buffers, live table, input checks): below the facade
ENGINE_INTERNALS = {"_buffers", "_growing", "_live", "_validate"}
FACADE = {"collection", "db", "cli", "server", "client", "distributed"}
# what the server and the client may not touch: anything under the public facade
BELOW_FACADE = ENGINE_INTERNALS | {"storage", "index", "multivector", "codecs", "_kernels",
                                   "engine", "fields", "filters"}

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
    # the bottom: errors imports nothing of polyvec, types only errors
    "errors": set(TOP_LEVEL),
    "types": TOP_LEVEL - {"errors"},
    "limits": set(TOP_LEVEL),  # the bounds of one call: constants, a leaf like errors
    "_progress": set(TOP_LEVEL),  # progress bars: a leaf
    "__init__": {"cli", "eval", "embed", "models", "_kernels", "index", "multivector", "codecs",
                 "storage", "filters"} | ENGINE_INTERNALS,  # re-exports the facade only
    # embedders are leaves beside the engine: models may use them, never the reverse
    "embed": FACADE | ENGINE_INTERNALS | {"eval", "models", "storage", "index", "multivector",
                                          "codecs", "filters", "_kernels", "engine", "fields"},
    # evaluation drives the public facade and the index layer, never the internals
    "eval": ENGINE_INTERNALS | {"cli", "storage", "engine", "fields"},
    "collection": {"cli", "eval", "server", "client"},
    "db": {"cli", "eval", "server", "client"},
    # the JSON forms of HTTP: a leaf over errors and types, shared by server and client
    "wire": TOP_LEVEL - {"errors", "types"},
    "server": BELOW_FACADE | {"cli", "eval", "client", "models"},
    "client": BELOW_FACADE | {"cli", "eval", "server", "embed", "models", "db"},
    # framework stores: the public API (a collection, a client's too) and the embedders
    "integrations": BELOW_FACADE | {"cli", "eval", "server", "client", "models", "wire"},
    **{m: FACADE | {"eval", "embed"} for m in ENGINE_INTERNALS - {"_buffers", "_validate"}},
    # text analysis and BM25 scoring (numpy kernels): under the field kinds and the engine
    "lexical": FACADE | ENGINE_INTERNALS | {"engine", "storage", "index", "multivector",
                                            "filters", "fields", "codecs", "models", "embed",
                                            "eval", "integrations"},
    # sharded collections on Ray: the facade in each shard; the driver checks input as the
    # facade does (its validators, the field kinds' checks, the filter parser) before any
    # shard is called, and its ingest makes each Ray worker's embedder from a recorded model
    # spec (embed.registry)
    "distributed": (BELOW_FACADE - {"_validate", "fields", "filters"}) | {
        "cli", "eval", "server", "client", "integrations", "models", "lexical"},
    "_buffers": TOP_LEVEL - {"errors"},  # a leaf of the write path
    "_validate": FACADE | ENGINE_INTERNALS | {"eval", "embed", "storage", "index",
                                              "multivector", "filters"},
}
# top-level names whose rules are added on other branches of issue 11 (the lead merges them
# and empties this set; a name must not be both here and in FORBIDDEN)
PENDING: set[str] = set()


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


def _files(package: str) -> list[Path]:
    root = SRC / package
    if root.is_dir():
        return sorted(root.rglob("*.py"))
    return [SRC / f"{package}.py"] if (SRC / f"{package}.py").is_file() else []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    files = _files(package)
    assert files, f"a rule for polyvec.{package}, which does not exist: drop the rule"
    for f in files:
        bad = _polyvec_imports(f, package) & FORBIDDEN[package]
        assert not bad, f"{f.relative_to(SRC)} imports {sorted(bad)}"


def test_every_top_level_package_has_a_rule() -> None:
    assert TOP_LEVEL - set(FORBIDDEN) - PENDING == set(), "add a rule to FORBIDDEN"
    assert PENDING & set(FORBIDDEN) == set(), "the rule is merged: drop the name from PENDING"


def test_the_hooks_module_is_a_leaf() -> None:
    """Fault-injection points are called from everywhere in the engine, so they import nothing
    of polyvec but errors (or every engine module would depend on what they import)."""
    f = SRC / "engine" / "hooks.py"
    assert _polyvec_imports(f, "engine") <= {"errors"}, _polyvec_imports(f, "engine")


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
