"""Indexing one batch of a job: read, parse, chunk, count, embed, write — idempotently.

Order of writes, and why re-running any batch at any point is harmless:

1. the vector store: stale chunks deleted, new ones upserted by deterministic id (corpus, path,
   document content hash, ordinal);
2. one SQL transaction: the documents, their chunks (the keyword index follows the chunk rows inside
   this same transaction) and the images their OCR'd chunks cite, the job items' outcomes and the
   job's counters.

A crash before (2) commits leaves the items pending and SQL unchanged: the batch runs again, finds
the same ids, and overwrites what (1) wrote. Items already finished are never redone.

A document that cannot be read, parsed or chunked is recorded as skipped or failed with the reason
and the batch goes on; errors that concern the batch as a whole (the database or vector store
unreachable, the embedding model broken) propagate, for the task to retry.

A cancel does not wait for the batch to end: between documents, and between groups of chunks while
embedding, a :class:`~corral.ingestion.pipeline.checkpoint.Checkpoint` looks for it (beating the
job's heartbeat as it goes). What was read and embedded by then is written; the rest is cancelled.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from corral.core.db import Chunk, Corpus, Document, DocumentStatus, Workspace
from corral.core.db.models import DocumentImage, Job, JobItem
from corral.core.index import IndexedChunk
from corral.core.redaction import count_redactions
from corral.core.services import ItemState, get_job, item_counts
from corral.core.services.jobs import heartbeat
from corral.ingestion.chunking import Span, chunk_document
from corral.ingestion.embedding import EmbedStats, content_hash, embed_deduplicated
from corral.ingestion.parsing.read import ParsedDocument, Rejected, parse_document
from corral.ingestion.pipeline.checkpoint import Checkpoint
from corral.ingestion.pipeline.services import IngestServices
from corral.ingestion.safety import clean_document
from corral.ingestion.sources.base import DocumentTooLargeError, SourceDocument, SourceProblem
from corral.ingestion.sources.spec import open_spec, spec_from_params

__all__ = ["EMBED_GROUP", "MAX_ITEM_ATTEMPTS", "BatchResult", "chunk_id", "chunk_metadata", "fail_batch",
           "index_batch"]

log = logging.getLogger(__name__)
_MAX_ERROR_CHARS = 2000
MAX_ITEM_ATTEMPTS = 3
# Chunks embedded between two looks for a cancel: big enough to batch well on the model, small
# enough (seconds on a CPU) that a cancel of a batch holding one huge document is prompt.
EMBED_GROUP = 256
_CANCELLED = "job cancelled"


def chunk_id(corpus_id: int, path: str, document_hash: str, ordinal: int) -> str:
    """A chunk's id: the same document content at the same path always gives the same ids."""
    return hashlib.sha256(f"{corpus_id}\0{path}\0{document_hash}\0{ordinal}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class BatchResult:
    documents: int = 0
    chunks: int = 0
    failed: int = 0
    last_path: str = ""
    embed: EmbedStats = field(default_factory=EmbedStats)


@dataclass(slots=True)
class _Outcome:
    path: str
    state: str
    error: str | None = None
    parsed: ParsedDocument | None = None
    rejected: Rejected | None = None
    spans: list[Span] = field(default_factory=list)
    redacted: list[int] = field(default_factory=list)  # credentials found in each span


def index_batch(services: IngestServices, job_id: str, batch: int) -> BatchResult:
    """Index the pending items of batch ``batch`` of ``job_id`` (nothing if the job is finished)."""
    sf = services.session_factory
    with sf.begin() as session:
        job = get_job(session, job_id)
        if job.state.finished:
            return BatchResult()
        paths = list(session.scalars(
            select(JobItem.path).where(JobItem.job_id == job_id, JobItem.batch == batch,
                                       JobItem.state == ItemState.PENDING).order_by(JobItem.path)))
        if job.cancel_requested:
            _mark(session, job_id, batch, paths, ItemState.CANCELLED, _CANCELLED)
            return BatchResult(documents=len(paths))
        # A document whose batch was started this often and never finished takes its worker down
        # (a parser crash, memory): it fails alone instead of stopping the job forever.
        poison = list(session.scalars(
            select(JobItem.path).where(JobItem.job_id == job_id, JobItem.batch == batch,
                                       JobItem.state == ItemState.PENDING,
                                       JobItem.attempts >= MAX_ITEM_ATTEMPTS)))
        if poison:
            _mark(session, job_id, batch, poison, ItemState.FAILED,
                  f"indexing was interrupted {MAX_ITEM_ATTEMPTS} times (the worker stopped or "
                  "crashed while on this batch)")
            paths = [p for p in paths if p not in set(poison)]
        # Started before and never finished: go one document at a time this run, so that a
        # document that kills its worker is found out and fails alone.
        retrying = bool(session.scalar(select(func.max(JobItem.attempts)).where(
            JobItem.job_id == job_id, JobItem.batch == batch, JobItem.state == ItemState.PENDING)))
        if not retrying:
            _count_attempt(session, job_id, batch, paths)
        if job.corpus_id is None:
            raise ValueError(f"job {job_id} has no corpus")
        corpus_id, params = job.corpus_id, dict(job.params)
    if not paths:
        return BatchResult()
    # Attempts count starts that never finished — a crash. A batch that ends with an error (a
    # service briefly down, retried by its task) finished: its attempts are given back.
    counted = [] if retrying else list(paths)
    try:
        return _index_paths(services, job_id, batch, corpus_id, params, paths, retrying, counted)
    except Exception:
        try:
            with sf.begin() as session:
                _count_attempt(session, job_id, batch, counted, -1)
        except Exception as exc:
            log.warning("could not give back the attempts of job %s batch %d: %r", job_id, batch, exc)
        raise


def _index_paths(
    services: IngestServices, job_id: str, batch: int, corpus_id: int, params: dict[str, Any],
    paths: list[str], retrying: bool, counted: list[str],
) -> BatchResult:
    """Index ``paths`` (all at once, or one at a time when ``retrying``); ``counted`` holds the
    paths whose attempt is counted and not yet finished."""
    sf = services.session_factory
    source_id = params.get("source_id")
    source = open_spec(spec_from_params(params), refresh=False)
    with sf.begin() as session:
        kept = _kept_secrets(session, corpus_id, paths)
        known_docs = {
            d.path: (d.status, d.content_hash, kept.get(d.path))
            for d in session.scalars(select(Document).where(
                Document.corpus_id == corpus_id, Document.path.in_(paths)))
        }
        keep = bool(session.scalar(select(Workspace.keep_secrets).join(
            Corpus, Corpus.workspace_id == Workspace.id).where(Corpus.id == corpus_id)))
    check = Checkpoint(sf, job_id, services.checkpoint_seconds)
    if not retrying:
        outcomes: list[_Outcome] = []
        for p in paths:
            if check.cancelled():
                break
            outcomes.append(_read_one(services, source.open_document(p), known_docs.get(p), keep))
        return _write(services, job_id, batch, corpus_id, source_id, outcomes, check,
                      unread=paths[len(outcomes):])
    total = BatchResult(last_path=paths[-1] if paths else "")
    for n, path in enumerate(paths):
        if check.cancelled():
            with sf.begin() as session:
                _mark(session, job_id, batch, paths[n:], ItemState.CANCELLED, _CANCELLED)
            total.documents += len(paths) - n
            break
        with sf.begin() as session:
            _count_attempt(session, job_id, batch, [path])
        counted[:] = [path]
        one = _write(services, job_id, batch, corpus_id, source_id,
                     [_read_one(services, source.open_document(path), known_docs.get(path), keep)],
                     check)
        total.documents += one.documents
        total.chunks += one.chunks
        total.failed += one.failed
        total.embed.embedded += one.embed.embedded
    return total


def _count_attempt(session: Session, job_id: str, batch: int, paths: list[str], by: int = 1) -> None:
    if paths:
        session.execute(update(JobItem).where(JobItem.job_id == job_id, JobItem.batch == batch,
                                              JobItem.path.in_(paths), JobItem.state == ItemState.PENDING)
                        .values(attempts=JobItem.attempts + by))


def _kept_secrets(session: Session, corpus_id: int, paths: list[str]) -> dict[str, bool]:
    """For the documents among ``paths`` whose stored text had credentials: whether they were kept
    (the workspace kept secrets then) rather than redacted. Redacted text holds a marker for each one
    found; kept text holds the credentials themselves."""
    found: dict[str, int] = {path: int(n) for path, n in session.execute(
        select(Document.path, func.sum(Chunk.redacted)).join(Chunk)
        .where(Document.corpus_id == corpus_id, Document.path.in_(paths), Chunk.redacted > 0)
        .group_by(Document.path))}
    texts: dict[str, list[str]] = {}
    if found:
        for path, text in session.execute(
                select(Document.path, Chunk.text).join(Chunk)
                .where(Document.corpus_id == corpus_id, Document.path.in_(list(found)))
                .order_by(Document.path, Chunk.ordinal)):
            texts.setdefault(path, []).append(text)
    return {path: count_redactions("".join(texts.get(path, []))) < n for path, n in found.items()}


def _unchanged(known: tuple[DocumentStatus, str, bool | None] | None, content_hash: str | None,
               keep: bool) -> bool:
    """Whether a document indexed as ``known`` stands as it is: same content (``None``: already
    checked) and, when it holds credentials, stored as the workspace's secrets setting says now."""
    return (known is not None and known[0] is DocumentStatus.INDEXED
            and (content_hash is None or known[1] == content_hash) and known[2] in (None, keep))


def _read_one(
    services: IngestServices, item: SourceDocument | SourceProblem,
    known: tuple[DocumentStatus, str, bool | None] | None, keep: bool,
) -> _Outcome:
    if isinstance(item, SourceProblem):
        return _Outcome(item.path, item.status.value, item.reason)
    try:
        if known is not None and _unchanged(known, None, keep) and _same_bytes(
                item, known[1], services.max_file_bytes):
            return _Outcome(item.path, ItemState.UNCHANGED)
        parsed = parse_document(item, services.max_file_bytes)
        if isinstance(parsed, Rejected):
            return _Outcome(item.path, parsed.status.value, parsed.reason, rejected=parsed)
        if _unchanged(known, parsed.content_hash, keep):
            return _Outcome(item.path, ItemState.UNCHANGED)
        # Credentials leave the text before it is chunked: no stored text ever holds one.
        cleaned = clean_document(parsed, item.path, keep=keep)
        parsed = cleaned.parsed
        spans = chunk_document(parsed, services.chunk_chars)
    except Exception as exc:  # one bad document never stops the batch
        log.exception("indexing %s failed", item.path)
        return _Outcome(item.path, ItemState.FAILED, f"internal error while indexing: {exc!r}"[
            :_MAX_ERROR_CHARS])
    return _Outcome(item.path, ItemState.INDEXED, parsed=parsed, spans=spans,
                    redacted=cleaned.counts(spans))


def _same_bytes(item: SourceDocument, content_hash: str, max_bytes: int) -> bool:
    """Whether the document's bytes still hash to ``content_hash``: unchanged documents are
    recognised without parsing them (a PDF's parse costs far more than its hash)."""
    if item.size_bytes > max_bytes:
        return False
    try:
        return hashlib.sha256(item.read_bytes(max_bytes)).hexdigest() == content_hash
    except (OSError, DocumentTooLargeError):
        return False  # the parser reads it again and records why it cannot


def _known_vectors(services: IngestServices, corpus_id: int, hashes: list[str]) -> dict[str, list[float]]:
    """Vectors already stored in this corpus for any of these chunk content hashes."""
    if not hashes:
        return {}
    by_id: dict[str, str] = {}
    with services.session_factory() as session:
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):
            rows = session.execute(
                select(Chunk.content_hash, func.min(Chunk.id)).join(Document)
                .where(Document.corpus_id == corpus_id,
                       Chunk.content_hash.in_(unique[start : start + 500]))
                .group_by(Chunk.content_hash)
            ).all()
            by_id.update({cid: digest for digest, cid in rows})
    vectors = services.store.get_embeddings(corpus_id, list(by_id))
    return {by_id[cid]: vec for cid, vec in vectors.items()}


