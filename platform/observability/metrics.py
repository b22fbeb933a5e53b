"""Prometheus metrics of the API and the workers, in one registry per process.

- HTTP (the API): requests by method, route template and status; seconds per request.
- Tasks (workers): seconds per Celery task (ingest job, ingest batch, agent run) and how each ended;
  the watchdogs' actions (a job requeued or failed, a run failed or resent).
- State (read when scraped, from the source of truth): jobs and runs by state, the broker's queue
  depths, the age of the oldest queued job, runs' seconds by state.

The API serves them at ``/metrics`` to admin keys of the default workspace (they describe the whole
deployment); a worker serves them on a bind of its own (``CORRAL_WORKER_METRICS_PORT``). Labels
never carry ids, paths or corpus names: their number stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from corral.core.config import Mode, get_settings

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "MetricsMiddleware",
    "get_metrics",
    "install_task_signals",
    "record_watchdog_action",
    "render",
]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_seconds: Histogram
    task_seconds: Histogram
    tasks: Counter
    watchdog_actions: Counter


class _StateCollector(Collector):
    """Jobs, runs and queues as the database and the broker see them at scrape time. A dependency
    that does not answer leaves its families out (and ``/readyz`` says which)."""

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._from_database()
        except Exception as exc:
            log.warning("metrics: the database did not answer: %r", exc)
        if get_settings().mode is Mode.SERVER:
            try:
                yield self._queue_depths()
            except Exception as exc:
                log.warning("metrics: the broker did not answer: %r", exc)

    def _from_database(self) -> Iterator[Metric]:
        from corral.core.db import Job, JobState, Run, session_scope

        jobs = GaugeMetricFamily("corral_jobs", "Jobs by kind and state.", labels=["kind", "state"])
        runs = GaugeMetricFamily("corral_runs", "Runs by state.", labels=["state"])
        run_seconds = SummaryMetricFamily("corral_run_seconds", "Seconds of finished runs, by state.",
                                          labels=["state"])
        oldest = GaugeMetricFamily("corral_oldest_queued_job_seconds",
                                   "Age of the oldest queued job (0: none queued).")
        with session_scope() as session:
            for kind, state, n in session.execute(
                    select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)):
                jobs.add_metric([kind.value, state.value], n)
            for run_state, n, ms in session.execute(
                    select(Run.state, func.count(), func.coalesce(func.sum(Run.duration_ms), 0.0))
                    .group_by(Run.state)):
                runs.add_metric([run_state.value], n)
                if run_state.finished:
                    run_seconds.add_metric([run_state.value], count_value=n,
                                           sum_value=float(ms or 0.0) / 1000)
            first = session.scalar(select(func.min(Job.created_at)).where(Job.state == JobState.QUEUED))
        if first is not None:
            from datetime import UTC, datetime

            first = first if first.tzinfo else first.replace(tzinfo=UTC)
            oldest.add_metric([], max(0.0, (datetime.now(UTC) - first).total_seconds()))
        else:
            oldest.add_metric([], 0.0)
        yield from (jobs, runs, run_seconds, oldest)

    def _queue_depths(self) -> Metric:
        import redis

        settings = get_settings()
        depth = GaugeMetricFamily("corral_queue_depth", "Messages waiting in a broker queue.",
                                  labels=["queue"])
        client = redis.Redis.from_url(settings.redis_url or "", socket_connect_timeout=1,
                                      socket_timeout=1)
        try:
            for label, name in (("ingest", settings.ingest_queue), ("agent", settings.agent_queue)):
                depth.add_metric([label], int(client.llen(name)))
        finally:
            client.close()
        return depth


@lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    """This process's metrics (created at first use, never at import time)."""
    registry = CollectorRegistry()
    metrics = Metrics(
        registry=registry,
        http_requests=Counter("corral_http_requests", "HTTP requests by method, route and status.",
                              ["method", "route", "status"], registry=registry),
        http_seconds=Histogram("corral_http_request_seconds", "Seconds per HTTP request, by route.",
                               ["method", "route"], buckets=_SECONDS, registry=registry),
        task_seconds=Histogram("corral_task_seconds", "Seconds per worker task, by task name.",
                               ["task"], buckets=_SECONDS, registry=registry),
        tasks=Counter("corral_tasks", "Worker tasks by name and outcome (succeeded, failed, retried).",
                      ["task", "outcome"], registry=registry),
        watchdog_actions=Counter("corral_watchdog_actions", "What the watchdogs did: "
                                 "kind job|run, action requeued|failed|resent.",
                                 ["kind", "action"], registry=registry),
    )
    registry.register(_StateCollector())
    return metrics


def render() -> bytes:
    """The metrics in Prometheus's text format."""
    return generate_latest(get_metrics().registry)


def record_watchdog_action(kind: str, action: str) -> None:
    get_metrics().watchdog_actions.labels(kind, action).inc()


class MetricsMiddleware:
    """Counts and times every HTTP request by its route's template (``/v1/jobs/{job_id}``, not the
    id). Requests no route matched are counted under ``unmatched``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            template = _template(scope)
            metrics = get_metrics()
            metrics.http_requests.labels(scope["method"], template, str(status[0])).inc()
            metrics.http_seconds.labels(scope["method"], template).observe(time.perf_counter() - start)


def _template(scope: dict[str, Any]) -> str:
    """The matched route's path template, prefix included. FastAPI keeps the prefixed template of
    a route of an included router on its routing context (``scope["route"]`` holds the route as
    declared, without the prefix); either is better than the raw path, whose ids are unbounded."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    return str(template) if template else "unmatched"


_started: dict[str, float] = {}


def install_task_signals() -> None:
    """Time every Celery task this worker runs and count how it ended (connect once per process)."""
    from celery.signals import task_postrun, task_prerun

    def prerun(task_id: str = "", **_: Any) -> None:
        _started[task_id] = time.perf_counter()

    def postrun(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
        began = _started.pop(task_id, None)
        name = str(getattr(task, "name", "unknown"))
        if began is not None:
            get_metrics().task_seconds.labels(name).observe(time.perf_counter() - began)
        outcome = {"SUCCESS": "succeeded", "RETRY": "retried"}.get(state or "", "failed")
        get_metrics().tasks.labels(name, outcome).inc()

    task_prerun.connect(prerun, weak=False)
    task_postrun.connect(postrun, weak=False)
