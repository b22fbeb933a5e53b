"""``/readyz`` (public: whether the dependencies answer, no addresses) and ``/metrics`` (Prometheus,
for admin keys of the default workspace: it describes the whole deployment)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from corral.core.errors import PermissionDeniedError
from corral.core.services import DEFAULT_WORKSPACE
from corral.platform.api.auth import AdminCaller
from corral.platform.observability.metrics import CONTENT_TYPE, render
from corral.platform.observability.readiness import check_readiness

router = APIRouter(tags=["health"])


@router.get("/readyz", responses={503: {"description": "a dependency does not answer"}})
async def readyz() -> JSONResponse:
    """200 when the database, broker, vector store and inference service this deployment uses all
    answer; else 503. Each check: ``ok``, ``seconds`` and, failed, ``error`` (``unreachable``,
    ``timeout`` or ``unhealthy``)."""
    readiness = await run_in_threadpool(check_readiness)
    return JSONResponse(readiness.to_dict(), status_code=200 if readiness.ready else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(caller: AdminCaller) -> Response:
    """Prometheus metrics of this API process and of the deployment's jobs, runs and queues."""
    if caller.workspace != DEFAULT_WORKSPACE:
        raise PermissionDeniedError("metrics describe the whole deployment: they need an admin key "
                                    f"of the {DEFAULT_WORKSPACE!r} workspace")
    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE)
