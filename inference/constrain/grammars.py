"""Grammar text for the constraints a chat request can ask for, in llguidance's Lark dialect.

Pure functions from request data to grammar strings; nothing here touches a tokenizer. JSON is
generated with fixed separators (``", "`` and ``": "``) and no free whitespace: small models otherwise
tend to loop on spaces and newlines inside a JSON value.

Tool calls use the Hermes format most open chat models are trained on::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from corral.inference.errors import ConstraintError

__all__ = [
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "json_object_grammar",
    "json_schema_grammar",
    "regex_grammar",
    "tool_call_schema",
    "tools_grammar",
]

TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"

_JSON_STYLE: dict[str, Any] = {
    "whitespace_flexible": False,
    "key_separator": ": ",
    "item_separator": ", ",
}


def _styled(schema: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise ConstraintError("a JSON schema must be a JSON object", param="schema")
    styled = dict(schema)
    styled["x-guidance"] = {**_JSON_STYLE, **dict(schema.get("x-guidance") or {})}
    return styled


def _lark_json(schema: Mapping[str, Any]) -> str:
    # %json takes the schema inline; json.dumps escapes everything that could end the block early.
    try:
        return "%json " + json.dumps(_styled(schema), ensure_ascii=True, allow_nan=False)
    except (RecursionError, ValueError, TypeError) as exc:
        raise ConstraintError(f"the JSON schema cannot be used: {exc}", param="schema") from None


def json_schema_grammar(schema: Mapping[str, Any]) -> str:
    """Output is one JSON value valid against ``schema``."""
    return f"start: {_lark_json(schema)}\n"


def json_object_grammar() -> str:
    """Output is any JSON object (OpenAI's ``response_format={"type": "json_object"}``)."""
    return json_schema_grammar({"type": "object"})


def regex_grammar(pattern: str) -> str:
    """Output matches ``pattern`` in full (Rust regex syntax)."""
    if not isinstance(pattern, str) or not pattern:
        raise ConstraintError("a regex must be a non-empty string", param="regex")
    return f"start: /{_escape_slashes(pattern)}/\n"


def _escape_slashes(pattern: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in pattern:
        if ch == "/" and not escaped:
            out.append("\\/")
        else:
            out.append(ch)
        escaped = ch == "\\" and not escaped
    return "".join(out)


def tool_call_schema(tools: Sequence[tuple[str, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """JSON schema of ``{"name": <one tool>, "arguments": <that tool's parameters>}``.

    ``tools`` holds ``(name, parameters schema or None)``; None means "no arguments declared" and
    accepts any JSON object. Parameters that list ``properties`` and say nothing of
    ``additionalProperties`` get ``false`` there, as OpenAI's strict mode does.
    """
    if not tools:
        raise ConstraintError("no tools to call", param="tools")
    branches = []
    for name, parameters in tools:
        arguments: dict[str, Any] = dict(parameters) if parameters else {"type": "object"}
        if "properties" in arguments:
            # A function cannot use arguments it does not declare; small models invent them otherwise.
            arguments.setdefault("additionalProperties", False)
        branches.append({
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": arguments},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def tools_grammar(
    tools: Sequence[tuple[str, Mapping[str, Any] | None]],
    *,
    required: bool,
    text_schema: Mapping[str, Any] | None = None,
) -> str:
    """One tool call in the Hermes format; with ``required=False`` the model may answer instead.

    The answer branch is free text that does not begin with the tool-call tag (so a started call is
    always finished validly), or, with ``text_schema``, a JSON value valid against it.
    """
    call = (
        f"tool_call: {json.dumps(TOOL_CALL_OPEN)} {_lark_json(tool_call_schema(tools))} "
        f"{json.dumps(TOOL_CALL_CLOSE)}\n"
    )
    if required:
        return "start: tool_call\n" + call
    tag = _regex_literal(TOOL_CALL_OPEN.strip())
    if text_schema is not None:
        answer = f"answer: {_lark_json(text_schema)}\n"
    else:
        answer = f"answer: ANSWER\nANSWER: /(?s:.+)/ & ~/(?s:{tag}.*)/\n"
    return "start: tool_call | answer\n" + call + answer


def _regex_literal(text: str) -> str:
    special = set("\\.^$|?*+()[]{}/")
    return "".join("\\" + ch if ch in special else ch for ch in text)
