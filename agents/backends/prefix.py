"""Asking the embedded engine how much of a prompt its prefix cache already holds.

The engine keeps a prompt-prefix KV cache (``engine.prefix_cache``, a hash chain over token blocks, in
memory and on disk). Rendered to token ids by the one chat renderer the engine's requests go through,
a prompt can be looked up before any model call: how many leading tokens of the stuffed prompt would
be restored rather than prefilled is the router's "is the prefix cached" input. Other backends
(transformers, a remote server) cannot say; callers keep what settings declare.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel

from corral.agents.backends.engine_chat import EngineChatModel

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


def _cache(chat: BaseChatModel) -> Any:
    if not isinstance(chat, EngineChatModel):
        return None
    cache = getattr(chat.service.engine, "prefix_cache", None)  # the transformers reference has none
    return cache if cache is not None and callable(getattr(cache, "cached_tokens", None)) else None


def can_probe(chat: BaseChatModel) -> bool:
    """Whether ``chat`` runs on an engine with a prefix cache to ask (loads the engine)."""
    return _cache(chat) is not None


def probe_prefix_cache(chat: BaseChatModel, messages: Sequence[Mapping[str, str]]) -> PrefixProbe | None:
    """How many leading tokens of ``messages``' prompt ``chat``'s prefix cache holds, or None when there
    is no prefix cache to ask. The count reads no block from disk."""
    cache = _cache(chat)
    if cache is None:
        return None
    assert isinstance(chat, EngineChatModel)
    try:
        ids = chat.prompt_ids(messages)
        block = int(cache.block_size)
        held = int(cache.cached_tokens(ids))
    except Exception as exc:  # a cache that cannot answer must not fail the question: it is a hint
        log.warning("could not ask the prefix cache: %s", exc)
        return None
    return PrefixProbe(min(held, len(ids)), len(ids), block)
