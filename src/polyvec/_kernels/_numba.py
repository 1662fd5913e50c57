"""Lazy access to numba: the package imports without compiling anything."""

from __future__ import annotations

import functools
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
    """Decorator: compile ``fn`` with ``numba.njit(**options)`` on its first call."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.cache
        def compiled() -> Callable[..., Any]:
            import numba

            # kernels loop with the module-level name ``prange`` (plain ``range`` until now)
            fn.__globals__["prange"] = numba.prange
            return numba.njit(cache=True, **options)(fn)

        def call(*args: Any) -> Any:
            return compiled()(*args)

        call.__name__ = call.__qualname__ = fn.__name__
        call.__doc__ = fn.__doc__

        call.py_func = fn  # type: ignore[attr-defined]
        return call

    return wrap
