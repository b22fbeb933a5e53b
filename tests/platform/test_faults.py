"""Fault tolerance for real: Redis, PostgreSQL, a Chroma server and separate `corral worker`
processes. A worker killed with SIGKILL mid-job loses nothing: a new worker's watchdog requeues the
job, it completes, and its chunk ids equal a clean run's in SQL, Chroma and the keyword index.
Running the same ingest again changes nothing."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.platform.conftest import enter_server_mode, start_worker, stop_worker

pytestmark = pytest.mark.services
BIN = Path(sys.executable).parent
N_FILES = 24


@pytest.fixture
def server_env(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str,
    chroma_server: int,
) -> dict[str, str]:
    # One document per batch task, so the job is many tasks long and can be killed mid-way; a short
    # heartbeat period, so the watchdog notices a dead worker within seconds.
    return enter_server_mode(monkeypatch, postgres_url, redis_url, chroma_server,
                             CORRAL_INGEST_BATCH_SIZE="1", CORRAL_JOB_STALE_SECONDS="4",
                             CORRAL_JOB_MAX_ATTEMPTS="5")


def _wait(job_id: str, until: Callable[[object], bool], timeout: float, log: Path) -> object:
    from corral.core.db import session_scope
    from corral.core.services import get_job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as s:
            job = get_job(s, job_id)
            if until(job):
                return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there in {timeout}s:\n{log.read_text()[-4000:]}")


def _chunk_ids(corpus: str) -> tuple[int, dict[str, tuple[str, str, int]]]:
    """The corpus id and {chunk id: (path, document hash, ordinal)} from SQL."""
    from corral.core.db import Chunk, Document, session_scope
    from corral.core.services import get_corpus

    with session_scope() as s:
        corpus_id = get_corpus(s, corpus).id
        rows = s.execute(select(Chunk.id, Document.path, Document.content_hash, Chunk.ordinal)
                         .join(Document).where(Document.corpus_id == corpus_id)).all()
    return corpus_id, {cid: (p, h, o) for cid, p, h, o in rows}


def test_worker_killed_mid_job_loses_nothing_and_duplicates_nothing(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    from corral.core.db import JobState
    from corral.core.index import get_keyword_index, get_vector_store
    from corral.ingestion.ingest import submit_ingest
    from corral.ingestion.pipeline import chunk_id
    from corral.ingestion.sources import PathSpec

    root = tmp_path / "kb"
    root.mkdir()
    for i in range(N_FILES):
        (root / f"note{i:03d}.md").write_text(
            f"# Note {i}\n\nThe token for note {i} is zq{i}marker. " + "Filler sentence. " * 40 + "\n")

    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    worker_a = start_worker(server_env, log_a)
    try:
        job_id = submit_ingest("kb", PathSpec(root))
        _wait(job_id, lambda j: j.done >= 4, 120, log_a)  # type: ignore[attr-defined]
        worker_a.send_signal(signal.SIGKILL)
        worker_a.wait(timeout=30)
    finally:
        stop_worker(worker_a)
    from corral.core.db import session_scope
    from corral.core.services import get_job

    with session_scope() as s:
        killed_at = get_job(s, job_id).done
    assert killed_at < N_FILES, "the job finished before the worker was killed: make it longer"

    worker_b = start_worker(server_env, log_b)
    try:
        job = _wait(job_id, lambda j: j.state.finished, 240, log_b)  # type: ignore[attr-defined]
        assert job.state is JobState.SUCCEEDED, (job.error, log_b.read_text()[-4000:])  # type: ignore[attr-defined]
        assert job.result["indexed"] == N_FILES and job.result["failed"] == 0  # type: ignore[attr-defined]
        assert "requeued" in log_b.read_text()

        clean_id = submit_ingest("clean", PathSpec(root))
        clean = _wait(clean_id, lambda j: j.state.finished, 240, log_b)
        assert clean.state is JobState.SUCCEEDED  # type: ignore[attr-defined]

        corpus_id, kb = _chunk_ids("kb")
        clean_corpus_id, clean_rows = _chunk_ids("clean")
        # Same files, same ids but for the corpus id they are salted with.
        assert {chunk_id(clean_corpus_id, *row) for row in kb.values()} == set(clean_rows)
        assert len(kb) == len(clean_rows) >= N_FILES
        store = get_vector_store()
        assert store.count(corpus_id) == len(kb)  # nothing duplicated in Chroma
        assert set(store.get_embeddings(corpus_id, list(kb))) == set(kb)  # nothing lost
        keyword = get_keyword_index()
        for i in (0, killed_at, N_FILES - 1):
            hits = keyword.search(corpus_id, f"zq{i}marker", 5)
            assert [h.metadata["path"] for h in hits] == [f"kb/note{i:03d}.md"]
            assert hits[0].chunk_id in kb

        # The same ingest again: every document unchanged, nothing rewritten.
        again_id = submit_ingest("kb", PathSpec(root))
        again = _wait(again_id, lambda j: j.state.finished, 240, log_b)
        assert again.result["unchanged"] == N_FILES and again.result["indexed"] == 0  # type: ignore[attr-defined]
        assert _chunk_ids("kb") == (corpus_id, kb) and store.count(corpus_id) == len(kb)
    finally:
        stop_worker(worker_b)
