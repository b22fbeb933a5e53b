"""The FastAPI application. ``create_app()`` builds it; nothing is configured at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from corral.core.config import get_settings
from corral.ingestion.sources.spec import upload_root
from corral.platform.api.auth import access_policy, log_policy
from corral.platform.api.errors import ERROR_RESPONSES, install_error_handlers
from corral.platform.api.middleware import BodyLimitMiddleware, HostCheckMiddleware
from corral.platform.api.routes import admin, corpora, documents, health, jobs, observability, runs
from corral.platform.api.routes import slack as slack_routes_v1
from corral.platform.api.routes import uploads as upload_routes
from corral.platform.api.routes import webhooks as webhook_routes
from corral.platform.api.uploads import sweep_abandoned_uploads
from corral.platform.composition import prepare
from corral.platform.jobs import resume_embedded_jobs
from corral.platform.observability.metrics import MetricsMiddleware
from corral.platform.runs import fail_interrupted_embedded_runs
from corral.platform.slack import build_bot, slack_routes
from corral.platform.web.app import mount_dashboard
from corral.platform.webhooks import start_webhook_runner


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await run_in_threadpool(prepare)
    await run_in_threadpool(resume_embedded_jobs)
    await run_in_threadpool(sweep_abandoned_uploads, upload_root())  # left by a killed API
    await run_in_threadpool(fail_interrupted_embedded_runs)
    log_policy(app.state.access)
    webhooks = start_webhook_runner()  # sends queued webhook deliveries, in every API process
    try:
        yield
    finally:
        if getattr(app.state, "slack", None) is not None:
            app.state.slack.stop()  # its listeners stop following runs
        await run_in_threadpool(webhooks.stop)


def create_app(bind_host: str | None = None) -> FastAPI:
    """The API for a server bound to ``bind_host`` (default ``CORRAL_API_HOST``): that address
    decides whether it may run open (see :mod:`corral.platform.api.auth`) and which ``Host``
    headers it answers."""
    settings = get_settings()
    # Every route declares the errors it may answer, in our one error shape.
    app = FastAPI(title="Corral", version="0.1.0", lifespan=_lifespan, responses=ERROR_RESPONSES)
    app.state.access = access_policy(settings, bind_host or settings.api_host)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(observability.router)
    app.include_router(corpora.router, prefix="/v1")
    app.include_router(upload_routes.router, prefix="/v1")
    app.include_router(documents.router, prefix="/v1")
    app.include_router(jobs.router, prefix="/v1")
    app.include_router(runs.router, prefix="/v1")
    app.include_router(admin.router, prefix="/v1")
    app.include_router(webhook_routes.router, prefix="/v1")
    app.include_router(slack_routes_v1.router, prefix="/v1")
    # The Slack bot's Events API endpoint, when the bot is configured (over HTTP; Socket Mode is
    # `corral slack --socket`). Slack's signature, not an API key, authenticates it.
    app.state.slack = None
    if settings.slack_bot_token is not None and settings.slack_signing_secret is not None:
        app.state.slack = build_bot(settings)
        app.include_router(slack_routes(app.state.slack))
    mount_dashboard(app)  # the dashboard's pages under /, over the same services
    app.add_middleware(BodyLimitMiddleware, limit=settings.api_max_body_bytes,
                       upload_limit=settings.upload_max_bytes)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=app.state.access.allowed_hosts)
    app.add_middleware(MetricsMiddleware)  # outermost: counts refusals by the others too
    return app
