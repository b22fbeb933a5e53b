"""The Celery application. Configured from settings when first used, never at import time."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from corral.core.config import get_settings
from corral.ingestion.worker import names

app = Celery("corral", set_as_current=False)


@app.on_configure.connect  # type: ignore[untyped-decorator]
def _configure(sender: Celery, **_: Any) -> None:
    settings = get_settings()
    sender.conf.update(
        broker_url=settings.redis_url or "memory://",
        # Results live in SQL (the Job row); the broker only carries job ids.
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.ingest_queue,
        task_queues=[Queue(settings.ingest_queue)],  # type: ignore[no-untyped-call]
        task_routes={name: {"queue": settings.ingest_queue}
                     for name in (names.INGEST_JOB, names.INGEST_BATCH)},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        accept_content=["json"],
        task_serializer="json",
    )
