"""One model call of a routed ask: messages in, the reply's text and what it cost out."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from corral.agents.backends import model_name
from corral.inference.errors import InferenceError

__all__ = ["Reply", "generate"]


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str  # "stop" | "length"


def generate(chat: BaseChatModel, messages: Sequence[Mapping[str, str]], max_new_tokens: int) -> Reply:
    """``chat``'s answer to ``messages`` in at most ``max_new_tokens``; any failure of the backend is an
    ``InferenceError``. Token counts are the backend's usage report, else counted locally."""
    started = time.perf_counter()
    try:
        reply = chat.invoke([dict(m) for m in messages], max_tokens=max_new_tokens)
    except InferenceError:
        raise
    except Exception as exc:  # remote servers fail in many ways (HTTP, auth, timeouts): one error
        raise InferenceError(f"the chat backend {model_name(chat)} failed: {exc}") from exc
    text = reply.text.strip()
    usage = reply.usage_metadata if isinstance(reply, AIMessage) else None
    prompt = usage["input_tokens"] if usage else sum(chat.get_num_tokens(m["content"]) for m in messages)
    completion = usage["output_tokens"] if usage else chat.get_num_tokens(text)
    finish = str(reply.response_metadata.get("finish_reason", "stop"))
    return Reply(text, prompt, completion, time.perf_counter() - started,
                 "length" if finish == "length" else "stop")
