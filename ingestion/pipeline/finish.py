"""Finishing a job once no item is pending: corpus totals, the report, the final state.

Whichever batch finishes last finishes the job; the job row is locked (PostgreSQL) while it does, and
a job already finished is left alone, so two batches finishing together finish it once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.core.db import Chunk, Corpus, Document, DocumentStatus, Job, JobState, Source
from corral.core.db.models import JobItem
from corral.core.services import ItemState, finish_job, get_job, item_counts
from corral.core.services.jobs import cancel_message
from corral.ingestion.pipeline.report import FileOutcome, IngestReport
from corral.ingestion.pipeline.services import IngestServices
from corral.ingestion.sources.spec import discard_upload

__all__ = ["build_report", "finish_if_done", "refresh_corpus_totals"]

log = logging.getLogger(__name__)

_MAX_PROBLEMS = 10_000


def refresh_corpus_totals(session: Session, corpus_id: int) -> tuple[int, int]:
    """Set the corpus's document and token counts from its indexed documents; returns them."""
    count, tokens = session.execute(
        select(func.count(Document.id), func.coalesce(func.sum(Document.token_count), 0)).where(
            Document.corpus_id == corpus_id, Document.status == DocumentStatus.INDEXED)
    ).one()
    corpus = session.get_one(Corpus, corpus_id)
    corpus.document_count, corpus.token_count = int(count), int(tokens)
    return corpus.document_count, corpus.token_count


def build_report(session: Session, job: Job) -> IngestReport:
    """The job's report from its items and the documents they indexed."""
    corpus = session.get(Corpus, job.corpus_id) if job.corpus_id is not None else None
    source_id = job.params.get("source_id")
    source = session.get(Source, source_id) if isinstance(source_id, int) else None
    # The Source row's uri, not the job's: a git URL's password is redacted there.
    report = IngestReport(corpus=corpus.name if corpus else "", root=source.uri if source else "",
                          job_id=job.id, embedded=int(job.params.get("embedded", 0)))
    counts = item_counts(session, job.id)
    report.indexed = counts.get(ItemState.INDEXED, 0)
    report.unchanged = counts.get(ItemState.UNCHANGED, 0)
    report.skipped = counts.get(ItemState.SKIPPED, 0)
    report.failed = counts.get(ItemState.FAILED, 0)
    report.removed = counts.get(ItemState.REMOVED, 0)
    report.cancelled = counts.get(ItemState.CANCELLED, 0)
    indexed_paths = select(JobItem.path).where(JobItem.job_id == job.id,
                                               JobItem.state == ItemState.INDEXED)
    if job.corpus_id is not None:
        in_job = (Document.corpus_id == job.corpus_id) & Document.path.in_(indexed_paths)
        report.tokens = int(session.scalar(
            select(func.coalesce(func.sum(Document.token_count), 0)).where(in_job)) or 0)
        report.chunks = int(session.scalar(
            select(func.count(Chunk.id)).join(Document).where(in_job)) or 0)
        report.corpus_documents, report.corpus_tokens = refresh_corpus_totals(session, job.corpus_id)
    report.problems = [
        FileOutcome(path, state, error)
        for path, state, error in session.execute(
            select(JobItem.path, JobItem.state, JobItem.error)
            .where(JobItem.job_id == job.id,
                   JobItem.state.in_([ItemState.SKIPPED, ItemState.FAILED]))
            .order_by(JobItem.path).limit(_MAX_PROBLEMS))
    ]
    if job.started_at is not None:
        started = job.started_at.replace(tzinfo=job.started_at.tzinfo or UTC)
        report.seconds = round(max(0.0, (datetime.now(UTC) - started).total_seconds()), 3)
    return report


def finish_if_done(services: IngestServices, job_id: str) -> JobState | None:
    """Finish ``job_id`` if none of its items is pending; its final state, or ``None`` if not done."""
    with services.session_factory.begin() as session:
        job = get_job(session, job_id, for_update=True)
        if job.state.finished:
            return job.state
        pending = session.scalar(select(JobItem.id).where(
            JobItem.job_id == job_id, JobItem.state == ItemState.PENDING).limit(1))
        if pending is not None:
            return None
        report = build_report(session, job)
        state = JobState.CANCELLED if job.cancel_requested else JobState.SUCCEEDED
        job.phase = "done"
        finish_job(session, job, state, result=report.to_dict(),
                   error=cancel_message(session, job) if state is JobState.CANCELLED else None)
    discard_upload(job.params)
    log.info("ingest job %s %s: %d indexed, %d unchanged, %d failed, %d removed", job_id,
             state.value, report.indexed, report.unchanged, report.failed, report.removed)
    return state
