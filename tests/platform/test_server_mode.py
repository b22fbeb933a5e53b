"""Server mode for real: API → Redis → a separate `corral worker` process → PostgreSQL and a Chroma
server; then a question answered from what the worker indexed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.platform.conftest import enter_server_mode, start_worker, stop_worker

pytestmark = pytest.mark.services
BIN = Path(sys.executable).parent


@pytest.fixture
def server_env(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str,
    chroma_server: int,
) -> dict[str, str]:
    # tmp_path may be ingested over the API.
    return enter_server_mode(monkeypatch, postgres_url, redis_url, chroma_server,
                             CORRAL_INGEST_ALLOWED_ROOTS=f'["{corral_env.parent}"]')


@pytest.fixture
def worker(server_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_worker(server_env, tmp_path / "worker.log")
    try:
        yield proc
    finally:
        stop_worker(proc)


def test_ingest_runs_on_a_separate_worker_over_redis_and_postgres(
    worker: subprocess.Popen[bytes], tmp_path: Path, wait_job: Callable[..., dict[str, Any]]
) -> None:
    from sqlalchemy import text

    from corral.core.db import get_engine
    from corral.platform.api.app import create_app

    docs = tmp_path / "kb"
    docs.mkdir()
    (docs / "oncall.md").write_text("# On-call\n\nThe on-call engineer rotates every Monday.\n")
    (docs / "deploy.md").write_text("# Deploys\n\nDeploys are frozen on Fridays after noon.\n")

    from tests.conftest import bearer, issue_key

    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        assert client.get("/healthz").json()["mode"] == "server"
        # Server mode is never open, not even on a loopback address.
        assert client.post("/v1/corpora/kb/ingest", json={"path": str(docs)}).status_code == 401
        client.headers.update(bearer(issue_key("admin")))
        accepted = client.post("/v1/corpora/kb/ingest", json={"path": str(docs)})
        assert accepted.status_code == 202, accepted.text
        job = wait_job(client, accepted.json()["job_id"])
        assert job["state"] == "succeeded", job
        assert job["result"]["indexed"] == 2

        # The rows are in PostgreSQL, written by the worker process (this process only queued).
        engine = get_engine()
        assert engine.dialect.name == "postgresql"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM document")).scalar() == 2
            assert conn.execute(text("SELECT count(*) FROM chunk")).scalar() >= 2
        worker_log = (tmp_path / "worker.log").read_text()
        assert accepted.json()["job_id"] in worker_log and "succeeded" in worker_log

        reply = client.post("/v1/corpora/kb/ask", json={"question": "When are deploys frozen?"})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["strategy"] == "stuff"
        assert body["citations"][0]["path"] == "kb/deploy.md"


def test_worker_refuses_embedded_mode(corral_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_MODE"}
    r = subprocess.run([str(BIN / "corral"), "worker"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "needs server mode" in r.stderr
