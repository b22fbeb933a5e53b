"""What an operator watches: ``/healthz`` (alive, asks nothing), ``/readyz`` (every dependency
answers; public, so it never shows an address or a password), ``/metrics`` on the API (admin keys
of the default workspace only) and on a worker's own bind."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import bearer, clear_caches, issue_key
from tests.platform.conftest import free_port

SECRET = "s3cret-Pa55word"


@pytest.fixture
def keyed(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API in embedded mode demanding keys."""
    from corral.platform.api.app import create_app

    monkeypatch.setenv("CORRAL_AUTH", "required")
    clear_caches()
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def test_healthz_and_readyz_in_embedded_mode(keyed: TestClient) -> None:
    assert keyed.get("/healthz").json() == {"status": "ok", "mode": "embedded"}
    ready = keyed.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and set(body["checks"]) == {"database", "vector_store"}
    assert all(c["ok"] and c["seconds"] >= 0 for c in body["checks"].values())


def test_readyz_says_what_is_down_without_addresses_or_passwords(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.platform.api.app import create_app

    closed = free_port()  # nothing listens there
    for key, value in {
        "CORRAL_MODE": "server", "CORRAL_AUTH": "required",
        "CORRAL_DATABASE_URL": f"postgresql://corral:{SECRET}@127.0.0.1:{closed}/corral",
        "CORRAL_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{closed}/0",
        "CORRAL_CHROMA_HOST": "127.0.0.1", "CORRAL_CHROMA_PORT": str(closed),
        "CORRAL_CHAT_BACKEND": "openai", "CORRAL_OPENAI_BASE_URL": f"http://127.0.0.1:{closed}/v1",
        "CORRAL_OPENAI_MODEL": "m", "CORRAL_CHAT_CONTEXT_WINDOW": "4096",
        "CORRAL_READINESS_TIMEOUT_S": "1",
    }.items():
        monkeypatch.setenv(key, value)
    clear_caches()
    # No lifespan: a server whose database is down still answers its probes.
    client = TestClient(create_app(), base_url="http://127.0.0.1")
    assert client.get("/healthz").status_code == 200  # alive, whatever its dependencies do
    ready = client.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert set(checks) == {"database", "broker", "vector_store", "inference"}
    assert all(not c["ok"] and c["error"] in ("unreachable", "timeout") for c in checks.values())
    for leak in (SECRET, str(closed), "127.0.0.1", "postgresql", "redis://"):
        assert leak not in ready.text


def test_api_metrics_need_an_admin_key_of_the_default_workspace(keyed: TestClient) -> None:
    admin = bearer(issue_key("admin"))
    assert keyed.get("/metrics").status_code == 401
    assert keyed.get("/metrics", headers=bearer(issue_key("read"))).status_code == 403
    other = keyed.get("/metrics", headers=bearer(issue_key("admin", workspace="team-b")))
    assert other.status_code == 403 and "default" in other.json()["error"]["message"]

    assert keyed.get("/v1/jobs/nope", headers=admin).status_code == 404
    assert keyed.post("/v1/corpora/kb/ingest", headers=admin, json={"path": "/definitely/not"}
                      ).status_code in (400, 403, 404)
    metrics = keyed.get("/metrics", headers=admin)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    # Requests by route template (never the id), status and method.
    # The counters are the process's own: other tests in the same process may have counted too.
    assert re.search(r'corral_http_requests_total\{method="GET",route="/v1/jobs/\{job_id\}",'
                     r'status="404"\} [1-9]\d*\.0', text), text
    assert 'route="/healthz"' not in text or "corral_http_request_seconds_bucket" in text
    assert "nope" not in text
    for family in ("corral_http_request_seconds_bucket", "corral_runs", "corral_jobs",
                   "corral_oldest_queued_job_seconds 0.0", "corral_task_seconds",
                   "corral_watchdog_actions"):
        assert family in text, family


def test_worker_metrics_on_their_own_bind_time_tasks_and_count_watchdog_actions(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.core.db import JobKind, JobState, session_scope
    from corral.core.db.migrate import ensure_schema
    from corral.core.services import create_job, get_or_create_corpus
    from corral.ingestion.worker import watchdog
    from corral.ingestion.worker.tasks import ingest_job
    from corral.platform.observability.worker import start_worker_observability

    port = free_port()
    monkeypatch.setenv("CORRAL_WORKER_METRICS_PORT", str(port))
    clear_caches()
    ensure_schema()
    hooks = list(watchdog.ACTION_HOOKS)
    try:
        assert start_worker_observability() == port
        with session_scope() as s:
            job = create_job(s, JobKind.INGEST, get_or_create_corpus(s, "kb").id, {})
            job.state, job_id = JobState.SUCCEEDED, job.id
        ingest_job.apply(args=[job_id])  # finished already: the task does nothing, and is timed
        watchdog._tell("requeued")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        watchdog.ACTION_HOOKS[:] = hooks
    assert re.search(r'corral_tasks_total\{outcome="succeeded",task="corral.ingest.run_job"\} [1-9]',
                     text), text
    assert 'corral_task_seconds_count{task="corral.ingest.run_job"}' in text
    assert re.search(r'corral_watchdog_actions_total\{action="requeued",kind="job"\} [1-9]', text)
