"""Lazy access to numba: the package imports without compiling anything.

Kernels compile with ``cache=True``, so a new process loads their machine code from numba's
on-disk cache. Loading is cheap; starting numba's runtime in a process is not (~1 s: its
typing and lowering registries, scipy's BLAS check), whatever the cache holds. Light
per-query kernels (query checks, top-k merges, the graph walk) therefore resolve ``"auto"``
with ``light=True``: until the runtime is up they take their numpy twins (or faiss), and
the first such call starts it in a background thread (:func:`numba_warm`), which also loads
the registered kernels (:func:`register_warmer`). A process's first query thus costs what
a later one does plus I/O; heavy kernels (builds, pooling) wait for numba as before.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any


@functools.cache
def have_numba() -> bool:
    """Whether numba is installed, found without importing it (the import alone takes
    ~0.5 s: a light kernel's caller must not pay it; :func:`numba_warm` imports it in the
    background)."""
    if "numba" in sys.modules:  # imported already, or blocked (``sys.modules["numba"] = None``)
        return sys.modules["numba"] is not None
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(backend: str, *, light: bool = False) -> str:
    """``"auto"`` -> ``"numba"`` when numba is installed, else ``"numpy"``; checks the name.

    ``light``: the caller's numpy twin is cheap for its (per-query) work, so ``"auto"`` takes
    it while numba's runtime is still starting in this process (see :func:`numba_warm`).
    """
    if backend == "auto":
        if not have_numba() or (light and not numba_warm()):
            return "numpy"
        return "numba"
    if backend not in ("numpy", "numba"):
        raise ValueError(f"backend: expected 'auto', 'numpy' or 'numba', got {backend!r}")
    return backend


def entry_point(kernel: Any, args: tuple[Any, ...]) -> Any:
    """``kernel``'s compiled entry point for exactly the types of ``args`` (which the
    dispatcher has compiled or loaded by now); the dispatcher itself where it holds no
    such overload. A caller that makes many calls with arguments of fixed types (a bound
    search, a query check) calls the entry point and skips the dispatcher's typing of every
    argument (~1 µs for the graph walk's 27). The entry point converts nothing: pass it
    exactly those types."""
    import numba

    got = kernel.overloads.get(tuple(numba.typeof(a) for a in args))
    return kernel if got is None else got.entry_point


def lazy_njit(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: compile ``fn`` with ``numba.njit(cache=True, nogil=True, **options)`` on its
    first call (kernels release the GIL: threads searching one collection run in parallel).

    ``fn`` must be a module-level function without closure cells, so numba's on-disk cache
    (keyed by the function's file, qualified name, bytecode and argument types) is hit by
    the next process. numba's cache key ignores compile options: each option set compiles a
    copy of ``fn`` under its own name (``_loop``, ``_loop__parallel``), so a parallel and a
    serial build of one loop do not overwrite each other's cache entries.
    """

    options = {"nogil": True, **options}  # searches from several threads run in parallel

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(fn, "__closure__", None):
            raise TypeError(f"lazy_njit: {fn.__qualname__} captures variables; numba cannot "
                            "cache a closure across processes")

        @functools.cache
        def compiled() -> Callable[..., Any]:
            import numba

            # kernels loop with the module-level name ``prange`` (plain ``range`` until now)
            fn.__globals__["prange"] = numba.prange
            for name in fn.__code__.co_names:  # helpers it calls: their compiled twins
                helper = fn.__globals__.get(name)
                twin = getattr(helper, "_polyvec_compiled", None)
                if twin is not None:
                    fn.__globals__[name] = twin()
            return numba.njit(cache=True, **options)(_variant(fn, options))

        def call(*args: Any) -> Any:
            return compiled()(*args)

        call.__name__ = call.__qualname__ = fn.__name__
        call.__doc__ = fn.__doc__

        call.py_func = fn  # type: ignore[attr-defined]
        call.compiled = compiled  # type: ignore[attr-defined]
        return call

    return wrap


def compiled_twin(module: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``fn`` (a scalar helper, plain Python) is what the :func:`lazy_njit`
    kernels calling it compute, and ``module.name`` (a numba function or intrinsic, imported
    only then) is what they call once compiled: when such a kernel compiles, the name it
    calls ``fn`` by (in its module's globals) is rebound to the compiled twin.

    numba's on-disk cache of a kernel is keyed by the kernel's own file: a change to the
    twin's file must come with a change to the kernels' files (or a cleared cache).
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def load() -> Any:
            return getattr(importlib.import_module(module), name)

        fn._polyvec_compiled = load  # type: ignore[attr-defined]
        return fn

    return wrap


def _word(v: Any) -> str:
    parts = sorted(map(str, v)) if isinstance(v, set | frozenset | list | tuple) else [str(v)]
    return "_".join("".join(c if c.isalnum() else "_" for c in p) for p in parts)


def _variant(fn: Callable[..., Any], options: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` itself for the default options, else a copy named after the options (the
    numba cache file is named by the qualified name)."""
    tag = "__".join(k if v is True else f"{k}_{_word(v)}" for k, v in sorted(options.items())
                    if v is not False)
    if not tag:
        return fn
    code = fn.__code__
    copy = types.FunctionType(code, fn.__globals__, f"{fn.__name__}__{tag}",
                              fn.__defaults__, None)
    copy.__qualname__ = f"{fn.__qualname__}__{tag}"
    copy.__module__ = fn.__module__
    return copy


# ----------------------------------------------------------------------------- warm-up
_WARMERS: list[Callable[[], None]] = []
_warm = threading.Event()
_warm_lock = threading.Lock()
_warm_thread: list[threading.Thread] = []
_deferred: ContextVar[list[bool] | None] = ContextVar("polyvec_warm_after", default=None)


def register_warmer(fn: Callable[[], None]) -> Callable[[], None]:
    """Register ``fn`` (loads a light kernel by calling it on tiny inputs of the argument
    types searches use) to run when numba warms up; registering does no work."""
    _WARMERS.append(fn)
    return fn


def numba_warm() -> bool:
    """Whether numba's runtime and the registered kernels are loaded in this process.

    If not, starts loading them in a background thread (once) and returns ``False``. The
    thread is not a daemon: an exiting interpreter waits for it rather than unload LLVM
    under it. ``POLYVEC_NUMBA_WARMUP=sync`` loads in the caller instead (waits ~1 s once).
    """
    if _warm.is_set():
        return True
    if not have_numba():
        return False
    if os.environ.get("POLYVEC_NUMBA_WARMUP") == "sync":
        warm_now()
        return True
    pending = _deferred.get()
    if pending is not None:  # inside warm_after: started when that block ends
        pending.append(True)
        return False
    with _warm_lock:
        if not _warm_thread:
            t = threading.Thread(target=warm_now, name="polyvec-numba-warmup")
            _warm_thread.append(t)
            t.start()
    return _warm.is_set()


def numba_is_warm() -> bool:
    """Whether numba's runtime and the registered kernels are loaded (starts nothing)."""
    return _warm.is_set()


@contextlib.contextmanager
def warm_after() -> Iterator[None]:
    """Within the block, what would start numba's warm-up starts it when the block ends.

    A process's first search runs on the numpy twins while numba is not warm; numba's import
    holds the GIL for ~1 s, and beside it those twins (a 1M-row numpy scan: 0.5 s alone) took
    three times as long. So a search defers the warm-up to its own end (the caller then has
    its first result while numba loads)."""
    if _warm.is_set() or _deferred.get() is not None:
        yield
        return
    pending: list[bool] = []
    token = _deferred.set(pending)
    try:
        yield
    finally:
        _deferred.reset(token)
        if pending:
            numba_warm()


def warm_now() -> None:
    """Load numba's runtime and every registered kernel in this thread (then ``numba_warm()``
    is true). A kernel that fails to build is left to its caller, which reports it."""
    try:
        for fn in list(_WARMERS):
            try:
                fn()
            except Exception:  # noqa: BLE001,S112 - the real call raises it, with context
                continue
    finally:
        _warm.set()


def wait_warm(timeout: float | None = None) -> bool:
    """Block until the background warm-up (if started) is done; whether numba is warm."""
    if have_numba() and not _warm.is_set():
        numba_warm()
        _warm.wait(timeout)
    return _warm.is_set()


def _after_fork() -> None:  # a forked child has no warm-up thread: let it start its own
    if not _warm.is_set():
        _warm_thread.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
