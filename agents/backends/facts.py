"""What the agents read of a chat model besides chat: its name and its window.

Tokens are counted with ``BaseChatModel.get_num_tokens`` (the engine's tokenizer; for ``ChatOpenAI``
the local one, through ``custom_get_token_ids``).
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from corral.agents.backends.engine_chat import EngineChatModel
from corral.core.errors import ConfigurationError

__all__ = ["context_window", "model_name"]


def model_name(chat: BaseChatModel) -> str:
    """The name a Run records (``model_name`` on our adapter and on ``ChatOpenAI``); known unloaded."""
    return str(getattr(chat, "model_name", None) or chat._llm_type)


def context_window(chat: BaseChatModel) -> int:
    """The window the router plans with, prompt and answer together: the engine's own (loads it), or
    the ``max_input_tokens`` a remote model's profile declares."""
    if isinstance(chat, EngineChatModel):
        return chat.context_window
    window = (chat.profile or {}).get("max_input_tokens")
    if not window:
        raise ConfigurationError(f"the chat model {model_name(chat)} declares no context window "
                          "(profile max_input_tokens)")
    return int(window)


def prefill_rate(chat: BaseChatModel) -> float | None:
    """Prompt tokens per second the embedded engine has measured in prefill so far (None: a remote
    backend, or nothing measured yet). Reads counters only: never loads the engine."""
    if not isinstance(chat, EngineChatModel) or chat._service is None:
        return None
    stats = getattr(chat.service.engine, "stats", None)
    rate = stats().get("prefill_tokens_per_second") if callable(stats) else None
    return float(rate) if rate else None
