"""The FastAPI application. ``create_app()`` builds it; nothing is configured at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from corral.platform.api.errors import install_error_handlers
from corral.platform.api.routes import corpora, health, jobs
from corral.platform.composition import prepare
from corral.platform.jobs import resume_embedded_jobs


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    await run_in_threadpool(prepare)
    await run_in_threadpool(resume_embedded_jobs)
    yield


def create_app() -> FastAPI:
    app = FastAPI(title="Corral", version="0.1.0", lifespan=_lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(corpora.router, prefix="/v1")
    app.include_router(jobs.router, prefix="/v1")
    return app
