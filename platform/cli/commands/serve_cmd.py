"""``corral serve`` (the API) and ``corral worker`` (a Celery worker)."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.core.config import Mode, get_settings
from corral.core.errors import ConfigurationError
from corral.platform.composition import prepare


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the REST API. Embedded mode runs ingest jobs on a background thread of this process."""
    import uvicorn

    from corral.platform.api.app import create_app

    settings = get_settings()
    prepare()
    bind = host or settings.api_host
    # The app is built for the address it binds: that decides whether it may run open.
    uvicorn.run(create_app(bind_host=bind), host=bind, port=port or settings.api_port, log_level="info")


def worker(
    queues: Annotated[str | None, typer.Option(
        "-Q", "--queues", help="Comma-separated: ingest, agent (default: both).")] = None,
    concurrency: Annotated[int, typer.Option(help="Tasks run at once.")] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: solo, threads or prefork.")] = "solo",
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Run a Celery worker: ingest jobs (``-Q ingest``), asks (``-Q agent``: runs, answered with the
    configured chat backend — the embedded model or an OpenAI-compatible inference service), or both
    (the default). Needs server mode."""
    settings = get_settings()
    if settings.mode is not Mode.SERVER:
        raise ConfigurationError(
            "`corral worker` needs server mode: set CORRAL_MODE=server, CORRAL_DATABASE_URL and "
            "CORRAL_REDIS_URL (embedded mode runs jobs inside `corral serve`)"
        )
    prepare()
    from corral.ingestion.worker import app
    from corral.platform.observability.worker import start_worker_observability
    from corral.platform.runs import watchdog as _runs_watchdog  # noqa: F401 - starts with the worker
    from corral.platform.runs import worker as _agent_tasks  # noqa: F401 - registers the agent task

    start_worker_observability()

    app.worker_main([
        "worker",
        f"--queues={queues or f'{settings.ingest_queue},{settings.agent_queue}'}",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ])
