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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, PrivateAttr

from corral.inference.chat import ChatRequest, ChatService, build_prompt, parse_tool_choice, parse_tools
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

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = parse_tools(kwargs.get("tools"))
        request = ChatRequest(
            messages=convert_to_openai_messages(messages),
            max_tokens=int(kwargs.get("max_tokens", self.max_tokens)),
            temperature=float(kwargs.get("temperature", self.temperature)),
            repetition_penalty=float(kwargs.get("repetition_penalty", self.repetition_penalty)),
            stop=tuple(stop or ()),
            tools=tools,
            tool_choice=parse_tool_choice(kwargs.get("tool_choice"), tools),
        )
        out = self.service.complete(request)
        usage = {"input_tokens": out.usage.prompt_tokens, "output_tokens": out.usage.completion_tokens,
                 "total_tokens": out.usage.prompt_tokens + out.usage.completion_tokens}
        calls = [{"name": c.name, "args": json.loads(c.arguments), "id": c.id, "type": "tool_call"}
                 for c in out.tool_calls]
        message = AIMessage(
            content=out.content or "", tool_calls=calls, usage_metadata=usage,
            response_metadata={"finish_reason": out.finish_reason, "model_name": self.model_name,
                               "cached_tokens": out.usage.cached_tokens},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
