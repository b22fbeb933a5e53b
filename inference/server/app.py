"""``create_inference_app``: the FastAPI app serving ``/v1/chat/completions``, ``/v1/models``,
``/metrics`` and ``/healthz`` over a mapping of model ids to ``TextEngine`` backends."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from corral.inference.chat import ChatCompletion, ChatDelta, ChatService, Usage
from corral.inference.errors import InferenceError, ModelNotFoundError
from corral.inference.generation import TextEngine
from corral.inference.server.auth import ApiKeyGuard
from corral.inference.server.errors import install_error_handlers, status_and_body
from corral.inference.server.limits import BodySizeLimit
from corral.inference.server.metrics import CONTENT_TYPE, InferenceMetrics
from corral.inference.server.schemas import ChatCompletionBody

__all__ = ["create_inference_app"]


def create_inference_app(
    engines: Mapping[str, TextEngine],
    *,
    max_body_bytes: int = 8 * 1024 * 1024,
    default_max_tokens: int = 1024,
    api_key: str | None = None,
) -> FastAPI:
    """An OpenAI-compatible app over ``engines`` (model id → engine). Nothing loads here: pass engines
    already loaded. Requests run on the thread pool; engines are expected to be thread-safe. With
    ``api_key``, every request but ``/healthz`` must send it as ``Authorization: Bearer``."""
    if not engines:
        raise InferenceError("the inference server needs at least one engine")
    services = {name: ChatService(e, default_max_tokens=default_max_tokens) for name, e in engines.items()}
    metrics = InferenceMetrics(engines)
    created = int(time.time())
    app = FastAPI(title="Corral inference", version="1")
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if api_key:  # added last: it runs first, so an unauthenticated body is never read
        app.add_middleware(ApiKeyGuard, api_key=api_key)
    install_error_handlers(app)

    def service_for(model: str) -> ChatService:
        found = services.get(model)
        if found is None:
            raise ModelNotFoundError(
                f"the model {model!r} does not exist; this server has {sorted(services)}"
            )
        return found

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": sorted(services)}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        # The engines are loaded before the app exists (nothing loads here), and this server
        # depends on nothing else: answering at all means every model is ready to generate.
        return {"status": "ready", "models": sorted(services)}

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(n, s, created) for n, s in services.items()]}

    @app.get("/v1/models/{model:path}")
    def get_model(model: str) -> dict[str, Any]:
        return _model_card(model, service_for(model), created)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionBody) -> Response:
        # An unknown model is refused before anything is recorded: a client's made-up names must
        # not become metric series.
        service = service_for(body.model)
        try:
            request = body.to_request()
            if not body.stream:
                completion = await run_in_threadpool(service.complete, request)
                metrics.record(body.model, completion.usage)
                return JSONResponse(_completion_json(body.model, completion))
            # stream() validates and builds the prompt before returning, so errors answer 4xx here.
            deltas = await run_in_threadpool(service.stream, request)
        except InferenceError as exc:
            status, _ = status_and_body(exc)
            metrics.record_failure(body.model, f"http_{status}")
            raise
        return StreamingResponse(
            _sse(body.model, deltas, body.include_usage, metrics),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def _model_card(name: str, service: ChatService, created: int) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "corral",
        "context_window": service.engine.context_window,
    }


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _completion_json(model: str, completion: ChatCompletion) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.content}
    if completion.tool_calls:
        message["tool_calls"] = [c.to_openai() for c in completion.tool_calls]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": completion.finish_reason,
                     "logprobs": None}],
        "usage": _usage_json(completion.usage),
    }


def _sse(model: str, deltas: Iterator[ChatDelta], include_usage: bool,
         metrics: InferenceMetrics) -> Iterator[str]:
    """OpenAI's chunk stream: a role delta, content deltas, a finish delta, optional usage, [DONE]."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        return f"data: {json.dumps({**base, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    try:
        for delta in deltas:
            body: dict[str, Any] = {}
            if delta.content:
                body["content"] = delta.content
            if delta.tool_calls:
                body["tool_calls"] = [{"index": i, **c.to_openai()} for i, c in enumerate(delta.tool_calls)]
            if body:
                yield event([{"index": 0, "delta": body, "finish_reason": None}])
            if delta.finish_reason is not None:
                yield event([{"index": 0, "delta": {}, "finish_reason": delta.finish_reason}])
                if delta.usage is not None:
                    metrics.record(model, delta.usage)
                    if include_usage:
                        yield event([], usage=_usage_json(delta.usage))
    except Exception as exc:  # headers are sent: report the error in-band, as OpenAI does
        status, error = status_and_body(exc)
        metrics.record_failure(model, f"http_{status}")
        yield f"data: {json.dumps(error)}\n\n"
    yield "data: [DONE]\n\n"
