"""The decode loop every backend shares (``decode_tokens``) and its pieces: sampling, penalties, end-of-turn
ids, and text out of token ids with stop strings. The embedded engine and the transformers reference both
decode through it; it knows nothing of either (a ``step`` callback feeds the model).

``TextAssembler`` turns ids into text incrementally (holding back an incomplete UTF-8 sequence, and any
tail that could still grow into a stop string) so a stream never emits text it must take back.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from corral.inference.errors import InferenceError
from corral.inference.generation import FinishReason, SamplingParams, StreamChunk, TokenConstraint

__all__ = ["Penalties", "TextAssembler", "check_sampling", "decode_tokens", "eos_ids", "sample_token"]


def sample_token(logits: Any, params: SamplingParams, generator: Any, allowed: Any = None) -> int:
    """One token id from ``logits [V]``: argmax at temperature 0, else temperature + nucleus sampling.

    ``allowed`` (bool ``[V]``) comes from a constraint; disallowed ids are never chosen.
    """
    import torch

    logits = logits.float()
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        cut = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= params.top_p
        sorted_probs = sorted_probs.masked_fill(cut, 0.0)
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


def eos_ids(tokenizer: Any, model: Any) -> list[int]:
    """End-of-turn ids: the tokenizer's EOS first, then any ``model.generation_config`` adds."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        for item in value if isinstance(value, list) else [value]:
            if item is not None and int(item) not in ids:
                ids.append(int(item))
    if not ids:
        raise InferenceError("the model declares no end-of-sequence token")
    return ids


def check_sampling(params: SamplingParams) -> None:
    """Refuse sampling settings outside their ranges, naming the setting (``InferenceError``)."""
    if params.max_tokens < 1:
        raise InferenceError("max_tokens must be at least 1")
    if params.temperature < 0 or not 0 < params.top_p <= 1:
        raise InferenceError("temperature must be >= 0 and top_p in (0, 1]")
    if not 0 < params.repetition_penalty <= 10:
        raise InferenceError("repetition_penalty must be in (0, 10]")
    if not (-2 <= params.frequency_penalty <= 2 and -2 <= params.presence_penalty <= 2):
        raise InferenceError("frequency_penalty and presence_penalty must be in [-2, 2]")


class Penalties:
    """Repetition, frequency and presence penalties over one request's tokens, applied to its logits
    before sampling. ``Penalties.of`` returns None when the settings are neutral, so the common case
    costs nothing; otherwise each step pays a few vector ops over the vocabulary."""

    def __init__(self, params: SamplingParams, prompt_ids: Sequence[int], vocab_size: int) -> None:
        import torch

        self._rep = params.repetition_penalty
        self._freq = params.frequency_penalty
        self._pres = params.presence_penalty
        self._seen = torch.zeros(vocab_size, dtype=torch.bool)  # prompt and answer: repetition penalty
        self._seen[torch.tensor(list(prompt_ids), dtype=torch.long)] = True
        self._counts = torch.zeros(vocab_size, dtype=torch.float32)  # the answer only: OpenAI penalties

    @classmethod
    def of(cls, params: SamplingParams, prompt_ids: Sequence[int], vocab_size: int) -> Penalties | None:
        p = params
        neutral = p.repetition_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0
        return None if neutral else cls(params, prompt_ids, vocab_size)

    def add(self, token_ids: Sequence[int]) -> None:
        import torch

        if token_ids:
            ids = torch.tensor(list(token_ids), dtype=torch.long)
            self._seen[ids] = True
            self._counts.index_add_(0, ids, torch.ones(len(ids)))

    def apply(self, logits: Any) -> Any:
        """Penalised float logits ``[V]`` (a new tensor; ``logits`` is left as it was)."""
        import torch

        out = logits.float()
        if self._rep != 1.0:
            # As transformers does: positive logits are divided, negative ones multiplied.
            hit = torch.where(out > 0, out / self._rep, out * self._rep)
            out = torch.where(self._seen, hit, out)
        if self._freq or self._pres:
            out = out - self._counts * self._freq - (self._counts > 0).float() * self._pres
        return out


