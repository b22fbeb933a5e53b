"""A worker's observability: its tasks timed, its watchdogs counted, and — with
``CORRAL_WORKER_METRICS_PORT`` — its metrics served on a bind of its own (``/metrics``, loopback by
default). Metrics are this process's: run workers with the solo or threads pool (the default) so
that every task is counted here."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from corral.core.config import get_settings
from corral.ingestion.worker import watchdog
from corral.platform.observability.metrics import (
    get_metrics,
    install_task_signals,
    record_watchdog_action,
)

__all__ = ["start_worker_observability"]

log = logging.getLogger(__name__)


def start_worker_observability() -> int | None:
    """Connect the task timers and watchdog counters; serve the metrics when a port is configured.
    Returns the port served on, or None."""
    install_task_signals()
    if record_watchdog_action not in watchdog.ACTION_HOOKS:
        watchdog.ACTION_HOOKS.append(record_watchdog_action)
    settings = get_settings()
    if settings.worker_metrics_port is None:
        return None
    start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host,
                      registry=get_metrics().registry)
    log.info("worker metrics on http://%s:%d/metrics", settings.worker_metrics_host,
             settings.worker_metrics_port)
    return settings.worker_metrics_port
