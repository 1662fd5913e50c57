"""The :class:`Embedder` protocol, and the input checks and batching every embedder shares.

This module imports nothing heavy: the model backends live in their own modules and load on the
first call that needs them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgument
from ..spec import ModelSpec

__all__ = ["Embedder", "check_texts", "check_batch_size", "length_batches"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors for one vector field.

    ``spec`` names the model; a collection records it and refuses vectors of another model.
    A dense embedder (``spec.output == "dense"``) returns one float32 array of shape
    ``(n, spec.dim)``; a token embedder (``spec.output == "tokens"``) returns a list of ``n``
    float32 arrays of shape ``(tokens_i, spec.dim)``, each with at least one row. Queries get
    ``spec.query_prefix`` prepended, documents ``spec.document_prefix``.
    """

    spec: ModelSpec

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                        progress: bool = False) -> NDArray[np.float32] | list[NDArray[np.float32]]:
        """Embed texts to be stored (documents)."""
        ...

    def embed_queries(self, texts: Sequence[str], *, batch_size: int = 32,
                      progress: bool = False) -> NDArray[np.float32] | list[NDArray[np.float32]]:
        """Embed texts to search with (queries)."""
        ...


def check_texts(texts: object, what: str = "texts") -> list[str]:
    """Return ``texts`` as a list of str, or raise :class:`InvalidArgument`.

    >>> check_texts(("a", "b"))
    ['a', 'b']
    >>> check_texts("a")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    polyvec.errors.InvalidArgument: texts: expected a list of str, got a str ('a'); wrap one ...
    """
    if isinstance(texts, str):
        shown = texts if len(texts) <= 40 else texts[:37] + "..."
        raise InvalidArgument(f"{what}: expected a list of str, got a str ({shown!r}); "
                              "wrap one text in a list")
    if not isinstance(texts, Sequence):
        raise InvalidArgument(f"{what}: expected a list of str, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidArgument(f"{what}[{i}]: expected a str, got {type(t).__name__}")
    return list(texts)


def check_batch_size(batch_size: object) -> int:
    """Return ``batch_size`` if it is a positive int, else raise :class:`InvalidArgument`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size: expected a positive int, got {batch_size!r}")
    return batch_size


def length_batches(texts: list[str], batch_size: int, *, progress: bool = False,
                   desc: str = "embedding") -> Iterator[list[int]]:
    """Yield the positions of ``texts`` in batches of similar length, longest first.

    Grouping texts of similar length keeps padding (wasted model work) small; callers put each
    result back at its position. A tqdm bar on stderr counts texts when ``progress`` is true
    and there is more than one batch.

    >>> list(length_batches(["a", "ccc", "bb"], 2))
    [[1, 2], [0]]
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if not (progress and len(chunks) > 1):
        yield from chunks
        return
    from tqdm import tqdm  # lazy: only multi-batch calls with progress=True draw a bar

    with tqdm(total=len(texts), desc=desc, unit="text", file=sys.stderr) as bar:
        for chunk in chunks:
            yield chunk
            bar.update(len(chunk))
