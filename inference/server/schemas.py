"""The request body of ``POST /v1/chat/completions`` and its translation to a ``ChatRequest``.

Fields whose shape OpenAI clients vary on (messages, tools, tool_choice, response_format) are typed
loosely here and validated by ``corral.inference.chat``, which names the offending field in its error.
Unknown fields are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.inference.chat import ChatRequest, ResponseFormat, parse_tool_choice, parse_tools
from corral.inference.errors import InvalidRequestError

__all__ = ["ChatCompletionBody"]


class ChatCompletionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    messages: list[Any]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)  # vLLM's extension
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tools: Any = None
    tool_choice: Any = None
    response_format: Any = None

    def to_request(self) -> ChatRequest:
        if self.n != 1:
            raise InvalidRequestError("only n=1 is supported", param="n")
        tools = parse_tools(self.tools)
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return ChatRequest(
            messages=self.messages,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            # OpenAI's default temperature is 1; clients wanting reproducible output send 0.
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=stop,
            seed=self.seed,
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            tools=tools,
            tool_choice=parse_tool_choice(self.tool_choice, tools),
            response_format=ResponseFormat.parse(self.response_format),
        )

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))