class _Located(Protocol):
    @property
    def ordinal(self) -> int: ...
    @property
    def start_line(self) -> int: ...
    @property
    def end_line(self) -> int: ...
    @property
    def symbol(self) -> str | None: ...
    @property
    def symbol_kind(self) -> str | None: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def page(self) -> int | None: ...
    @property
    def image_ref(self) -> str | None: ...


def chunk_metadata(path: str, kind: str, chunk: _Located) -> dict[str, str | int | float | bool]:
    """What the vector store keeps beside a chunk's vector (a span being indexed, or a chunk row
    whose vector is rebuilt): where it is, and what it is (``image_ref`` for text read by OCR)."""
    metadata: dict[str, str | int | float | bool] = {
        "path": path, "ordinal": chunk.ordinal, "start_line": chunk.start_line,
        "end_line": chunk.end_line, "kind": kind,
    }
    for name, value in (("symbol", chunk.symbol), ("symbol_kind", chunk.symbol_kind),
                        ("parent", chunk.parent), ("page", chunk.page),
                        ("image_ref", chunk.image_ref)):
        if value is not None:
            metadata[name] = value
    return metadata


def _embed(
    services: IngestServices, corpus_id: int, outcomes: list[_Outcome], check: Checkpoint | None,
    stats: EmbedStats,
) -> tuple[int, list[list[float]]]:
    """Embed the indexed outcomes' chunks in groups of :data:`EMBED_GROUP`, looking for a cancel
    between groups. Returns how many leading outcomes were embedded whole, and their vectors."""
    indexed = [o.spans if o.state == ItemState.INDEXED and o.parsed is not None else []
               for o in outcomes]
    texts = [span.text for spans in indexed for span in spans]
    hashes = [content_hash(t) for t in texts]
    known = _known_vectors(services, corpus_id, hashes)
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBED_GROUP):
        if start and check is not None and check.cancelled():
            break
        group = embed_deduplicated(services.embedder, texts[start : start + EMBED_GROUP],
                                   hashes[start : start + EMBED_GROUP], known, stats)
        known.update(zip(hashes[start : start + EMBED_GROUP], group, strict=True))  # later groups reuse
        vectors.extend(group)
    covered = end = 0
    for spans in indexed:  # the outcomes all of whose chunks have vectors, in order
        if end + len(spans) > len(vectors):
            break
        end += len(spans)
        covered += 1
    return covered, vectors[:end]


