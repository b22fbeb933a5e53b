"""``Engine``: the embedded runtime behind the ``TextEngine`` contract (``corral.inference.generation``).

Contract: token ids in, token ids and text out. A request reuses the prompt's cached prefix blocks (memory,
then disk), prefills the rest in bounded chunks into a preallocated KV cache, then decodes one token per
step; constraint-forced tokens are fed as a mini-prefill. Requests may run on many threads at once: the
model holds no per-request state, each request owns its KV cache, and the prefix cache locks itself.
The one-token decode steps of concurrent requests are batched into one forward pass (``batching``).

One function per phase, as in gpt-fast's ``generate.py``: ``_prefill`` returns the last logits and
what it cost (``Prefilled``), ``_decode_one`` feeds tokens and returns the next logits, and the shared
loop ``corral.inference.decoding.decode_tokens`` samples between them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from corral.inference.decoding import check_sampling, decode_tokens
from corral.inference.engine.batching import DecodeBatcher
from corral.inference.engine.cpu import WeightFormat, cpu_features
from corral.inference.engine.kv_cache import KVCache
from corral.inference.engine.model import Transformer
from corral.inference.engine.prefix_cache import PrefixCache
from corral.inference.errors import ContextOverflowError, InferenceError
from corral.inference.generation import (
    FinishReason,
    GenerationResult,
    SamplingParams,
    StreamChunk,
    TextEngine,
    TokenConstraint,
)

__all__ = ["Engine", "RequestStats"]


@dataclass(frozen=True, slots=True)
class Prefilled:
    """What a prefill returns: the last position's logits ``[V]`` and what it cost."""

    logits: torch.Tensor
    cached: int  # prompt tokens restored from the prefix cache
    computed: int  # prompt tokens run through the model
    seconds: float


@dataclass(slots=True)
class RequestStats:
    """What one request cost: filled in as it runs, read by ``generate`` and the engine's totals."""

    cached_tokens: int = 0  # prompt tokens restored from the prefix cache
    prefilled_tokens: int = 0  # prompt tokens computed
    prefill_s: float = 0.0
    produced: int = 0  # tokens generated (the first comes out of the prefill)
    decode_s: float = 0.0


