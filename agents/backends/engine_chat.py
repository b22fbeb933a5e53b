"""A LangChain ``BaseChatModel`` over Corral's in-process chat service (any ``TextEngine``).

``bind_tools`` works as on ``ChatOpenAI``: the tools are sent in OpenAI format to
``corral.inference.chat.ChatService``, which renders them into the prompt and — this is the point —
decodes the call under a grammar (``corral.inference.constrain``), so even a small model emits a
well-formed call to a tool that exists, with arguments that match its schema.

The engine is loaded on first use (``loader``): loading a model takes seconds to a minute, and a
question refused before it is read (empty, unknown corpus) must not wait for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, PrivateAttr

from corral.inference.chat import (
    ChatRequest,
    ChatService,
    build_prompt,
    parse_tool_choice,
    parse_tools,
)
from corral.inference.chat import Usage as ChatUsage
from corral.inference.generation import TextEngine

__all__ = ["EngineChatModel"]


class EngineChatModel(BaseChatModel):
    """Chat completions from an in-process engine, LangChain-native (invoke, bind_tools, callbacks).

    Besides chat, the agents read ``model_name``, ``context_window`` (prompt and answer together) and
    ``get_num_tokens`` (the engine's tokenizer). Errors of the inference layer (``InferenceError`` and
    subclasses) propagate unchanged; callers translate them at their boundary.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    loader: Callable[[], TextEngine]  # called once, on first use
    max_tokens: int = 256
    temperature: float = 0.0
    # As transformers' chat default for small models: greedy decoding without it repeats itself.
    repetition_penalty: float = 1.1
    model_name: str = "corral-embedded"

    _service: ChatService | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def over(cls, engine: TextEngine, **kwargs: Any) -> EngineChatModel:
        """A chat model over an engine already loaded."""
        return cls(loader=lambda: engine, **{"model_name": engine.model_id, **kwargs})

    @property
    def service(self) -> ChatService:
        """The chat service over the engine, loading the engine on first use."""
        with self._lock:
            if self._service is None:
                self._service = ChatService(self.loader())
            return self._service

    @property
    def context_window(self) -> int:
        return self.service.engine.context_window

    def get_token_ids(self, text: str) -> list[int]:
        return [int(i) for i in self.service.engine.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def prompt_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """The token ids a request with ``messages`` (and no tools) prefills: the one chat renderer."""
        return build_prompt(self.service.engine.tokenizer, list(messages))

    @property
    def _llm_type(self) -> str:
        return "corral-engine"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_tokens": self.max_tokens}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
                 ) -> ChatRequest:
        tools = parse_tools(kwargs.get("tools"))
        return ChatRequest(
            messages=convert_to_openai_messages(messages),
            max_tokens=int(kwargs.get("max_tokens", self.max_tokens)),
            temperature=float(kwargs.get("temperature", self.temperature)),
            repetition_penalty=float(kwargs.get("repetition_penalty", self.repetition_penalty)),
            stop=tuple(stop or ()),
            tools=tools,
            tool_choice=parse_tool_choice(kwargs.get("tool_choice"), tools),
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        out = self.service.complete(self._request(messages, stop, kwargs))
        calls = [{"name": c.name, "args": json.loads(c.arguments), "id": c.id, "type": "tool_call"}
                 for c in out.tool_calls]
        message = AIMessage(
            content=out.content or "", tool_calls=calls, usage_metadata=_usage(out.usage),
            response_metadata={"finish_reason": out.finish_reason, "model_name": self.model_name,
                               "cached_tokens": out.usage.cached_tokens},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """The answer as it is decoded (``invoke(..., stream=True)``, ``stream``): LangChain reports
        each chunk to the callbacks' ``on_llm_new_token``. A callback that raises stops the decoding
        there: closing the stream hands the engine's KV cache back at once."""
        deltas = self.service.stream(self._request(messages, stop, kwargs))
        try:
            for delta in deltas:
                if delta.content and delta.finish_reason is None:
                    yield ChatGenerationChunk(message=AIMessageChunk(content=delta.content))
                    continue
                if delta.finish_reason is None:
                    continue
                calls = [{"name": c.name, "args": c.arguments, "id": c.id, "index": i,
                          "type": "tool_call_chunk"} for i, c in enumerate(delta.tool_calls)]
                usage = delta.usage
                yield ChatGenerationChunk(message=AIMessageChunk(
                    content=delta.content, tool_call_chunks=calls,
                    usage_metadata=_usage(usage) if usage else None, chunk_position="last",
                    response_metadata={"finish_reason": delta.finish_reason, "model_name": self.model_name,
                                       "cached_tokens": usage.cached_tokens if usage else 0},
                ))
        finally:
            close = getattr(deltas, "close", None)
            if close is not None:
                close()


def _usage(usage: ChatUsage) -> UsageMetadata:
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}
