"""Chat messages (OpenAI shape) to prompt token ids, through the tokenizer's own chat template.

Tools: when the template renders tools itself (its source mentions ``tools``, as Qwen's and Llama
3.1's do), the tool definitions are passed to it. Otherwise (SmolLM2's template does not) they are
written into the system message in this documented format, the Hermes convention::

    # Tools

    You may call one of these functions. Their signatures, as JSON, are inside <tools></tools>:
    <tools>
    {"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}
    </tools>

    To call a function, reply with only:
    <tool_call>
    {"name": <function name>, "arguments": <arguments as a JSON object>}
    </tool_call>

Earlier assistant turns that called tools are rendered in that same ``<tool_call>`` form, and tool
results keep the ``tool`` role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from corral.inference.chat.tools import ToolSpec
from corral.inference.constrain import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from corral.inference.errors import InvalidRequestError

__all__ = ["build_prompt", "normalize_messages", "template_supports_tools", "tools_system_text"]

MAX_MESSAGES = 4096
_ROLES = {"system", "developer", "user", "assistant", "tool"}


def template_supports_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def tools_system_text(tools: Sequence[ToolSpec]) -> str:
    listed = "\n".join(json.dumps(t.to_openai(), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one of these functions. Their signatures, as JSON, are inside "
        f"<tools></tools>:\n<tools>\n{listed}\n</tools>\n\nTo call a function, reply with only:\n"
        f'{TOOL_CALL_OPEN}{{"name": <function name>, "arguments": <arguments as a JSON object>}}'
        f"{TOOL_CALL_CLOSE}"
    )


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(
                part.get("text"), str
            ):
                raise InvalidRequestError(
                    f"{where}.content[{j}]: only text parts are supported", param=f"{where}.content"
                )
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequestError(f"{where}.content must be a string or a list of text parts",
                              param=f"{where}.content")


def _calls(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequestError(f"{where}.tool_calls must be a list", param=f"{where}.tool_calls")
    calls = []
    for j, call in enumerate(raw):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidRequestError(f"{where}.tool_calls[{j}] must have function.name",
                                      param=f"{where}.tool_calls")
        arguments = function.get("arguments", "{}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{where}.tool_calls[{j}].function.arguments is not JSON: {exc}",
                                      param=f"{where}.tool_calls") from None
        calls.append({"id": str(call.get("id", "")), "type": "function",
                      "function": {"name": function["name"], "arguments": parsed}})
    return calls


def normalize_messages(messages: Any) -> list[dict[str, Any]]:
    """Validated messages with plain-text content; ``developer`` becomes ``system``."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequestError(f"at most {MAX_MESSAGES} messages are allowed", param="messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"{where} must be an object", param=where)
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequestError(f"{where}.role must be one of {sorted(_ROLES)}", param=f"{where}.role")
        item: dict[str, Any] = {
            "role": "system" if role == "developer" else role,
            "content": _text(message.get("content"), where),
        }
        if role == "assistant":
            calls = _calls(message.get("tool_calls"), where)
            if calls:
                item["tool_calls"] = calls
        if role == "tool" and message.get("tool_call_id") is not None:
            item["tool_call_id"] = str(message["tool_call_id"])
        out.append(item)
    return out


def _inline_tools(messages: list[dict[str, Any]], tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m.get("tool_calls"):
            rendered = "\n".join(
                TOOL_CALL_OPEN
                + json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                             ensure_ascii=False)
                + TOOL_CALL_CLOSE
                for c in m["tool_calls"]
            )
            m = {"role": "assistant", "content": (m["content"] + "\n" if m["content"] else "") + rendered}
        else:
            m = {"role": m["role"], "content": m["content"]}
        out.append(m)
    if tools:
        spec = tools_system_text(tools)
        if out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{spec}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": spec})
    return out


def build_prompt(tokenizer: Any, messages: Any, tools: Sequence[ToolSpec] = ()) -> list[int]:
    """Token ids of the chat so far plus the assistant's turn header (``add_generation_prompt``)."""
    normalized = normalize_messages(messages)
    kwargs: dict[str, Any] = {}
    if template_supports_tools(tokenizer):
        if tools:
            kwargs["tools"] = [t.to_openai() for t in tools]
    else:
        normalized = _inline_tools(normalized, tools)
    try:
        text = tokenizer.apply_chat_template(
            normalized, add_generation_prompt=True, tokenize=False, **kwargs
        )
    except Exception as exc:  # jinja raises its own errors (e.g. "roles must alternate")
        raise InvalidRequestError(f"the model's chat template refused the messages: {exc}",
                                  param="messages") from None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [int(i) for i in ids]