class Engine:
    """A loaded model that generates (see the module docstring). Build with ``load_engine``."""

    def __init__(
        self,
        model: Transformer,
        tokenizer: Any,
        *,
        model_id: str,
        context_window: int,
        eos_token_ids: Sequence[int],
        prefix_cache: PrefixCache | None = None,
        prefill_chunk: int = 2048,
        max_batch: int = 16,
        weights: WeightFormat = "fp32",
    ) -> None:
        if prefill_chunk < 1:
            raise ValueError("prefill_chunk must be positive")
        self.model = model
        self._tok = tokenizer
        self.model_id = model_id
        self.name = model_id  # what the agents show and record on a Run
        self.context_window = context_window
        self.eos_token_ids = list(eos_token_ids)
        self.prefix_cache = prefix_cache
        self.prefill_chunk = prefill_chunk
        self.weights = weights
        self._spare: list[KVCache] = []
        self._spare_lock = threading.Lock()
        self.batcher = DecodeBatcher(model, max_batch=max_batch)
        self._totals_lock = threading.Lock()
        self._totals: dict[str, float] = dict.fromkeys(
            ("requests", "prompt", "cached", "decoded", "decode_s", "prefilled", "prefill_s"), 0
        )

    # -- tokenizer helpers ---------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self.model.spec.vocab_size

    def count_tokens(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    # -- the contract --------------------------------------------------------------------------------
    def stream(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        constraint: TokenConstraint | None = None,
    ) -> Iterator[StreamChunk]:
        """Chunks of new tokens and their text; the last carries ``finish_reason``. Bad requests raise
        here, before the first chunk. Generation ends with ``length`` at ``max_tokens`` or at the window."""
        prompt = self._check(prompt_ids, params)
        return self._run(prompt, params, constraint, RequestStats())

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        constraint: TokenConstraint | None = None,
    ) -> GenerationResult:
        prompt = self._check(prompt_ids, params)
        stats = RequestStats()
        ids: list[int] = []
        parts: list[str] = []
        reason: FinishReason = "length"
        for chunk in self._run(prompt, params, constraint, stats):
            ids.extend(chunk.token_ids)
            parts.append(chunk.text)
            reason = chunk.finish_reason or reason
        return GenerationResult(
            text="".join(parts),
            token_ids=ids,
            prompt_tokens=len(prompt),
            cached_tokens=stats.cached_tokens,
            finish_reason=reason,
            prefill_s=stats.prefill_s,
            decode_s=stats.decode_s,
            extra={"prefilled_tokens": stats.prefilled_tokens},
        )

    def warm(self, prompt_ids: Sequence[int]) -> int:
        """Prefill ``prompt_ids`` into the prefix cache without generating; returns tokens computed."""
        prompt = self._check(prompt_ids, SamplingParams(max_tokens=1))
        cache = self._take_cache(len(prompt))
        try:
            return self._prefill(prompt, cache).computed
        finally:
            self._give_cache(cache)

    def warmup(self) -> None:
        """Run a few-token prefill and a decode step on a scratch cache, so the first request does not
        pay for generating the decode kernels (oneDNN's, for packed weights) and first-touch
        allocations. Prefill kernels depend on the chunk's length, so warming them here buys little
        and cost seconds of every load. ``load_engine`` calls it."""
        n = min(8, self.context_window - 1)
        cache = self.model.new_cache(n + 1)
        tokens = torch.zeros(1, n, dtype=torch.long)
        self.model.forward(tokens, cache, 0)
        self.model.forward(tokens[:, :1], cache, n)

    def stats(self) -> dict[str, Any]:
        """Counters since load, for ``/metrics`` (``corral.inference.generation.SupportsStats``): decode
        tokens/s per request, the share of prompt tokens served from the prefix cache, the share of
        routed tokens each expert of each MoE layer received, and how decode steps were batched."""
        with self._totals_lock:
            t = dict(self._totals)
        return {
            "requests": int(t["requests"]),
            "tokens_per_second": t["decoded"] / t["decode_s"] if t["decode_s"] > 0 else 0.0,
            # Prompt tokens computed per second of prefill (cache hits excluded): what reading costs.
            "prefill_tokens_per_second": t["prefilled"] / t["prefill_s"] if t["prefill_s"] > 0 else 0.0,
            "prefix_cache_hit_rate": t["cached"] / t["prompt"] if t["prompt"] else 0.0,
            "expert_utilisation": self.model.routed.shares(),
            "batching": self.batcher.stats(),
        }

    # -- internals -----------------------------------------------------------------------------------
    def _check(self, prompt_ids: Sequence[int], params: SamplingParams) -> list[int]:
        check_sampling(params)
        try:
            prompt = [int(i) for i in prompt_ids]
        except (TypeError, ValueError) as exc:
            raise InferenceError(f"prompt ids must be integers: {exc}") from exc
        if not prompt:
            raise InferenceError("the prompt is empty")
        vocab = self.vocab_size
        bad = next((i for i in prompt if not 0 <= i < vocab), None)
        if bad is not None:
            raise InferenceError(f"token id {bad} is outside the vocabulary of {vocab}")
        if len(prompt) >= self.context_window:
            raise ContextOverflowError(
                f"a prompt of {len(prompt)} tokens leaves no room in the {self.context_window}-token window "
                f"of {self.model_id}"
            )
        return prompt

    def _take_cache(self, need: int) -> KVCache:
        with self._spare_lock:
            for i, cache in enumerate(self._spare):
                if cache.capacity >= need:
                    cache.length = 0
                    return self._spare.pop(i)
        capacity = min(self.context_window, -(-need // 256) * 256)
        return self.model.new_cache(capacity)

    def _give_cache(self, cache: KVCache) -> None:
        with self._spare_lock:
            self._spare.append(cache)
            self._spare.sort(key=lambda c: c.capacity)
            del self._spare[:-2]  # keep the two largest: enough for a request plus a warm-up

    def _prefill(self, prompt: list[int], cache: KVCache) -> Prefilled:
        """Restore cached prefix blocks, compute the rest in chunks; the last position's logits start
        the answer."""
        started = time.perf_counter()
        pc = self.prefix_cache
        reused = 0
        matched = 0
        if pc is not None:
            blocks = pc.lookup(prompt)
            matched = len(blocks)
            for j, kv in enumerate(blocks):
                cache.load(j * pc.block_size, kv)
            # The last prompt token is always computed: its logits start the answer.
            reused = min(matched * pc.block_size, len(prompt) - 1)
        cache.length = reused
        logits = torch.empty(0)
        for at in range(reused, len(prompt), self.prefill_chunk):
            piece = torch.tensor([prompt[at : at + self.prefill_chunk]], dtype=torch.long)
            logits = self.model.forward(piece, cache, at)[0]
        if pc is not None and pc.keeps_blocks:
            full = len(prompt) // pc.block_size
            bs = pc.block_size
            new = [(j, cache.positions(j * bs, (j + 1) * bs).clone()) for j in range(matched, full)]
            if new:
                pc.store(prompt, new)
        return Prefilled(logits, reused, len(prompt) - reused, time.perf_counter() - started)

    def _run(
        self,
        prompt: list[int],
        params: SamplingParams,
        constraint: TokenConstraint | None,
        stats: RequestStats,
    ) -> Iterator[StreamChunk]:
        budget = min(params.max_tokens, self.context_window - len(prompt))
        cache = self._take_cache(len(prompt) + budget)
        try:
            yield from self._decode(prompt, params, constraint, stats, cache, budget)
        finally:
            self._give_cache(cache)

    def _decode(
        self,
        prompt: list[int],
        params: SamplingParams,
        constraint: TokenConstraint | None,
        stats: RequestStats,
        cache: KVCache,
        budget: int,
    ) -> Iterator[StreamChunk]:
        first = self._prefill(prompt, cache)
        stats.cached_tokens, stats.prefilled_tokens = first.cached, first.computed
        stats.prefill_s = first.seconds
        decode_started = time.perf_counter()
        produced = 0
        try:
            with self.batcher.decoding():
                for chunk in decode_tokens(
                    first.logits, lambda new: self._decode_one(new, cache), prompt_ids=prompt, params=params,
                    constraint=constraint, tokenizer=self._tok, eos_ids=self.eos_token_ids,
                    vocab_size=self.vocab_size, budget=budget,
                ):
                    produced += len(chunk.token_ids)
                    yield chunk
        finally:
            stats.produced = produced
            stats.decode_s = time.perf_counter() - decode_started
            self._record(len(prompt), stats)

    def _decode_one(self, new: list[int], cache: KVCache) -> torch.Tensor:
        """Logits after feeding ``new``: forced tokens go in as one mini-prefill; a sampled token is a
        one-token step, batched with the steps of other requests decoding at the same time."""
        if len(new) == 1:
            return self.batcher.step(new[0], cache)[0]
        return self.model.forward(torch.tensor([new], dtype=torch.long), cache, cache.length)[0]

    def _record(self, prompt_tokens: int, stats: RequestStats) -> None:
        with self._totals_lock:
            t = self._totals
            t["requests"] += 1
            t["prompt"] += prompt_tokens
            t["cached"] += stats.cached_tokens
            # The first token comes out of the prefill; decode throughput counts the steps after it.
            t["decoded"] += max(stats.produced - 1, 0)
            t["decode_s"] += stats.decode_s
            t["prefilled"] += stats.prefilled_tokens
            t["prefill_s"] += stats.prefill_s


def describe(engine: Engine) -> dict[str, Any]:
    """Facts about a loaded engine, for logs and benchmarks."""
    from corral.inference.engine.model import active_bytes_per_token

    spec = engine.model.spec
    return {
        "model_id": engine.model_id,
        "family": spec.family,
        "layers": spec.num_layers,
        "weights": engine.weights,
        "dtype": str(engine.model.dtype).removeprefix("torch."),
        "kv_dtype": str(engine.model.kv_dtype).removeprefix("torch."),
        "native_kernels": engine.model.decode_kernel is not None,
        "cpu": cpu_features().describe(),
        "context_window": engine.context_window,
        "active_bytes_per_token": active_bytes_per_token(engine.model.weights, spec),
        # A decode step also reads the cache: keys and values of every layer at every position so far.
        "kv_bytes_per_position": 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim
        * engine.model.kv_dtype.itemsize,
        "prefix_cache_dir": str(getattr(engine.prefix_cache, "_dir", None) or ""),
    }


if TYPE_CHECKING:  # mypy proves here that ``Engine`` fits the ``TextEngine`` contract
    _fits: type[TextEngine] = Engine
