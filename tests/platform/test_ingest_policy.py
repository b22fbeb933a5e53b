"""What an API caller may make the server read: paths only for admin keys under the allowed roots
(in development too), git URLs only to public hosts, credentials never stored or shown in clear,
one ingest per corpus at a time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from corral.platform.api.app import create_app
from tests.conftest import bearer, issue_key

WaitJob = Callable[..., dict[str, Any]]


def _client(monkeypatch: pytest.MonkeyPatch, **env: str) -> TestClient:
    from corral.core.config import get_settings

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return TestClient(create_app(), base_url="http://127.0.0.1")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "allowed" / "docs"
    root.mkdir(parents=True)
    (root / "a.md").write_text("# A\n\nAlpha.\n")
    return root


@pytest.fixture
def client(corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with _client(monkeypatch, CORRAL_INGEST_ALLOWED_ROOTS=f'["{tmp_path / "allowed"}"]') as c:
        yield c


def test_without_allowed_roots_no_caller_reads_server_paths(
    corral_env: Path, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.core.db import Corpus, Job, session_scope

    with _client(monkeypatch) as c:  # development, open local user with every scope, no roots
        for path in ("/etc/passwd", "/root/.bashrc", str(docs)):
            r = c.post("/v1/corpora/kb/ingest", json={"path": path})
            assert r.status_code == 403, r.text
            assert "CORRAL_INGEST_ALLOWED_ROOTS" in r.json()["error"]["message"]
        git_local = c.post("/v1/corpora/kb/ingest", json={"git": str(docs)})
        assert git_local.status_code == 403
        file_url = c.post("/v1/corpora/kb/ingest", json={"git": docs.as_uri()})
        assert file_url.status_code == 403
    with session_scope() as s:  # refused before anything was written
        assert s.scalars(select(Job)).first() is None and s.scalars(select(Corpus)).first() is None


def test_server_paths_need_the_admin_scope(client: TestClient, docs: Path, wait_job: WaitJob) -> None:
    ingest_key = bearer(issue_key("ingest"))
    refused = client.post("/v1/corpora/kb/ingest", json={"path": str(docs)}, headers=ingest_key)
    assert refused.status_code == 403 and "admin scope" in refused.json()["error"]["message"]
    local_git = client.post("/v1/corpora/kb/ingest", json={"git": docs.as_uri()}, headers=ingest_key)
    assert local_git.status_code == 403 and "admin scope" in local_git.json()["error"]["message"]

    admin = bearer(issue_key("admin"))
    ok = client.post("/v1/corpora/kb/ingest", json={"path": str(docs)}, headers=admin)
    assert ok.status_code == 202, ok.text
    assert wait_job(client, ok.json()["job_id"])["state"] == "succeeded"
    outside = client.post("/v1/corpora/kb/ingest", json={"path": "/etc"}, headers=admin)
    assert outside.status_code == 403 and "outside the allowed ingest roots" in outside.text


def test_paths_too_long_or_missing_are_400(client: TestClient, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    for path in (str(allowed / ("n" * 4000)), str(allowed / ("d" * 200) / ("e" * 300)),
                 str(allowed / "missing")):
        r = client.post("/v1/corpora/kb/ingest", json={"path": path})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "invalid_input"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8398/internal-admin/repo.git",
    "http://localhost/repo.git",
    "http://[::1]/repo.git",
    "http://[::ffff:127.0.0.1]/repo.git",
    "http://169.254.169.254/latest/meta-data.git",
    "http://10.1.2.3/repo.git",
    "http://0.0.0.0/repo.git",
    "http://2130706433/repo.git",
    "ssh://git@192.168.1.10/repo.git",
    "git@127.0.0.1:org/repo.git",
])
def test_git_urls_to_internal_hosts_are_refused(client: TestClient, url: str) -> None:
    r = client.post("/v1/corpora/kb/ingest", json={"git": url}, headers=bearer(issue_key("ingest")))
    assert r.status_code == 403, r.text
    assert "CORRAL_GIT_ALLOWED_HOSTS" in r.json()["error"]["message"]


def test_git_credentials_are_never_stored_or_shown_in_clear(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, wait_job: WaitJob
) -> None:
    from corral.core.db import Job, Source, session_scope
    from corral.ingestion.sources import spec_from_params

    token = "ghp_s3cretTOKENvalue"
    with _client(monkeypatch, CORRAL_GIT_ALLOWED_HOSTS='["127.0.0.1"]') as c:
        c.headers.update(bearer(issue_key("ingest", "read")))
        r = c.post("/v1/corpora/kb/ingest", json={"git": f"http://bot:{token}@127.0.0.1:9/r.git"})
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["job_id"])
        assert job["state"] == "failed" and "cannot fetch the git repository" in job["error"]
        for response in (json.dumps(job), c.get("/v1/jobs").text):
            assert token not in response
    with session_scope() as s:
        row = s.get_one(Job, job["id"])
        stored = json.dumps(row.params) + json.dumps([x.uri for x in s.scalars(select(Source))])
        assert token not in stored and "bot:" not in stored
        assert row.params["uri"] == "http://127.0.0.1:9/r.git" and row.params["credential"]
        assert spec_from_params(row.params).credential == f"bot:{token}"  # the worker's view


def test_a_second_ingest_while_one_runs_is_409_naming_it(
    client: TestClient, docs: Path, wait_job: WaitJob
) -> None:
    from corral.core.db import JobKind, session_scope
    from corral.core.services import create_job, get_or_create_corpus

    with session_scope() as s:
        busy = create_job(s, JobKind.INGEST, get_or_create_corpus(s, "kb").id,
                          {"corpus": "kb", "kind": "path", "uri": str(docs), "options": {}}).id
    r = client.post("/v1/corpora/kb/ingest", json={"path": str(docs)})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error == {"type": "conflict", "message": error["message"], "job_id": busy}
    assert busy in error["message"]
    other = client.post("/v1/corpora/other/ingest", json={"path": str(docs)})
    assert other.status_code == 202  # other corpora are not held up
    assert wait_job(client, other.json()["job_id"])["state"] == "succeeded"
