"""A chat model run through transformers, loaded offline from a folder or a GGUF file.

Contract: the caller hands chat messages or token ids and gets token ids and text back; this module
knows nothing of corpora, retrieval or storage. Generation is greedy, so answers are reproducible.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.inference.errors import ContextOverflowError, InferenceError

__all__ = ["Generation", "HFChatModel"]


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str  # "stop" | "length"


class HFChatModel:
    def __init__(
        self,
        folder: Path,
        gguf_file: str | None = None,
        *,
        context_window: int | None = None,
        dtype: str = "float32",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        quiet: Any = hf_logging
        quiet.disable_progress_bar()
        quiet.set_verbosity_error()
        try:
            self._tok: Any = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
            # GGUF weights stay packed and the kernels compute in fp32, so fp32 is fastest there.
            model: Any = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=gguf_file, dtype=getattr(torch, dtype)
            )
            self._model: Any = model.eval()
        except (OSError, ValueError) as exc:
            raise InferenceError(f"cannot load the chat model from {folder}: {exc}") from exc
        if not getattr(self._tok, "chat_template", None):
            raise InferenceError(f"the model at {folder} has no chat template")
        self._torch = torch
        self._lock = threading.Lock()
        self.name = Path(gguf_file).stem if gguf_file else folder.name
        trained = int(getattr(self._model.config, "max_position_embeddings", 2048))
        self.context_window = min(context_window or trained, trained)

    def count_tokens(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        ids = self._tok.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, tokenize=True
        )
        if not isinstance(ids, list):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def generate_ids(self, prompt_ids: Sequence[int], max_new_tokens: int) -> tuple[list[int], str]:
        """Greedy continuation of ``prompt_ids``; returns the new ids and why generation stopped."""
        if len(prompt_ids) + max_new_tokens > self.context_window:
            raise ContextOverflowError(
                f"prompt of {len(prompt_ids)} tokens plus {max_new_tokens} new tokens exceeds the "
                f"{self.context_window}-token window of {self.name}"
            )
        torch = self._torch
        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
        with self._lock, torch.inference_mode():
            out = self._model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=1.1,
                pad_token_id=self._tok.pad_token_id or self._tok.eos_token_id,
                eos_token_id=self._tok.eos_token_id,
            )
        new = [int(i) for i in out[0, len(prompt_ids) :]]
        stopped = bool(new) and new[-1] == self._tok.eos_token_id
        return new, "stop" if stopped else "length"

    def chat(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int) -> Generation:
        started = time.perf_counter()
        prompt = self.encode_chat(messages)
        new, reason = self.generate_ids(prompt, max_new_tokens)
        text = self._tok.decode(new, skip_special_tokens=True).strip()
        return Generation(text, len(prompt), len(new), time.perf_counter() - started, reason)
