"""Remote backends: any OpenAI-compatible server (vLLM, SGLang, ``corral inference serve``).

``ChatOpenAI`` is used as it is. A server cannot be asked its window, so it is declared (the profile's
``max_input_tokens``); ``ChatOpenAI``'s own token counting needs tiktoken's downloaded encodings, so
tokens are counted with ``token_ids`` — the local tokenizer, an estimate for a remote vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

__all__ = ["remote_chat_model"]


def remote_chat_model(base_url: str, model: str, api_key: str | None, *, max_tokens: int, context_window: int,
                      token_ids: Callable[[str], list[int]], timeout_s: float = 120.0) -> ChatOpenAI:
    """A deterministic (temperature 0) ``ChatOpenAI`` for ``base_url``; no request is made here."""
    from langchain_openai import ChatOpenAI  # a second to import: only where a remote model is used

    return ChatOpenAI(
        base_url=base_url, model=model, api_key=SecretStr(api_key or "not-needed"),
        max_completion_tokens=max_tokens, temperature=0.0, timeout=timeout_s, max_retries=1,
        # A streamed answer (a run reporting its tokens) still reports its usage at the end.
        stream_usage=True,
        profile={"max_input_tokens": context_window}, custom_get_token_ids=token_ids,
    )