def _write(
    services: IngestServices, job_id: str, batch: int, corpus_id: int, source_id: int | None,
    outcomes: list[_Outcome], check: Checkpoint | None = None, unread: list[str] | None = None,
) -> BatchResult:
    """Embed and write ``outcomes``; the documents a cancel kept from being embedded, and the
    ``unread`` paths, are recorded as cancelled."""
    result = BatchResult(documents=len(outcomes) + len(unread or []),
                         last_path=outcomes[-1].path if outcomes else "")
    covered, vectors = _embed(services, corpus_id, outcomes, check, result.embed)
    cancelled = [o.path for o in outcomes[covered:]] + list(unread or [])
    outcomes = outcomes[:covered]
    indexed = [o for o in outcomes if o.state == ItemState.INDEXED and o.parsed is not None]
    texts = [span.text for o in indexed for span in o.spans]
    hashes = [content_hash(t) for t in texts]
    chunk_tokens = services.token_counter.count(texts)
    doc_tokens = services.token_counter.count([o.parsed.text for o in indexed if o.parsed])

    records: list[IndexedChunk] = []
    rows: dict[str, list[Chunk]] = {}
    cursor = 0
    for o in indexed:
        assert o.parsed is not None
        chunks = rows.setdefault(o.path, [])
        for span, secrets in zip(o.spans, o.redacted, strict=True):
            cid = chunk_id(corpus_id, o.path, o.parsed.content_hash, span.ordinal)
            records.append(IndexedChunk(id=cid, text=span.text, embedding=vectors[cursor],
                                        metadata=chunk_metadata(o.path, o.parsed.kind.kind, span)))
            chunks.append(Chunk(
                id=cid, ordinal=span.ordinal, start_line=span.start_line, end_line=span.end_line,
                char_start=span.char_start, char_end=span.char_end, symbol=span.symbol,
                symbol_kind=span.symbol_kind, parent=span.parent,
                unit_start_line=span.unit_start_line, unit_end_line=span.unit_end_line,
                page=span.page, redacted=secrets, image_ref=span.image_ref,
                bbox=list(span.bbox) if span.bbox is not None else None,
                token_count=chunk_tokens[cursor], text=span.text, content_hash=hashes[cursor],
            ))
            cursor += 1
    new_ids = {r.id for r in records}

    sf = services.session_factory
    with sf.begin() as session:
        touched = [o for o in outcomes if o.state != ItemState.UNCHANGED]
        docs = {d.path: d for d in session.scalars(select(Document).where(
            Document.corpus_id == corpus_id, Document.path.in_([o.path for o in touched])))}
        stale = [cid for cid in session.scalars(select(Chunk.id).where(
            Chunk.document_id.in_([d.id for d in docs.values()]))) if cid not in new_ids]
        # Vector store before the SQL commit (see the module docstring).
        services.store.delete(corpus_id, stale)
        services.store.upsert(corpus_id, records)
        services.keyword.delete(corpus_id, stale)
        services.keyword.upsert(corpus_id, records)
        if docs:
            session.execute(delete(Chunk).where(Chunk.document_id.in_([d.id for d in docs.values()])))
            # Replaced, not merged: a re-ingest stores the same refs again (unique per document).
            session.execute(delete(DocumentImage).where(
                DocumentImage.document_id.in_([d.id for d in docs.values()])))
        tokens = iter(doc_tokens)
        for o in touched:
            doc = docs.get(o.path)
            if doc is None:
                doc = Document(corpus_id=corpus_id, path=o.path)
                session.add(doc)
            doc.source_id = source_id
            if o.parsed is not None:
                _fill_indexed(doc, o.parsed, next(tokens))
            else:
                _fill_rejected(doc, o)
            doc.chunks = rows.get(o.path, [])
            doc.images = [
                DocumentImage(ref=im.ref, page=im.page, mime=im.mime, width=im.width,
                              height=im.height, data=im.data)
                for im in (o.parsed.images if o.parsed is not None else ())
            ]
        by_outcome: dict[tuple[str, str | None], list[str]] = {}
        for o in outcomes:
            by_outcome.setdefault((o.state, o.error), []).append(o.path)
        if cancelled:
            by_outcome[(ItemState.CANCELLED, _CANCELLED)] = cancelled
        for (state, error), item_paths in by_outcome.items():
            session.execute(update(JobItem).where(JobItem.job_id == job_id,
                                                  JobItem.path.in_(item_paths))
                            .values(state=state, error=error))
        result.chunks = len(records)
        result.failed = sum(o.state == ItemState.FAILED for o in outcomes)
        _update_counters(session, job_id, embedded=result.embed.embedded)
    return result


