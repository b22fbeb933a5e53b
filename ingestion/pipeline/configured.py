"""The pipeline wired to the configured services: what the CLI, the API and the worker all run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.core.config import get_settings
from corral.core.db import JobKind, JobState, SourceKind, get_sessionmaker
from corral.core.errors import CorralError, IngestError, InvalidInputError
from corral.core.index import get_keyword_index, get_vector_store
from corral.core.services import create_job, get_job, get_or_create_corpus
from corral.ingestion.embedding import get_embedder
from corral.ingestion.pipeline.jobs import run_ingest_job
from corral.ingestion.pipeline.report import IngestReport, ProgressCallback
from corral.ingestion.pipeline.services import IngestServices
from corral.ingestion.pipeline.source import source_params
from corral.ingestion.sources import parse_git_uri
from corral.ingestion.tokens import get_token_counter

__all__ = ["configured_services", "ingest_configured", "job_params"]


def configured_services() -> IngestServices:
    """The configured database, stores and models (each loaded once per process)."""
    settings = get_settings()
    return IngestServices(
        session_factory=get_sessionmaker(),
        embedder=get_embedder(),
        store=get_vector_store(),
        keyword=get_keyword_index(),
        token_counter=get_token_counter(),
        max_file_bytes=settings.max_file_bytes,
        chunk_chars=settings.chunk_chars,
        batch_size=settings.ingest_batch_size,
        heartbeat_seconds=max(0.5, settings.job_stale_seconds / 4),
    )


def job_params(corpus: str, path: Path | str, kind: SourceKind | str = SourceKind.PATH,
               options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters an ingest job records for a source. Checked: a path must exist, a git URL
    must have an allowed scheme; nothing is cloned or listed yet."""
    params: dict[str, Any] = {"corpus": corpus, **source_params(kind, str(path), options)}
    if params["kind"] == SourceKind.GIT.value:
        settings = get_settings()
        parse_git_uri(params["uri"], settings.ingest_allowed_roots,
                      development=settings.environment == "development")
    elif not Path(params["uri"]).exists():
        raise InvalidInputError(f"path does not exist: {params['uri']}")
    return params


def ingest_configured(
    corpus: str, path: Path | str, progress: ProgressCallback | None = None, *,
    kind: SourceKind | str = SourceKind.PATH, options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Index a source (by default the folder or file ``path``) into ``corpus`` here and now, as a job
    recorded like any other."""
    params = job_params(corpus, path, kind, options)
    services = configured_services()
    with services.session_factory.begin() as session:
        corpus_row = get_or_create_corpus(session, corpus)
        job_id = create_job(session, JobKind.INGEST, corpus_row.id, params).id
    state = run_ingest_job(services, job_id, progress=progress)
    with services.session_factory() as session:
        job = get_job(session, job_id)
        if state is not JobState.SUCCEEDED or job.result is None:
            raise (IngestError if state is JobState.FAILED else CorralError)(
                f"ingest job {job_id} {state.value}: {job.error}")
        return IngestReport.from_dict(job.result)
