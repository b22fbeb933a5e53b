"""``ChatService``: one engine's chat completions, whole or streamed, with tools and JSON output.

This is the in-process API: the HTTP server translates JSON to ``ChatRequest`` and back, and an agent
holding an engine can call ``complete``/``stream`` directly with the same semantics (same prompt
building, same constraints, same tool-call parsing, same errors).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from corral.inference.chat.prompt import build_prompt
from corral.inference.chat.tools import ToolCall, ToolChoice, ToolSpec, parse_tool_calls
from corral.inference.constrain import TOOL_CALL_OPEN, ConstraintCompiler
from corral.inference.errors import ContextOverflowError, InvalidRequestError
from corral.inference.generation import SamplingParams, TextEngine, TokenConstraint

__all__ = ["ChatCompletion", "ChatDelta", "ChatRequest", "ChatService", "ResponseFormat", "Usage"]

ChatFinish = Literal["stop", "length", "tool_calls"]
MAX_STOP = 4  # as OpenAI


@dataclass(frozen=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, raw: Any) -> ResponseFormat:
        """OpenAI ``response_format`` → ``ResponseFormat``."""
        if raw is None:
            return cls()
        kind = raw.get("type") if isinstance(raw, Mapping) else None
        if kind in ("text", "json_object"):
            return cls(kind)
        if kind == "json_schema":
            spec = raw.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, Mapping) else None
            if not isinstance(schema, Mapping):
                raise InvalidRequestError("response_format.json_schema.schema must be a JSON schema object",
                                          param="response_format")
            return cls("json_schema", schema)
        raise InvalidRequestError('response_format.type must be "text", "json_object" or "json_schema"',
                                  param="response_format")

    def output_schema(self) -> Mapping[str, Any] | None:
        if self.type == "json_object":
            return {"type": "object"}
        return self.schema if self.type == "json_schema" else None


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion. ``max_tokens`` None means "up to the default, within the window"."""

    messages: Sequence[Mapping[str, Any]]
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    tools: Sequence[ToolSpec] = ()
    tool_choice: ToolChoice = field(default_factory=lambda: ToolChoice("none"))
    response_format: ResponseFormat = field(default_factory=ResponseFormat)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    first_token_s: float  # from the request to the first generated token (prefill and queueing)
    total_s: float
    decode_s: float | None = None  # the engine's own decode time, when it reports one


@dataclass(frozen=True)
class ChatCompletion:
    content: str | None  # None when the model called tools
    tool_calls: list[ToolCall]
    finish_reason: ChatFinish
    usage: Usage


