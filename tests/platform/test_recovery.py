"""Recovery from lost work, decided in SQL: the default recovery time stays under a minute; the
runs' watchdog fails a running run whose heartbeat stopped and resends a queued one whose message
may be lost; both watchdogs record what they did on the job or run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.core.config import Settings
from corral.core.db import JobKind, JobState, Run, RunState, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.services import create_job, get_job, get_or_create_corpus, reap_stale_jobs
from corral.core.services.runs import beat_run, claim_run, create_run, reap_stale_runs


def test_the_default_recovery_time_is_under_a_minute(corral_env: Path) -> None:
    stale = Settings().job_stale_seconds
    # A dead worker's last beat is at most `stale` old when the watchdog (every stale/2) looks.
    assert stale + stale / 2 <= 60


def _runs(n: int) -> list[str]:
    with session_scope() as s:
        corpus = get_or_create_corpus(s, "kb")
        return [create_run(s, corpus, f"question {i}?", {}).id for i in range(n)]


def test_runs_watchdog_fails_silent_runs_resends_lost_ones_and_records_why(corral_env: Path) -> None:
    ensure_schema()
    silent, alive, lost, fresh = _runs(4)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    with session_scope() as s:
        for run_id in (silent, alive):
            assert claim_run(s, run_id) is not None
        s.get_one(Run, silent).heartbeat_at = long_ago
        s.get_one(Run, lost).created_at = long_ago
    with session_scope() as s:
        assert beat_run(s, alive) and not beat_run(s, lost)  # only a running run beats

    with session_scope() as s:
        stale = reap_stale_runs(s, stale_after=30)
    assert stale.failed == [silent] and stale.resend == [lost]
    with session_scope() as s:
        dead = s.get_one(Run, silent)
        assert dead.state is RunState.FAILED and "no heartbeat" in (dead.error or "")
        assert [w["action"] for w in dead.params["watchdog"]] == ["failed"]
        assert s.get_one(Run, alive).state is RunState.RUNNING
        resent = s.get_one(Run, lost)
        assert resent.state is RunState.QUEUED and resent.params["watchdog"][0]["action"] == "resent"
        assert s.get_one(Run, fresh).state is RunState.QUEUED and "watchdog" not in s.get_one(
            Run, fresh).params
        # The resend counts as a sign of life: an immediate second pass does nothing.
        again = reap_stale_runs(s, stale_after=30)
        assert again.failed == [] and again.resend == []


def test_a_cancel_requested_run_whose_worker_died_ends_cancelled(corral_env: Path) -> None:
    ensure_schema()
    (run_id,) = _runs(1)
    with session_scope() as s:
        run = claim_run(s, run_id)
        assert run is not None
        run.cancel_requested = True
        run.heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
    with session_scope() as s:
        assert reap_stale_runs(s, stale_after=30).failed == [run_id]
        assert s.get_one(Run, run_id).state is RunState.CANCELLED


def test_jobs_watchdog_records_its_actions_and_gives_queued_jobs_twice_as_long(
    corral_env: Path,
) -> None:
    ensure_schema()
    with session_scope() as s:
        corpus_id = get_or_create_corpus(s, "kb").id
        running, queued = (create_job(s, JobKind.INGEST, corpus_id, {}).id for _ in range(2))
    now = datetime.now(UTC)
    with session_scope() as s:
        job = get_job(s, running)
        job.state, job.heartbeat_at = JobState.RUNNING, now - timedelta(seconds=45)
        get_job(s, queued).created_at = now - timedelta(seconds=45)
    with session_scope() as s:
        first = reap_stale_jobs(s, stale_after=30, max_attempts=2, now=now)
    assert first.requeue == [running]  # the queued one is not 60 s old yet
    with session_scope() as s:
        second = reap_stale_jobs(s, stale_after=30, max_attempts=2, now=now + timedelta(seconds=40))
    assert set(second.requeue) == {queued} and second.failed == [running]
    with session_scope() as s:
        history = [w["action"] for w in get_job(s, running).params["watchdog"]]
        assert history == ["requeued", "failed"]
        assert get_job(s, running).state is JobState.FAILED
        assert get_job(s, queued).params["watchdog"][0]["action"] == "requeued"


def test_the_watchdogs_decisions_show_in_the_job_api(corral_env: Path) -> None:
    from fastapi.testclient import TestClient

    from corral.platform.api.app import create_app

    ensure_schema()
    with session_scope() as s:
        job = create_job(s, JobKind.INGEST, get_or_create_corpus(s, "kb").id, {})
        job.state, job.heartbeat_at, job_id = JobState.RUNNING, datetime.now(UTC) - timedelta(hours=1), job.id
    with session_scope() as s:
        assert reap_stale_jobs(s, stale_after=30, max_attempts=3).requeue == [job_id]
    # Without its lifespan: an embedded server starting would resume the job it finds running.
    body = TestClient(create_app(), base_url="http://127.0.0.1").get(f"/v1/jobs/{job_id}").json()
    assert [w["action"] for w in body["watchdog"]] == ["requeued"]
    assert "no heartbeat for 30s" in body["watchdog"][0]["reason"]


def test_a_second_message_for_a_running_job_does_not_run_it_twice(corral_env: Path) -> None:
    from corral.core.services.jobs import claim_job
    from corral.ingestion.pipeline import run_job

    ensure_schema()
    with session_scope() as s:
        job_id = create_job(s, JobKind.INGEST, get_or_create_corpus(s, "kb").id, {}).id
    with session_scope() as s:
        assert claim_job(s, job_id)  # the first message takes it
    with session_scope() as s:
        assert not claim_job(s, job_id)  # a copy sent while it waited does not
    assert run_job(job_id) is JobState.RUNNING  # ... and returns without running anything
    with session_scope() as s:  # its worker dies: the watchdog hands it out again, once
        get_job(s, job_id).heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
    with session_scope() as s:
        assert reap_stale_jobs(s, stale_after=30, max_attempts=3).requeue == [job_id]
    with session_scope() as s:
        assert claim_job(s, job_id)
    with session_scope() as s:
        assert not claim_job(s, job_id)


@pytest.mark.services
def test_corral_jobs_watchdog_also_fails_runs_whose_worker_died(
    corral_env: Path, postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from corral.core.db import migrate
    from corral.platform.cli.app import app
    from tests.conftest import clear_caches

    for key, value in {"CORRAL_MODE": "server", "CORRAL_DATABASE_URL": postgres_url,
                       "CORRAL_REDIS_URL": redis_url}.items():
        monkeypatch.setenv(key, value)
    clear_caches()
    migrate.upgrade()
    (run_id,) = _runs(1)
    with session_scope() as s:
        assert claim_run(s, run_id) is not None
        s.get_one(Run, run_id).heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
    result = CliRunner().invoke(app, ["jobs", "watchdog"])
    assert result.exit_code == 0, result.output
    assert "runs: failed 1, resent 0" in result.output and f"failed run {run_id}" in result.output
    with session_scope() as s:
        assert s.get_one(Run, run_id).state is RunState.FAILED
