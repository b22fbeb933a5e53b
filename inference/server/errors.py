"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with a 4xx/5xx status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from corral.inference.errors import (
    ContextOverflowError,
    InferenceError,
    InvalidRequestError,
    ModelNotFoundError,
)

__all__ = ["error_body", "install_error_handlers", "status_and_body"]

log = logging.getLogger(__name__)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def status_and_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body for one of our errors (also used for errors inside a stream)."""
    if isinstance(exc, ModelNotFoundError):
        return 404, error_body(str(exc), "invalid_request_error", "model", "model_not_found")
    if isinstance(exc, ContextOverflowError):
        return 400, error_body(str(exc), "invalid_request_error", "messages", "context_length_exceeded")
    if isinstance(exc, InvalidRequestError):
        return 400, error_body(str(exc), "invalid_request_error", exc.param, exc.code)
    if isinstance(exc, InferenceError):
        log.error("inference failed: %s", exc)
        return 500, error_body(str(exc), "server_error")
    log.exception("unexpected error", exc_info=exc)
    return 500, error_body("internal error", "server_error")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    where = ".".join(loc) or None
    return (f"{where}: {first.get('msg')}" if where else str(first.get("msg"))), where


def install_error_handlers(app: FastAPI) -> None:
    async def on_ours(_: Request, exc: Exception) -> JSONResponse:
        status, body = status_and_body(exc)
        return JSONResponse(body, status_code=status)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        return JSONResponse(error_body(message, "invalid_request_error", param), status_code=400)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    app.add_exception_handler(InferenceError, on_ours)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
