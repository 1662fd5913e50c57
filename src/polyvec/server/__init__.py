"""The HTTP server (``polyvec serve``): the embedded API as JSON over HTTP, with API keys.

Importing this package imports nothing heavy; :func:`create_app` needs the ``[server]`` extra
(FastAPI, uvicorn) and raises :class:`~polyvec.errors.MissingExtra` without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """:func:`polyvec.server.app.create_app` (FastAPI imported on this call)."""
    try:
        from .app import create_app as make
    except ImportError as e:
        from ..errors import MissingExtra

        raise MissingExtra(f"the server needs FastAPI and uvicorn ({e.name} is missing): "
                           "pip install 'polyvec[server]'") from None
    return make(*args, **kwargs)