class TextAssembler:
    """Accumulates generated ids; ``push`` returns the newly final text and whether a stop string hit.

    Decoding the whole tail on each step (rather than token by token) keeps multi-byte characters and
    tokenizer-specific spacing right; only ids since the last emitted boundary are re-decoded.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self._tok = tokenizer
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        self._text = ""  # decoded text of all ids
        self._emitted = 0  # characters of _text already returned
        self.stopped = False

    @property
    def text(self) -> str:
        """All final text so far (what has been emitted)."""
        return self._text[: self._emitted]

    def push(self, ids: Sequence[int]) -> str:
        if self.stopped:
            return ""
        self._ids.extend(int(i) for i in ids)
        self._text = self._tok.decode(self._ids, skip_special_tokens=True)
        for stop in self._stop:
            at = self._text.find(stop, max(0, self._emitted - len(stop) + 1))
            if at != -1:
                self._text = self._text[:at]
                self.stopped = True
        if self.stopped:
            return self._flush(len(self._text))
        end = len(self._text)
        if self._text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its other bytes
            end -= 1
        for stop in self._stop:  # hold back a tail that may still become a stop string
            for k in range(min(len(stop) - 1, end - self._emitted), 0, -1):
                if self._text[end - k : end] == stop[:k]:
                    end -= k
                    break
        return self._flush(max(end, self._emitted))

    def finish(self) -> str:
        """Everything not yet emitted (the held-back tail once generation has ended)."""
        return self._flush(len(self._text))

    def _flush(self, end: int) -> str:
        out = self._text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return out


def decode_tokens(
    logits: Any,
    step: Callable[[list[int]], Any],
    *,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    constraint: TokenConstraint | None,
    tokenizer: Any,
    eos_ids: Sequence[int],
    vocab_size: int,
    budget: int,
) -> Iterator[StreamChunk]:
    """Chunks of new tokens from the prompt's last ``logits [V]`` on; the last chunk carries the
    ``finish_reason``. ``step(new_ids)`` feeds tokens to the model and returns the next logits ``[V]``.

    Per turn: a finished constraint stops; tokens the constraint forces are taken without sampling (the
    backend feeds them as one mini-prefill); otherwise one token is sampled under the constraint's mask
    and the penalties. Generation ends at an end-of-turn id, a stop string, or ``budget`` tokens."""
    import torch

    seed = params.seed if params.seed is not None else random.getrandbits(63)
    generator = torch.Generator().manual_seed(seed)
    text = TextAssembler(tokenizer, params.stop)
    eos = set(eos_ids)
    penalties = Penalties.of(params, prompt_ids, vocab_size)
    produced = 0
    while True:
        new: list[int] = []
        finish: FinishReason | None = None
        if constraint is not None and constraint.is_finished():
            finish = "stop"
        elif constraint is not None and (forced := constraint.forced()):
            new = forced[: budget - produced]
            constraint.advance(new)
        else:
            allowed = constraint.allowed_mask(vocab_size) if constraint is not None else None
            if allowed is not None and not bool(allowed.any()):
                finish = "constraint"
            else:
                scores = penalties.apply(logits) if penalties is not None else logits
                token = sample_token(scores, params, generator, allowed)
                if constraint is not None:
                    constraint.advance([token])
                if token in eos:
                    finish = "stop"
                else:
                    new = [token]
        produced += len(new)
        if penalties is not None:
            penalties.add(new)
        piece = text.push(new)
        if finish is None:
            if text.stopped:
                finish = "stop"
            elif produced >= budget:
                finish = "length"
            elif constraint is not None and constraint.is_finished():
                finish = "stop"
        if finish is not None:
            yield StreamChunk(new, piece + text.finish(), finish)
            return
        yield StreamChunk(new, piece)
        logits = step(new)