def _fill_indexed(doc: Document, parsed: ParsedDocument, n_tokens: int) -> None:
    doc.kind = parsed.kind.kind
    doc.language = parsed.kind.language
    doc.title = parsed.title[:512] if parsed.title else None
    doc.page_count = parsed.page_count
    doc.content_hash = parsed.content_hash
    doc.size_bytes = parsed.size_bytes
    doc.line_count = parsed.line_count
    doc.token_count = n_tokens
    doc.status = DocumentStatus.INDEXED
    doc.error = None


def _fill_rejected(doc: Document, o: _Outcome) -> None:
    rejected = o.rejected
    doc.kind = rejected.kind.kind if rejected else "unknown"
    doc.language = rejected.kind.language if rejected else None
    doc.title = None
    doc.page_count = None
    doc.content_hash = rejected.content_hash if rejected else ""
    doc.size_bytes = rejected.size_bytes if rejected else 0
    doc.line_count = 0
    doc.token_count = 0
    doc.status = DocumentStatus(o.state)
    doc.error = o.error


def _update_counters(session: Session, job_id: str, embedded: int = 0) -> None:
    """Recount the job's progress from its items (idempotent, unlike increments) and beat.

    ``embedded`` (texts the model ran on) is the one count items cannot give back; it is added in
    the transaction that finishes those items, which are never redone, so a re-run adds nothing.
    The row lock keeps two batches finishing together from losing an addition.
    """
    counts = item_counts(session, job_id)
    job = get_job(session, job_id, for_update=True) if embedded else session.get_one(Job, job_id)
    job.done = sum(n for state, n in counts.items() if state not in (ItemState.PENDING,
                                                                      ItemState.REMOVED))
    job.failed = counts.get(ItemState.FAILED, 0)
    job.skipped = counts.get(ItemState.SKIPPED, 0)
    if embedded:
        job.params = {**job.params, "embedded": int(job.params.get("embedded", 0)) + embedded}
    heartbeat(session, job_id)


def _mark(session: Session, job_id: str, batch: int, paths: list[str], state: str,
          error: str) -> None:
    session.execute(update(JobItem).where(JobItem.job_id == job_id, JobItem.batch == batch,
                                          JobItem.path.in_(paths)).values(state=state, error=error))
    _update_counters(session, job_id)


def fail_batch(services: IngestServices, job_id: str, batch: int, error: str) -> None:
    """Record a batch that failed for good (retries spent): its pending items fail with ``error``;
    the documents keep whatever they had indexed before, and the job goes on."""
    with services.session_factory.begin() as session:
        paths = list(session.scalars(
            select(JobItem.path).where(JobItem.job_id == job_id, JobItem.batch == batch,
                                       JobItem.state == ItemState.PENDING)))
        _mark(session, job_id, batch, paths, ItemState.FAILED, error[:_MAX_ERROR_CHARS])
