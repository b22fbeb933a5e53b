"""Concurrent requests on one corpus, on PostgreSQL and on embedded SQLite: two requests creating the
same new corpus both succeed with one row; two ingests of one corpus at once make exactly one job
(the other is a conflict naming it); the same source recorded twice at once is one row."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from corral.core.config import get_settings
from corral.core.db import Corpus, Job, SourceKind, get_sessionmaker, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.errors import ConflictError
from corral.core.services import get_or_create_corpus

THREADS = 6


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, corral_env: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "postgresql":
        monkeypatch.setenv("CORRAL_DATABASE_URL", request.getfixturevalue("postgres_url"))
    get_settings.cache_clear()
    ensure_schema()
    yield request.param


def _race(n: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(i)`` in ``n`` threads released together; their results and errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            value = work(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors


def test_concurrent_creation_of_one_corpus_never_fails(database: str) -> None:
    for round_ in range(3):
        name = f"fresh-{round_}"

        def create(_: int, name: str = name) -> int:
            with session_scope() as s:
                return get_or_create_corpus(s, name).id

        ids, errors = _race(THREADS, create)
        assert errors == [], errors
        assert len(ids) == THREADS and len(set(ids)) == 1
        with session_scope() as s:
            assert s.scalar(select(func.count()).select_from(Corpus).where(Corpus.name == name)) == 1


def test_concurrent_ingests_of_one_corpus_make_exactly_one_job(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion import ingest as ingest_module
    from corral.ingestion.sources import PathSpec

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n")
    monkeypatch.setattr(ingest_module, "hand_off", lambda job_id: None)  # jobs stay queued
    with session_scope() as s:
        get_or_create_corpus(s, "existing")
    for corpus in ("new-corpus", "existing", "new-corpus-2"):
        ids, errors = _race(THREADS, lambda _, c=corpus: ingest_module.submit_ingest(c, PathSpec(docs)))
        assert len(ids) == 1, (ids, errors)
        assert len(errors) == THREADS - 1
        assert all(isinstance(e, ConflictError) and e.job_id == ids[0] for e in errors), errors
        assert all(ids[0] in str(e) for e in errors)
        with session_scope() as s:
            jobs = s.scalars(select(Job).join(Corpus).where(Corpus.name == corpus)).all()
            assert [j.id for j in jobs] == ids


def test_one_source_recorded_at_once_by_two_jobs_is_one_row(database: str) -> None:
    from corral.ingestion.pipeline.plan import source_row_for
    from corral.ingestion.sources import SourceDescription

    with session_scope() as s:
        corpus_id = get_or_create_corpus(s, "kb").id
    desc = SourceDescription(SourceKind.PATH, "/srv/docs")

    def record(_: int) -> int:
        with get_sessionmaker().begin() as s:
            return source_row_for(s, corpus_id, desc).id

    ids, errors = _race(THREADS, record)
    assert errors == [] and len(set(ids)) == 1
    with get_sessionmaker().begin() as s:
        assert source_row_for(s, corpus_id, desc).id == ids[0]  # and again, later
