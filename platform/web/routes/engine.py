"""The Engine page: tokens/s and prefix-cache hit rate over the last hour, per-expert utilisation as a
heatmap per MoE layer."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from corral.platform.web.engine import engine_history, read_engine, series
from corral.platform.web.pages import PageRoute, ReadViewer, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/engine")
async def engine(request: Request, _viewer: ReadViewer) -> Response:
    now = await run_in_threadpool(read_engine)
    history = engine_history(now)
    peak = max((max(row) for row in now.experts.values() if row), default=0.0)
    return render(request, "engine.html", now=now, peak=peak or 1.0, samples=len(history),
                  series=json.dumps(series(history)))
