"""Lazy access to numba: the package imports without compiling anything."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any


@functools.cache
def have_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"numba"`` when numba is installed, else ``"numpy"``; checks the name."""
    if backend == "auto":
        return "numba" if have_numba() else "numpy"
    if backend not in ("numpy", "numba"):
        raise ValueError(f"backend: expected 'auto', 'numpy' or 'numba', got {backend!r}")
    return backend


def lazy_njit(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: compile ``fn`` with ``numba.njit(cache=True, **options)`` on its first call.

    ``fn`` must be a module-level function without closure cells, so numba's on-disk cache
    (keyed by the function's file, qualified name, bytecode and argument types) is hit by
    the next process. numba's cache key ignores compile options: each option set compiles a
    copy of ``fn`` under its own name (``_loop``, ``_loop__parallel``), so a parallel and a
    serial build of one loop do not overwrite each other's cache entries.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(fn, "__closure__", None):
            raise TypeError(f"lazy_njit: {fn.__qualname__} captures variables; numba cannot "
                            "cache a closure across processes")

        @functools.cache
        def compiled() -> Callable[..., Any]:
            import numba

            # kernels loop with the module-level name ``prange`` (plain ``range`` until now)
            fn.__globals__["prange"] = numba.prange
            return numba.njit(cache=True, **options)(_variant(fn, options))

        def call(*args: Any) -> Any:
            return compiled()(*args)

        call.__name__ = call.__qualname__ = fn.__name__
        call.__doc__ = fn.__doc__

        call.py_func = fn  # type: ignore[attr-defined]
        call.compiled = compiled  # type: ignore[attr-defined]
        return call

    return wrap


def _variant(fn: Callable[..., Any], options: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` itself for the default options, else a copy named after the options (the
    numba cache file is named by the qualified name)."""
    tag = "__".join(f"{k}" if v is True else f"{k}_{v}" for k, v in sorted(options.items())
                    if v is not False)
    if not tag:
        return fn
    code = fn.__code__  # type: ignore[attr-defined]
    copy = types.FunctionType(code, fn.__globals__, f"{fn.__name__}__{tag}",
                              fn.__defaults__, None)  # type: ignore[attr-defined]
    copy.__qualname__ = f"{fn.__qualname__}__{tag}"
    copy.__module__ = fn.__module__
    return copy
