"""A LangChain ``BaseChatModel`` over Corral's in-process chat service (any ``TextEngine``).

``bind_tools`` works as on ``ChatOpenAI``: the tools are sent in OpenAI format to
``corral.inference.chat.ChatService``, which renders them into the prompt and — this is the point —
decodes the call under a grammar (``corral.inference.constrain``), so even a small model emits a
well-formed call to a tool that exists, with arguments that match its schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from corral.inference.chat import ChatRequest, ChatService, parse_tool_choice, parse_tools

__all__ = ["EngineChatModel"]


class EngineChatModel(BaseChatModel):
    """Chat completions from an in-process engine, LangChain-native (invoke, bind_tools, callbacks).

    Errors of the inference layer (``InferenceError`` and subclasses) propagate unchanged; callers
    translate them at their boundary.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    service: ChatService
    max_tokens: int = 256
    temperature: float = 0.0
    # As transformers' chat default for small models: greedy decoding without it repeats itself.
    repetition_penalty: float = 1.1
    model_name: str = "corral-embedded"

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
