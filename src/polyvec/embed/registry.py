"""Known embedders by model spec, so a reopened collection (or the CLI) can rebuild the live
embedder of a recorded model version without the caller passing one.

It lives beside the embedders it builds: ``polyvec.models`` (the numpy mapping parts) imports
no embedder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import MissingExtra
from ..spec import ModelSpec

__all__ = ["embedder_for", "known_specs"]


def _factories() -> dict[tuple[str, str], Callable[[], Any]]:
    from . import minilm, paraphrase_minilm
    from .minilm import MODEL_NAME, REVISIONS
    from .paraphrase import MODEL_NAME as L3
    from .paraphrase import REVISION as L3_REV

    return {(MODEL_NAME, REVISIONS["torch"]): lambda: minilm("torch"),
            (MODEL_NAME, REVISIONS["onnx"]): lambda: minilm("onnx"),
            (L3, L3_REV): paraphrase_minilm}


def known_specs() -> list[ModelSpec]:
    """The specs :func:`embedder_for` can build an embedder for."""
    from .minilm import dense_spec
    from .paraphrase import spec

    return [dense_spec("torch"), dense_spec("onnx"), spec()]


def embedder_for(spec: ModelSpec) -> Any:
    """A live embedder whose ``.spec`` equals ``spec``; ``MissingExtra`` when none is known."""
    make = _factories().get((spec.name, spec.revision))
    if make is not None:
        emb = make()
        if emb.spec == spec:
            return emb
    raise MissingExtra(f"no built-in embedder for model {spec.name!r} (revision "
                       f"{spec.revision!r}); pass the embedder object instead (known: "
                       f"{[(s.name, s.revision) for s in known_specs()]})")
