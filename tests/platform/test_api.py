"""The REST API in embedded mode: submit an ingest job, watch it finish, ask; bad requests get 4xx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from corral.platform.api.app import create_app

WaitJob = Callable[..., dict[str, Any]]


@pytest.fixture
def client(corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from corral.core.config import get_settings

    # Paths over the API are read only under the allowed roots, in development too.
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", f'["{tmp_path}"]')
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "policy.md").write_text("# Policy\n\nRefunds are paid within five working days.\n")
    (root / "bad.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    return root


def test_ingest_job_then_ask(client: TestClient, docs: Path, wait_job: WaitJob) -> None:
    accepted = client.post("/v1/corpora/docs/ingest", json={"path": str(docs)})
    assert accepted.status_code == 202, accepted.text
    job = wait_job(client, accepted.json()["job_id"])
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0 and job["done"] == job["total"] == 2
    assert job["result"]["indexed"] == 1 and job["result"]["failed"] == 1
    assert "invalid UTF-8" in job["result"]["problems"][0]["reason"]

    corpora = client.get("/v1/corpora").json()["items"]
    assert [c["name"] for c in corpora] == ["docs"] and corpora[0]["tokens"] > 0

    reply = client.post("/v1/corpora/docs/ask", json={"question": "How fast are refunds paid?"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["strategy"] == "stuff" and body["citations"][0]["path"] == "docs/policy.md"
    assert body["run_id"] and body["reason"]


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "mode": "embedded"}


@pytest.mark.parametrize(
    ("method", "url", "payload", "status", "kind"),
    [
        ("get", "/v1/jobs/does-not-exist", None, 404, "not_found"),
        ("get", "/v1/jobs/" + "x" * 5000, None, 404, "not_found"),
        ("post", "/v1/corpora/nope/ask", {"question": "hi?"}, 404, "not_found"),
        ("post", "/v1/corpora/docs/ask", {"question": ""}, 422, "invalid_input"),
        ("post", "/v1/corpora/docs/ask", {"question": "q" * 9000}, 422, "invalid_input"),
        ("post", "/v1/corpora/docs/ask", {"question": "hi", "strategy": "guess"}, 422, "invalid_input"),
        ("post", "/v1/corpora/docs/ask", ["not", "an", "object"], 422, "invalid_input"),
        ("post", "/v1/corpora/docs/ingest", {"path": "relative/path"}, 400, "invalid_input"),
        ("post", "/v1/corpora/docs/ingest", {"path": "/no/such/folder"}, 403, "permission_denied"),
        ("post", "/v1/corpora/docs/ingest", {"path": "/" + "a" * 4000}, 400, "invalid_input"),
        ("post", "/v1/corpora/docs/ingest", {"path": "/tmp\u0000x"}, 400, "invalid_input"),
        ("post", "/v1/corpora/docs/ingest", {}, 422, "invalid_input"),
        ("post", "/v1/corpora/..%2F..%2Fetc/ingest", {"path": "/tmp"}, 404, "not_found"),
        ("post", "/v1/corpora/bad%20name/ingest", {"path": "/tmp"}, 400, "invalid_input"),
        ("delete", "/v1/corpora/docs/ask", None, 405, "method_not_allowed"),
        ("post", "/v1/corpora/" + "a" * 300 + "/ingest", {"path": "/tmp"}, 400, "invalid_input"),
    ],
)
def test_bad_requests_get_clear_errors(
    client: TestClient, method: str, url: str, payload: Any, status: int, kind: str
) -> None:
    response = getattr(client, method)(url, json=payload) if payload is not None else \
        getattr(client, method)(url)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and error["message"]


def test_malformed_json_body_is_rejected(client: TestClient) -> None:
    r = client.post("/v1/corpora/docs/ask", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_input"


def test_paths_outside_allowed_roots_are_forbidden(
    corral_env: Path, docs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wait_job: WaitJob
) -> None:
    from corral.core.config import get_settings

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", f'["{allowed}"]')
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        r = c.post("/v1/corpora/docs/ingest", json={"path": str(docs)})
        assert r.status_code == 403 and "outside the allowed ingest roots" in r.json()["error"]["message"]
        ok = c.post("/v1/corpora/docs/ingest", json={"path": str(allowed)})
        assert ok.status_code == 202
        assert wait_job(c, ok.json()["job_id"])["state"] == "succeeded"


def test_jobs_interrupted_by_a_stop_resume_when_the_server_starts(
    corral_env: Path, docs: Path, wait_job: WaitJob
) -> None:
    from corral.core.db import JobKind, session_scope
    from corral.core.db.migrate import ensure_schema
    from corral.core.services import create_job, get_or_create_corpus, start_job
    from corral.ingestion.sources import PathSpec, spec_params

    ensure_schema()
    with session_scope() as s:  # as a server killed mid-job leaves it: running, never finished
        corpus = get_or_create_corpus(s, "docs")
        job = create_job(s, JobKind.INGEST, corpus.id, {"corpus": "docs", **spec_params(PathSpec(docs))})
        start_job(s, job, total=2)
        job_id = job.id
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        resumed = wait_job(c, job_id)
        assert resumed["state"] == "succeeded" and resumed["result"]["indexed"] == 1
