"""Asking a chat backend how much of a prompt its prefix cache already holds (duck-typed).

The embedded engine keeps a prompt-prefix KV cache (``engine.prefix_cache``, a hash chain over token
blocks, in memory and on disk) and renders chat prompts to token ids (``engine.chat_template_ids``).
A backend with both can say, before any model call, how many leading tokens of the stuffed prompt
would be restored rather than prefilled: the router's "is the prefix cached" input. A backend without
them (transformers, a remote server) cannot say; callers fall back to what settings declare.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PrefixProbe", "can_probe", "probe_prefix_cache"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PrefixProbe:
    cached_tokens: int  # leading prompt tokens the cache holds (whole blocks)
    prompt_tokens: int
    block_size: int

    def covers(self, tail_tokens: int) -> bool:
        """Whether everything but the last ``tail_tokens`` (the question, and the partial block it
        falls in) is cached."""
        return self.prompt_tokens - self.cached_tokens <= tail_tokens + self.block_size


def can_probe(backend: object) -> bool:
    """Whether ``backend`` offers a prefix cache and the prompt rendering to ask it with."""
    cache = getattr(backend, "prefix_cache", None)
    block = getattr(cache, "block_size", None)
    return (callable(getattr(cache, "lookup", None)) and callable(getattr(backend, "chat_template_ids", None))
            and isinstance(block, int) and block > 0)


def probe_prefix_cache(backend: object, messages: Sequence[Mapping[str, str]]) -> PrefixProbe | None:
    """How many leading tokens of ``messages``' prompt ``backend``'s prefix cache holds, or None when
    the backend offers no prefix cache to ask. The count reads no block from disk."""
    if not can_probe(backend):
        return None
    cache: Any = getattr(backend, "prefix_cache", None)
    render: Any = getattr(backend, "chat_template_ids", None)
    try:
        ids = [int(i) for i in render(messages)]
        block = int(cache.block_size)
        counter = getattr(cache, "cached_tokens", None)
        # Counting needs no block read; ``lookup`` (older caches) loads every held block into memory.
        held = int(counter(ids)) if callable(counter) else len(cache.lookup(ids)) * block
    except Exception as exc:  # a cache that cannot answer must not fail the question: it is a hint
        log.warning("could not ask the prefix cache: %s", exc)
        return None
    return PrefixProbe(min(held, len(ids)), len(ids), block)
