"""Jobs as users and operators see them: per-document items over the API and CLI, cancellation,
and the watchdog that requeues, then fails, jobs whose heartbeat stopped."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from corral.core.db import Job, JobKind, JobState, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.services import create_job, get_job, get_or_create_corpus, reap_stale_jobs
from corral.platform.api.app import create_app
from corral.platform.cli.app import app as cli

WaitJob = Callable[..., dict[str, Any]]


@pytest.fixture
def client(corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from corral.core.config import get_settings

    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", f'["{tmp_path}"]')  # paths over the API
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def _queued_job(params: dict[str, Any] | None = None) -> str:
    with session_scope() as s:
        corpus = get_or_create_corpus(s, "kb")
        params = params or {"corpus": "kb", "kind": "path", "uri": "/nope", "options": {}}
        return create_job(s, JobKind.INGEST, corpus.id, params).id


def test_job_detail_pages_its_documents_and_cancel_is_409_once_finished(
    client: TestClient, tmp_path: Path, wait_job: WaitJob
) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    for i in range(5):
        (root / f"n{i}.txt").write_text(f"note {i}\n")
    (root / "bin.py").write_bytes(b"\x00\x01\x02\x03")
    job_id = client.post("/v1/corpora/kb/ingest", json={"path": str(root)}).json()["job_id"]
    wait_job(client, job_id)
    body = client.get(f"/v1/jobs/{job_id}", params={"items_limit": 2, "items_offset": 1}).json()
    assert body["state"] == "succeeded" and body["items_by_state"] == {"indexed": 5, "skipped": 1}
    assert [i["path"] for i in body["items"]] == ["kb/n0.txt", "kb/n1.txt"]
    skipped = client.get(f"/v1/jobs/{job_id}", params={"items_state": "skipped"}).json()["items"]
    assert skipped[0]["path"] == "kb/bin.py" and "binary" in skipped[0]["error"]
    assert any(j["id"] == job_id for j in client.get("/v1/jobs").json()["items"])

    refused = client.post(f"/v1/jobs/{job_id}/cancel")
    assert refused.status_code == 409 and "already succeeded" in refused.json()["error"]["message"]
    for bad in ({"items_limit": 0}, {"items_limit": 10**9}, {"items_offset": -1},
                {"items_state": "x'; drop"}, {"items_state": "a" * 100}):
        assert client.get(f"/v1/jobs/{job_id}", params=bad).status_code == 422
    assert client.get("/v1/jobs", params={"state": "bogus"}).status_code == 422
    assert client.delete("/v1/jobs/" + "z" * 4000).status_code == 404


def test_cancelling_a_queued_job_cancels_it_at_once(client: TestClient) -> None:
    job_id = _queued_job()
    r = client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel")  # idempotent
    assert again.status_code == 202 and again.json()["state"] == "cancelled"


def test_watchdog_requeues_stale_jobs_then_fails_them(corral_env: Path) -> None:
    ensure_schema()
    stale_id, fresh_id, cancel_id = _queued_job(), _queued_job(), _queued_job()
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with session_scope() as s:
        for job_id in (stale_id, cancel_id):
            job = get_job(s, job_id)
            job.state, job.heartbeat_at = JobState.RUNNING, long_ago
        get_job(s, cancel_id).cancel_requested = True
        get_job(s, fresh_id).state = JobState.RUNNING
        get_job(s, fresh_id).heartbeat_at = datetime.now(UTC)

    with session_scope() as s:
        first = reap_stale_jobs(s, stale_after=60, max_attempts=3)
    assert first.requeue == [stale_id] and first.failed == []
    with session_scope() as s:
        assert get_job(s, cancel_id).state is JobState.CANCELLED
        assert get_job(s, stale_id).attempts == 1
        # The requeue counts as a sign of life: an immediate second pass leaves it alone.
        assert reap_stale_jobs(s, stale_after=60, max_attempts=3).requeue == []

    later = datetime.now(UTC) + timedelta(minutes=5)
    with session_scope() as s:
        # Five minutes on, the job that was fresh is stale too (first attempt), ours on its second.
        assert set(reap_stale_jobs(s, stale_after=60, max_attempts=3, now=later).requeue) == {
            stale_id, fresh_id}
    with session_scope() as s:
        third = reap_stale_jobs(s, stale_after=60, max_attempts=3, now=later + timedelta(minutes=5))
    assert third.failed == [stale_id] and third.requeue == [fresh_id]
    with session_scope() as s:
        job = get_job(s, stale_id)
        assert job.state is JobState.FAILED and "no heartbeat" in (job.error or "")
        assert get_job(s, fresh_id).state is JobState.RUNNING


def test_jobs_cli_lists_shows_cancels_and_runs_the_watchdog(corral_env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    root = tmp_path / "kb"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nalpha\n")
    (root / "b.bin").write_bytes(bytes(range(256)))
    ingest = runner.invoke(cli, ["ingest", str(root), "--corpus", "kb", "--json"])
    assert ingest.exit_code == 0, ingest.output
    job_id = json.loads(ingest.output)["job_id"]

    listed = runner.invoke(cli, ["jobs", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output)[0]["id"] == job_id
    shown = runner.invoke(cli, ["jobs", "show", job_id, "--json"])
    detail = json.loads(shown.output)
    assert detail["state"] == "succeeded" and {i["path"] for i in detail["items"]} == {"kb/a.md", "kb/b.bin"}
    assert runner.invoke(cli, ["jobs", "show", job_id]).exit_code == 0
    assert runner.invoke(cli, ["jobs", "list"]).exit_code == 0

    assert runner.invoke(cli, ["jobs", "cancel", job_id]).exit_code == 2  # finished: conflict
    missing = runner.invoke(cli, ["jobs", "show", "nope"])
    assert missing.exit_code == 2 and "no job" in missing.output
    assert runner.invoke(cli, ["jobs", "list", "--state", "weird"]).exit_code == 2

    queued = _queued_job()
    cancelled = runner.invoke(cli, ["jobs", "cancel", queued])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    watchdog = runner.invoke(cli, ["jobs", "watchdog"])
    assert watchdog.exit_code == 0 and "requeued 0, failed 0" in watchdog.output
    with session_scope() as s:
        assert s.get(Job, queued) is not None


def test_ingest_route_takes_git_and_refuses_bad_sources(client: TestClient, tmp_path: Path) -> None:
    for body, status in (
        ({"git": "ftp://example.com/repo.git"}, 400),
        ({"git": "ext::sh -c touch% /tmp/pwned"}, 400),
        ({"git": "--upload-pack=touch /tmp/x"}, 400),
        ({"path": str(tmp_path), "git": "https://example.com/r.git"}, 422),
        ({}, 422),
        ({"path": str(tmp_path), "branch": "main"}, 422),
        ({"git": "https://example.com/r.git", "branch": "main; rm -rf /"}, 422),
    ):
        r = client.post("/v1/corpora/kb/ingest", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["message"]


def test_cli_ingests_a_git_repository_and_records_its_commit(corral_env: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    from sqlalchemy import select

    from corral.core.db import Source, SourceKind

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "main.py").write_text("def main():\n    return 42\n")
    (repo / ".gitignore").write_text("secret.txt\n")
    (repo / "secret.txt").write_text("hunter2\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "main.py", ".gitignore"],
                ["git", "commit", "-q", "-m", "first"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, timeout=60)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=env, check=True,
                          capture_output=True, text=True, timeout=60).stdout.strip()

    result = CliRunner().invoke(cli, ["ingest", "--git", str(repo), "--corpus", "repo", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["indexed"] >= 1 and report["failed"] == 0
    with session_scope() as s:
        source = s.scalars(select(Source).where(Source.kind == SourceKind.GIT)).one()
        assert source.commit == head
