"""Planning a job: list the source once, record one ``JobItem`` per document, remove the gone ones.

Planning is idempotent. Its writes commit in one transaction, so a job whose planning was
interrupted plans again from scratch; a job already planned (items exist) is not listed again —
running it again only hands out the batches that still have pending items.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral.core.db import Chunk, Document, Source
from corral.core.db.models import JobItem
from corral.core.services import ItemState, get_job, start_job
from corral.ingestion.pipeline.services import IngestServices
from corral.ingestion.sources.base import Source as DocumentSource
from corral.ingestion.sources.base import SourceDescription

__all__ = ["pending_batches", "plan_job", "source_row_for"]


def pending_batches(session: Session, job_id: str) -> list[int]:
    return list(session.scalars(
        select(JobItem.batch).where(JobItem.job_id == job_id, JobItem.state == ItemState.PENDING)
        .distinct().order_by(JobItem.batch)
    ))


def source_row_for(session: Session, corpus_id: int, desc: SourceDescription) -> Source:
    """The corpus's ``Source`` row for ``desc`` (kind and uri), created if new: the same source
    ingested again, or by two jobs at once, reuses one row (the insert runs in a savepoint; losing
    the race reads the winner's row)."""
    def find() -> Source | None:
        return session.scalar(select(Source).where(
            Source.corpus_id == corpus_id, Source.kind == desc.kind, Source.uri == desc.uri))

    row = find()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = Source(corpus_id=corpus_id, kind=desc.kind, uri=desc.uri, options={})
            session.add(row)
            session.flush()
    except IntegrityError:
        row = find()
        if row is None:
            raise
    return row


def plan_job(services: IngestServices, job_id: str, source: DocumentSource) -> list[int]:
    """Plan ``job_id`` (if not yet planned) and return the batch numbers that have pending items."""
    sf = services.session_factory
    with sf.begin() as session:
        job = get_job(session, job_id, for_update=True)
        start_job(session, job, job.total)
        job.phase = "listing"
        planned = session.scalar(select(JobItem.id).where(JobItem.job_id == job_id).limit(1))
        if planned is not None:
            job.phase = "indexing"
            return pending_batches(session, job_id)
        corpus_id = job.corpus_id
    if corpus_id is None:
        raise ValueError(f"job {job_id} has no corpus")

    desc = source.describe()
    listed: list[tuple[int, str]] = []
    for number, batch in enumerate(source.iter_batches(services.batch_size)):
        listed.extend((number, item.path) for item in batch)

    with sf.begin() as session:
        source_row = source_row_for(session, corpus_id, desc)
        source_row.commit = desc.commit
        source_row.options = dict(desc.options)
        source_row.last_synced_at = datetime.now(UTC)

        seen = {path for _, path in listed}
        gone = [
            (doc_id, path) for doc_id, path in session.execute(
                select(Document.id, Document.path).where(
                    Document.corpus_id == corpus_id, Document.source_id == source_row.id))
            if path not in seen
        ]
        if gone:
            gone_ids = [doc_id for doc_id, _ in gone]
            stale = list(session.scalars(select(Chunk.id).where(Chunk.document_id.in_(gone_ids))))
            # Vector store first: if the commit below fails, the next run finds the documents
            # still in SQL, still gone from the source, and deletes again.
            services.store.delete(corpus_id, stale)
            services.keyword.delete(corpus_id, stale)
            session.execute(delete(Chunk).where(Chunk.document_id.in_(gone_ids)))
            session.execute(delete(Document).where(Document.id.in_(gone_ids)))

        session.add_all(JobItem(job_id=job_id, batch=number, path=path, state=ItemState.PENDING,
                                attempts=0) for number, path in listed)
        session.add_all(JobItem(job_id=job_id, batch=-1, path=path, state=ItemState.REMOVED,
                                attempts=0) for _, path in gone)
        job = get_job(session, job_id, for_update=True)
        job.params = {**job.params, "source_id": source_row.id}
        job.total = len(listed)
        job.phase = "indexing"
    return sorted({number for number, _ in listed})
