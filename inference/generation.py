"""The in-process generation contract: token ids in, token ids (and text) out.

Every backend inside ``corral.inference`` fits it: the embedded engine (``inference.engine``) and the
transformers reference (``inference.hf``). The OpenAI-compatible server and the agents' LangChain adapter
are written against this contract only, so either backend can sit behind them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length", "constraint", "cancelled"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` means greedy; ``stop`` strings end the text (excluded)."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # transformers' repetition penalty (> 1 discourages any token already in the prompt or the answer)
    # and OpenAI's frequency and presence penalties (over the answer's own tokens, -2..2).
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


class TokenConstraint(Protocol):
    """One request's constrained-decoding state (a grammar matcher over the model's vocabulary).

    The engine asks for ``forced()`` first: tokens that are the only legal continuation are fed as a
    mini-prefill without sampling. Otherwise it samples under ``allowed_mask`` and reports every accepted
    token through ``advance``.
    """

    def allowed_mask(self, vocab_size: int) -> Any:
        """A bool tensor of shape ``[vocab_size]`` (True = allowed), or None when anything goes."""
        ...

    def forced(self) -> list[int]: ...

    def advance(self, token_ids: Sequence[int]) -> None: ...

    def is_finished(self) -> bool: ...


@dataclass
class StreamChunk:
    """Tokens produced since the previous chunk; the last chunk carries ``finish_reason``."""

    token_ids: list[int]
    text: str
    finish_reason: FinishReason | None = None


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    cached_tokens: int  # prompt tokens served from the prefix cache, not prefilled
    finish_reason: FinishReason
    prefill_s: float = 0.0
    decode_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class TextEngine(Protocol):
    """A loaded model that generates. ``stream`` and ``generate`` are safe to call from many threads;
    concurrent requests may be batched together by the implementation."""

    model_id: str
    context_window: int

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer (with its chat template)."""
        ...

    def stream(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        constraint: TokenConstraint | None = None,
    ) -> Iterator[StreamChunk]: ...

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        constraint: TokenConstraint | None = None,
    ) -> GenerationResult: ...


class SupportsStats(Protocol):
    """Optional for a ``TextEngine``: counters the inference server exports on ``/metrics``.

    ``stats()`` returns a mapping; the server reads these keys when present and ignores the rest:

    * ``"tokens_per_second"`` (float): recent decode throughput;
    * ``"prefix_cache_hit_rate"`` (float in [0, 1]): prompt tokens served from the prefix cache;
    * ``"expert_utilisation"`` (mapping of layer index to a sequence of floats): the fraction of routed
      tokens each expert of that MoE layer received.
    """

    def stats(self) -> Mapping[str, Any]: ...
