"""Our exception tree → HTTP status codes, with one JSON shape for every error.

:data:`ERROR_RESPONSES` declares that shape in the OpenAPI document for the errors any route may
answer (the app passes it to every route), so clients and the schema fuzzer know them.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from corral.core.errors import (
    ConfigurationError,
    ConflictError,
    CorralError,
    InvalidInputError,
    ModelError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthenticatedError,
)

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[CorralError], int, str]] = [
    (InvalidInputError, 400, "invalid_input"),
    (UnauthenticatedError, 401, "unauthenticated"),
    (PayloadTooLargeError, 413, "payload_too_large"),
    (RateLimitedError, 429, "rate_limited"),
    (PermissionDeniedError, 403, "permission_denied"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (ServiceUnavailableError, 503, "service_unavailable"),
    (ModelError, 502, "model_error"),
    (ConfigurationError, 500, "configuration_error"),
]


def status_of(exc: BaseException) -> tuple[int, str] | None:
    """The HTTP status and stable kind our error tree maps ``exc`` to (the API's and the dashboard's
    one table); None for anything outside it."""
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return None


def error_body(kind: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"type": kind, "message": message}}


class ErrorDetail(BaseModel):
    type: str = Field(description="A stable machine-readable kind, e.g. not_found, invalid_input")
    message: str = Field(description="What went wrong, for people")


class ErrorBody(BaseModel):
    """Every error the API answers: ``{"error": {"type", "message"}}``."""

    error: ErrorDetail


def _error(description: str, **headers: str) -> dict[str, Any]:
    declared: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        declared["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                               for name, text in headers.items()}
    return declared


# The errors any route may answer: the middleware (Host, body size), authentication, scopes, rate
# limits, validation and our error tree. Path-less routes never answer 404, but declaring it on every
# route keeps this one declaration.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Invalid input, or a Host header this server does not answer to"),
    401: _error("No API key, or an unknown, revoked or expired one",
                **{"WWW-Authenticate": "Bearer realm=\"corral\""}),
    403: _error("The key lacks the route's scope, or the action is not allowed"),
    404: _error("No such resource in the caller's workspace"),
    405: _error("Method not allowed", Allow="The methods the path accepts"),
    409: _error("Conflicts with the current state"),
    413: _error("The request body is over the size limit"),
    422: _error("The request does not match the schema"),
    429: _error("Over a rate limit or budget", **{"Retry-After": "Seconds to wait"}),
    503: _error("A service the request needs is unavailable"),
}


def _allowed_methods(request: Request) -> str:
    """Every method the request's path accepts (Starlette names only the first matching route's)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):  # routes of included routers too
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def _headers(exc: CorralError) -> dict[str, str] | None:
    if isinstance(exc, UnauthenticatedError):
        return {"WWW-Authenticate": 'Bearer realm="corral"'}
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CorralError)
    async def _corral(_request: Request, exc: CorralError) -> JSONResponse:
        known = status_of(exc)
        if known is not None:
            status, kind = known
            body: dict[str, dict[str, Any]] = error_body(kind, str(exc))
            if isinstance(exc, ConflictError) and exc.job_id is not None:
                body["error"]["job_id"] = exc.job_id  # the job in the way (one ingest at a time)
            return JSONResponse(body, status_code=status, headers=_headers(exc))
        log.exception("unclassified Corral error", exc_info=exc)
        return JSONResponse(error_body("error", str(exc)), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return JSONResponse(error_body(kind, str(exc.detail)), status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return JSONResponse(error_body("invalid_input", problems), status_code=422)
