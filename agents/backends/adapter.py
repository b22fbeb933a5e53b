"""Any LangChain chat model as the :class:`~corral.agents.ask.model.ChatModel` the ask pipeline uses.

This is how a remote OpenAI-compatible server (``ChatOpenAI``) answers ``corral ask``: the window is
declared in settings (a remote server cannot be asked), tokens are counted with the local tokenizer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from corral.inference.errors import InferenceError
from corral.inference.hf import Generation

__all__ = ["LangChainChatModel"]


class LangChainChatModel:
    def __init__(self, model: BaseChatModel, *, name: str, context_window: int,
                 count_tokens: Callable[[str], int]) -> None:
        self._model = model
        self.name = name
        self.context_window = context_window
        self._count = count_tokens

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def chat(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int) -> Generation:
        started = time.perf_counter()
        try:
            reply = self._model.invoke([dict(m) for m in messages], max_tokens=max_new_tokens)
        except Exception as exc:  # remote servers fail in many ways (HTTP, auth, timeouts): one error
            raise InferenceError(f"the chat backend {self.name} failed: {exc}") from exc
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        usage = reply.usage_metadata if isinstance(reply, AIMessage) else None
        prompt = usage["input_tokens"] if usage else sum(self._count(m["content"]) for m in messages)
        completion = usage["output_tokens"] if usage else self._count(text)
        finish = str(reply.response_metadata.get("finish_reason", "stop"))
        return Generation(text.strip(), prompt, completion, time.perf_counter() - started,
                          "length" if finish == "length" else "stop")
