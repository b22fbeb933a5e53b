"""Our exception tree → HTTP status codes, with one JSON shape for every error."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def error_body(kind: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"type": kind, "message": message}}


def _headers(exc: CorralError) -> dict[str, str] | None:
    if isinstance(exc, UnauthenticatedError):
        return {"WWW-Authenticate": 'Bearer realm="corral"'}
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CorralError)
    async def _corral(_request: Request, exc: CorralError) -> JSONResponse:
        for cls, status, kind in _STATUS:
            if isinstance(exc, cls):
                body: dict[str, dict[str, Any]] = error_body(kind, str(exc))
                if isinstance(exc, ConflictError) and exc.job_id is not None:
                    body["error"]["job_id"] = exc.job_id  # the job in the way (one ingest at a time)
                return JSONResponse(body, status_code=status, headers=_headers(exc))
        log.exception("unclassified Corral error", exc_info=exc)
        return JSONResponse(error_body("error", str(exc)), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # Starlette puts the 405's Allow header on the exception; keep it.
        return JSONResponse(error_body(kind, str(exc.detail)), status_code=exc.status_code,
                            headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return JSONResponse(error_body("invalid_input", problems), status_code=422)
