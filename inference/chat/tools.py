"""OpenAI tool definitions in, validated ``ToolSpec`` objects out; tool-call text back to calls.

Validation is strict because the definitions come from HTTP clients: every problem becomes an
``InvalidRequestError`` naming the field, never an exception from deep inside the grammar compiler.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from corral.inference.constrain import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from corral.inference.errors import InvalidRequestError

__all__ = ["ToolCall", "ToolChoice", "ToolSpec", "parse_tool_calls", "parse_tool_choice", "parse_tools"]

MAX_TOOLS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any] | None  # a JSON schema of the arguments object

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.parameters is not None:
            function["parameters"] = dict(self.parameters)
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """``none``: answer in text; ``auto``: call a tool or answer; ``required``: call one (``name``
    set: call that one)."""

    mode: Literal["none", "auto", "required"] = "auto"
    name: str | None = None


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def to_openai(self) -> dict[str, Any]:
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}


def parse_tools(raw: Any) -> list[ToolSpec]:
    """OpenAI ``tools`` (a list of ``{"type": "function", "function": {...}}``) → ``ToolSpec``s."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequestError("tools must be a list", param="tools")
    if len(raw) > MAX_TOOLS:
        raise InvalidRequestError(f"at most {MAX_TOOLS} tools are allowed, got {len(raw)}", param="tools")
    specs: list[ToolSpec] = []
    for i, item in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(item, Mapping) or item.get("type") != "function":
            raise InvalidRequestError(f'{where} must be {{"type": "function", "function": {{...}}}}',
                                      param=where)
        function = item.get("function")
        if not isinstance(function, Mapping):
            raise InvalidRequestError(f"{where}.function must be an object", param=f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequestError(
                f"{where}.function.name must be 1-64 letters, digits, '_' or '-'",
                param=f"{where}.function.name",
            )
        if any(s.name == name for s in specs):
            raise InvalidRequestError(f"two tools are named {name!r}", param=f"{where}.function.name")
        description = function.get("description", "")
        if not isinstance(description, str):
            raise InvalidRequestError(f"{where}.function.description must be a string",
                                      param=f"{where}.function.description")
        parameters = function.get("parameters")
        if parameters is not None and (
            not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object"
        ):
            raise InvalidRequestError(
                f"{where}.function.parameters must be a JSON schema of type object",
                param=f"{where}.function.parameters",
            )
        specs.append(ToolSpec(name, description, dict(parameters) if parameters is not None else None))
    return specs


def parse_tool_choice(raw: Any, tools: Sequence[ToolSpec]) -> ToolChoice:
    """OpenAI ``tool_choice`` → ``ToolChoice``; the default is ``auto`` with tools, ``none`` without."""
    if raw is None:
        return ToolChoice("auto" if tools else "none")
    if raw in ("none", "auto", "required"):
        if raw != "none" and not tools:
            raise InvalidRequestError(f'tool_choice "{raw}" needs tools', param="tool_choice")
        return ToolChoice(raw)
    function = raw.get("function") if isinstance(raw, Mapping) else None
    if isinstance(raw, Mapping) and raw.get("type") == "function" and isinstance(function, Mapping):
        name = function.get("name")
        if not any(t.name == name for t in tools):
            raise InvalidRequestError(f"tool_choice names an unknown tool {name!r}", param="tool_choice")
        return ToolChoice("required", str(name))
    raise InvalidRequestError(
        'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
        param="tool_choice",
    )


def parse_tool_calls(text: str) -> list[ToolCall] | None:
    """The calls in model output that is a Hermes-format tool call; None when the output is an answer.

    Output that starts a call but does not finish it (cut off by ``max_tokens``) is also None: the
    caller returns it as text with ``finish_reason="length"``.
    """
    body = text.strip()
    open_tag, close_tag = TOOL_CALL_OPEN.strip(), TOOL_CALL_CLOSE.strip()
    calls: list[ToolCall] = []
    while body.startswith(open_tag):
        end = body.find(close_tag)
        if end == -1:
            return None
        try:
            payload = json.loads(body[len(open_tag) : end])
        except json.JSONDecodeError:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            return None
        arguments = payload.get("arguments", {})
        calls.append(ToolCall(
            id=f"call_{uuid.uuid4().hex[:24]}",
            name=payload["name"],
            arguments=json.dumps(arguments, ensure_ascii=False),
        ))
        body = body[end + len(close_tag) :].strip()
    return calls if calls and not body else None