@dataclass(frozen=True)
class ChatDelta:
    """A piece of a streamed answer; the last one has ``finish_reason`` and ``usage``."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: ChatFinish | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class _Prepared:
    prompt: list[int]
    params: SamplingParams
    constraint: TokenConstraint | None
    tool_mode: Literal["none", "auto", "required"]


class ChatService:
    """Chat completions over one ``TextEngine``; thread-safe (each request has its own state).

    ``default_max_tokens`` bounds the answer when a request names no limit; the context window
    bounds it always, and a prompt that leaves no room raises ``ContextOverflowError``.
    """

    def __init__(self, engine: TextEngine, *, default_max_tokens: int = 1024) -> None:
        self.engine = engine
        self.default_max_tokens = default_max_tokens
        self._compiler: ConstraintCompiler | None = None
        self._lock = threading.Lock()

    @property
    def compiler(self) -> ConstraintCompiler:
        with self._lock:
            if self._compiler is None:
                eos = getattr(self.engine, "eos_token_ids", None)
                self._compiler = ConstraintCompiler(self.engine.tokenizer, eos_token_ids=eos)
            return self._compiler

    def complete(self, request: ChatRequest) -> ChatCompletion:
        started = time.perf_counter()
        prepared = self._prepare(request)
        result = self.engine.generate(prepared.prompt, prepared.params, prepared.constraint)
        usage = Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cached_tokens=result.cached_tokens,
            first_token_s=result.prefill_s,
            total_s=time.perf_counter() - started,
            decode_s=result.decode_s or None,
        )
        finish: ChatFinish = "length" if result.finish_reason == "length" else "stop"
        if prepared.tool_mode != "none":
            calls = parse_tool_calls(result.text)
            if calls:
                return ChatCompletion(None, calls, "tool_calls", usage)
        return ChatCompletion(result.text, [], finish, usage)

    def stream(self, request: ChatRequest) -> Iterator[ChatDelta]:
        """Deltas of the answer. Validation happens here, before the first delta is requested.

        In ``auto`` tool mode text that may still turn into ``<tool_call>`` is held back; once the
        output is known to be a call, it is buffered and sent as one delta with ``tool_calls``.
        """
        started = time.perf_counter()
        prepared = self._prepare(request)
        chunks = self.engine.stream(prepared.prompt, prepared.params, prepared.constraint)
        return self._deltas(prepared, chunks, started)

    def _deltas(self, prepared: _Prepared, chunks: Iterator[Any], started: float) -> Iterator[ChatDelta]:
        tag = TOOL_CALL_OPEN.strip()
        mode = {"none": "text", "auto": "undecided", "required": "call"}[prepared.tool_mode]
        held: list[str] = []
        produced = 0
        first: float | None = None
        for chunk in chunks:
            first = first or time.perf_counter()
            produced += len(chunk.token_ids)
            piece = chunk.text
            if mode == "undecided":
                held.append(piece)
                lead = "".join(held).lstrip()
                if lead.startswith(tag):
                    mode = "call"
                elif lead and not tag.startswith(lead):
                    mode, piece, held = "text", "".join(held), []
                else:
                    piece = ""
            elif mode == "call":
                held.append(piece)
                piece = ""
            if chunk.finish_reason is None:
                if piece:
                    yield ChatDelta(piece)
                continue
            now = time.perf_counter()
            usage = Usage(len(prepared.prompt), produced, 0, (first or now) - started, now - started)
            reason: ChatFinish = "length" if chunk.finish_reason == "length" else "stop"
            if mode != "text":
                calls = parse_tool_calls("".join(held))
                if calls:
                    yield ChatDelta(tool_calls=calls, finish_reason="tool_calls", usage=usage)
                    return
                piece = "".join(held)  # an unfinished call, cut off: return what was generated
            yield ChatDelta(piece, finish_reason=reason, usage=usage)
            return

    def _visible_tools(self, request: ChatRequest) -> Sequence[ToolSpec]:
        return request.tools if request.tool_choice.mode != "none" else ()

    def _prepare(self, request: ChatRequest) -> _Prepared:
        if request.max_tokens is not None and request.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
        if not 0.0 <= request.temperature <= 2.0:
            raise InvalidRequestError("temperature must be between 0 and 2", param="temperature")
        if not 0.0 < request.top_p <= 1.0:
            raise InvalidRequestError("top_p must be in (0, 1]", param="top_p")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2.0 <= getattr(request, name) <= 2.0:
                raise InvalidRequestError(f"{name} must be between -2 and 2", param=name)
        if not 0.0 < request.repetition_penalty <= 10.0:
            raise InvalidRequestError("repetition_penalty must be in (0, 10]", param="repetition_penalty")
        if len(request.stop) > MAX_STOP:
            raise InvalidRequestError(f"at most {MAX_STOP} stop sequences are allowed", param="stop")
        engine = self.engine
        prompt = build_prompt(engine.tokenizer, list(request.messages), self._visible_tools(request))
        window = engine.context_window
        room = window - len(prompt)
        if room < 1:
            raise ContextOverflowError(
                f"this model's maximum context length is {window} tokens; the messages are {len(prompt)}"
            )
        max_tokens = request.max_tokens or min(self.default_max_tokens, room)
        if max_tokens > room:
            raise ContextOverflowError(
                f"this model's maximum context length is {window} tokens; the messages are "
                f"{len(prompt)} and {max_tokens} completion tokens were requested"
            )
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(request.stop),
            seed=request.seed,
            frequency_penalty=request.frequency_penalty,
            presence_penalty=request.presence_penalty,
            repetition_penalty=request.repetition_penalty,
        )
        mode = request.tool_choice.mode
        schema = request.response_format.output_schema()
        constraint: TokenConstraint | None = None
        if mode == "required":
            chosen = [t for t in request.tools if request.tool_choice.name in (None, t.name)]
            constraint = self.compiler.tools([(t.name, t.parameters) for t in chosen], required=True)
        elif mode == "auto":
            constraint = self.compiler.tools(
                [(t.name, t.parameters) for t in request.tools], required=False, text_schema=schema
            )
        elif schema is not None:
            constraint = self.compiler.json_schema(schema)
        return _Prepared(prompt, params, constraint, mode)
