"""A chat model run through transformers, loaded offline from a folder or a GGUF file.

Contract: token ids in, token ids and text out — the ``TextEngine`` protocol (``stream``/``generate``
with sampling parameters and a ``TokenConstraint``), a plain decode loop over transformers' forward
pass; chat messages are rendered to ids by ``corral.inference.chat``. This module knows nothing of
corpora, retrieval or storage. It is the reference backend the OpenAI-compatible server and the
embedded engine's parity tests run against.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.inference.decoding import check_sampling, decode_tokens, eos_ids
from corral.inference.errors import ContextOverflowError, InferenceError
from corral.inference.generation import (
    FinishReason,
    GenerationResult,
    SamplingParams,
    StreamChunk,
    TextEngine,
    TokenConstraint,
)

__all__ = ["HFChatModel"]


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
        self.model_id = self.name
        trained = int(getattr(self._model.config, "max_position_embeddings", 2048))
        self.context_window = min(context_window or trained, trained)
        self.eos_token_ids = eos_ids(self._tok, self._model)

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer, with the model's chat template."""
        return self._tok

    def count_tokens(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        if prompt_tokens + max_new_tokens > self.context_window:
            raise ContextOverflowError(
                f"prompt of {prompt_tokens} tokens plus {max_new_tokens} new tokens exceeds the "
                f"{self.context_window}-token window of {self.name}"
            )

    def stream(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        constraint: TokenConstraint | None = None,
    ) -> Iterator[StreamChunk]:
        """Chunks of new tokens and their final text; the last chunk carries ``finish_reason``.

        Checks run before the first chunk is requested: an empty prompt or an overflowing request
        raises here, not half-way through a stream.
        """
        if not prompt_ids:
            raise InferenceError("the prompt is empty")
        check_sampling(params)
        self.check_fits(len(prompt_ids), params.max_tokens)
        return self._decode([int(i) for i in prompt_ids], params, constraint)

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        constraint: TokenConstraint | None = None,
    ) -> GenerationResult:
        started = time.perf_counter()
        first: float | None = None
        ids: list[int] = []
        parts: list[str] = []
        reason: FinishReason = "length"
        for chunk in self.stream(prompt_ids, params, constraint):
            first = first or time.perf_counter()
            ids.extend(chunk.token_ids)
            parts.append(chunk.text)
            reason = chunk.finish_reason or reason
        ended = time.perf_counter()
        first = first or ended
        return GenerationResult(
            text="".join(parts),
            token_ids=ids,
            prompt_tokens=len(prompt_ids),
            cached_tokens=0,
            finish_reason=reason,
            prefill_s=first - started,
            decode_s=ended - first,
        )

    def _forward(self, ids: list[int], cache: Any) -> tuple[Any, Any]:
        torch = self._torch
        with self._lock, torch.inference_mode():
            out = self._model(
                input_ids=torch.tensor([ids], dtype=torch.long), cache=cache, use_cache=True
            )
        return out.logits[0, -1], out.cache

    def _decode(
        self, prompt: list[int], params: SamplingParams, constraint: TokenConstraint | None
    ) -> Iterator[StreamChunk]:
        logits, cache = self._forward(prompt, None)

        def step(new: list[int]) -> Any:
            nonlocal cache
            # Tokens the grammar forces arrive together and go in as one mini-prefill.
            next_logits, cache = self._forward(new, cache)
            return next_logits

        yield from decode_tokens(
            logits, step, prompt_ids=prompt, params=params, constraint=constraint, tokenizer=self._tok,
            eos_ids=self.eos_token_ids, vocab_size=int(logits.shape[-1]), budget=params.max_tokens,
        )


if TYPE_CHECKING:  # mypy proves here that the reference fits the ``TextEngine`` contract
    _fits: type[TextEngine] = HFChatModel
