"""The in-process chat API: OpenAI-shaped requests (messages, tools, response formats) over a
``TextEngine``. The HTTP server is a thin layer over it, and agents can call it directly."""

from corral.inference.chat.prompt import build_prompt, template_supports_tools
from corral.inference.chat.service import (
    ChatCompletion,
    ChatDelta,
    ChatRequest,
    ChatService,
    ResponseFormat,
    Usage,
)
from corral.inference.chat.tools import ToolCall, ToolChoice, ToolSpec, parse_tool_choice, parse_tools

__all__ = [
    "ChatCompletion",
    "ChatDelta",
    "ChatRequest",
    "ChatService",
    "ResponseFormat",
    "ToolCall",
    "ToolChoice",
    "ToolSpec",
    "Usage",
    "build_prompt",
    "parse_tool_choice",
    "parse_tools",
    "template_supports_tools",
]
