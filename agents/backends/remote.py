"""Remote backends: any OpenAI-compatible server (vLLM, SGLang, ``corral inference serve``).

``ChatOpenAI`` is used as it is; its own token counting needs tiktoken's downloaded encodings, so
Corral never calls it — counts come from the local tokenizer or from the server's usage report.
"""

from __future__ import annotations

from langchain_openai import ChatOpenAI
from pydantic import SecretStr

__all__ = ["remote_chat_model"]


def remote_chat_model(base_url: str, model: str, api_key: str | None, *, max_tokens: int,
                      timeout_s: float = 120.0) -> ChatOpenAI:
    """A deterministic (temperature 0) ``ChatOpenAI`` for ``base_url``; no request is made here."""
    return ChatOpenAI(
        base_url=base_url, model=model, api_key=SecretStr(api_key or "not-needed"),
        max_completion_tokens=max_tokens, temperature=0.0, timeout=timeout_s, max_retries=1,
    )
