"""Rules of an ingest job: hidden files are skipped with the reason, a cancelled job says how far it
got and cancels what it left, a failed or cancelled job removes the empty corpus its request
created, and a source ingested again reuses its row."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from corral.core.db import Corpus, JobState, Source, session_scope
from corral.core.errors import ServiceUnavailableError
from corral.core.services import find_corpus, get_job, item_counts, request_cancel
from corral.ingestion import ingest as ingest_module
from corral.ingestion.ingest import ingest_now, submit_ingest
from corral.ingestion.sources import PathSpec, source_spec


@pytest.fixture(autouse=True)
def schema(corral_env: Path) -> None:
    from corral.core.db.migrate import ensure_schema

    ensure_schema()


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, PathSpec], str]:
    """Submit without starting: the job stays queued until the test runs it."""
    monkeypatch.setattr(ingest_module, "hand_off", lambda job_id: None)
    return lambda corpus, spec: submit_ingest(corpus, spec)


@pytest.fixture
def five(tmp_path: Path) -> Path:
    root = tmp_path / "five"
    root.mkdir()
    for i in range(5):
        (root / f"n{i}.md").write_text(f"# Note {i}\n\nNote number {i}.\n")
    return root


def test_hidden_files_are_skipped_with_the_reason_except_a_few(corral_env: Path, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    (root / "app.py").write_text("x = 1\n")
    (root / ".env").write_text("API_TOKEN=hunter2\n")
    (root / ".npmrc").write_text("//registry/:_authToken=abc\n")
    (root / ".env.example").write_text("API_TOKEN=\n")
    (root / ".gitignore").write_text("*.log\n")
    (root / "sub").mkdir()
    (root / "sub" / ".secret.md").write_text("# hidden\n")
    report = ingest_now("proj", root)
    reasons = {p.path: p.reason or "" for p in report.problems}
    for hidden in ("proj/.env", "proj/.npmrc", "proj/sub/.secret.md"):
        assert "hidden file is not indexed" in reasons[hidden]
    for kept in ("proj/.env.example", "proj/.gitignore", "proj/.github/workflows/ci.yml", "proj/app.py"):
        assert "hidden" not in reasons.get(kept, "")
    assert report.skipped >= 3

    # The same rule in a git repository, where .env was committed.
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "commit",
                    "-qm", "x"], check=True)
    from corral.ingestion.sources import GitSource

    items = [i for b in GitSource(str(root), cache_dir=tmp_path / "c").iter_batches(100) for i in b]
    by_path = {i.path: getattr(i, "reason", None) for i in items}
    assert "hidden file" in (by_path["proj/.env"] or "") and by_path["proj/.gitignore"] is None


def test_a_job_cancelled_while_running_says_how_far_it_got(
    corral_env: Path, five: Path, queued: Callable[[str, PathSpec], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from corral.core.config import get_settings
    from corral.ingestion.pipeline import configured_services, finish_if_done, index_batch, plan_job
    from corral.ingestion.pipeline.jobs import run_ingest_job
    from corral.ingestion.sources import open_spec

    monkeypatch.setenv("CORRAL_INGEST_BATCH_SIZE", "2")
    get_settings.cache_clear()
    services = configured_services()
    for rerun in (False, True):
        corpus = f"kb{int(rerun)}"
        job_id = queued(corpus, PathSpec(five))
        assert plan_job(services, job_id, open_spec(PathSpec(five))) == [0, 1, 2]
        index_batch(services, job_id, 0)
        with session_scope() as s:
            request_cancel(s, job_id)
        if rerun:  # the job run again (a restart, a redelivered message) after the cancel
            assert run_ingest_job(services, job_id) is JobState.CANCELLED
        else:  # the running job reaches its next batches
            for batch in (1, 2):
                index_batch(services, job_id, batch)
            assert finish_if_done(services, job_id) is JobState.CANCELLED
        with session_scope() as s:
            job = get_job(s, job_id)
            assert job.error == "cancelled while running after 2 of 5 documents"
            assert item_counts(s, job_id) == {"indexed": 2, "cancelled": 3}
            assert find_corpus(s, corpus) is not None  # it holds documents: kept


def test_failed_or_cancelled_jobs_leave_no_empty_corpus_they_created(
    corral_env: Path, five: Path, queued: Callable[[str, PathSpec], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient

    from corral.platform.api.app import create_app

    cancelled = queued("fresh", PathSpec(five))
    with session_scope() as s:
        assert request_cancel(s, cancelled).error == "cancelled before it started"
        assert find_corpus(s, "fresh") is None
        assert get_job(s, cancelled).corpus_id is None  # the job stays, as a record

    def unreachable(job_id: str) -> None:
        raise ServiceUnavailableError("the job broker is unreachable")

    monkeypatch.setattr(ingest_module, "hand_off", unreachable)
    with pytest.raises(ServiceUnavailableError):
        submit_ingest("fresh", PathSpec(five))
    with session_scope() as s:
        assert find_corpus(s, "fresh") is None

    gone = five.parent / "gone"
    gone.mkdir()
    monkeypatch.setattr(ingest_module, "hand_off", lambda job_id: None)
    job_id = submit_ingest("vanishing", PathSpec(gone))
    gone.rmdir()
    from corral.ingestion.pipeline import configured_services
    from corral.ingestion.pipeline.jobs import run_ingest_job

    assert run_ingest_job(configured_services(), job_id) is JobState.FAILED
    with session_scope() as s:
        assert find_corpus(s, "vanishing") is None
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        shown = c.get(f"/v1/jobs/{job_id}").json()
        assert shown["state"] == "failed" and shown["corpus"] == "vanishing"

    # A corpus that existed before is never removed by a failed job.
    ingest_now("kept", five)
    kept_job = submit_ingest("kept", PathSpec(five))
    with session_scope() as s:
        request_cancel(s, kept_job)
        assert find_corpus(s, "kept") is not None


def test_the_same_source_ingested_again_reuses_its_row(corral_env: Path, five: Path) -> None:
    first = ingest_now("kb", five)
    again = ingest_now("kb", source_spec(path=str(five) + "/"))
    assert first.indexed == 5 and again.unchanged == 5
    with session_scope() as s:
        corpus = find_corpus(s, "kb")
        assert corpus is not None
        assert s.scalar(select(func.count()).select_from(Source).where(Source.corpus_id == corpus.id)) == 1
        assert s.scalar(select(func.count()).select_from(Corpus)) == 1
