"""Index a folder or file into a corpus.

Contract:

* Every file ends in exactly one outcome: ``indexed``, ``unchanged`` (same content hash as last
  time), ``skipped`` (deliberately not indexed, with the reason), ``failed`` (could not be indexed,
  with the reason) — or ``removed`` when a file indexed from this source before is gone.
* One bad file never stops the others.
* Chunk ids derive from corpus, path, content hash and ordinal, and the vector store is written
  before SQL commits, so a crash at any point is repaired by running the same ingest again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from corral.core.db import Chunk, Corpus, Document, DocumentStatus, Source, SourceKind
from corral.core.errors import InvalidInputError
from corral.core.index import IndexedChunk, VectorStore
from corral.core.services import get_or_create_corpus
from corral.core.types import Embedder
from corral.ingestion.chunking import Span, split_document
from corral.ingestion.parsing import FileKind, ParsedDocument, Rejected, read_document
from corral.ingestion.pipeline.walk import FoundFile, Unreadable, walk
from corral.ingestion.tokens import TokenCounter

__all__ = ["FileOutcome", "IngestReport", "ProgressCallback", "ingest_path"]

ProgressCallback = Callable[[int, int, str], None]  # (files done, files total, current path)
_BATCH_FILES = 32
_UNKNOWN = FileKind("unknown")


@dataclass(slots=True)
class FileOutcome:
    path: str
    status: str
    reason: str | None = None
    tokens: int = 0
    chunks: int = 0


@dataclass(slots=True)
class IngestReport:
    corpus: str
    root: str
    indexed: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    removed: int = 0
    chunks: int = 0
    tokens: int = 0
    corpus_documents: int = 0
    corpus_tokens: int = 0
    seconds: float = 0.0
    problems: list[FileOutcome] = field(default_factory=list)

    def add(self, outcome: FileOutcome) -> None:
        match outcome.status:
            case "indexed":
                self.indexed += 1
                self.chunks += outcome.chunks
                self.tokens += outcome.tokens
            case "unchanged":
                self.unchanged += 1
            case "skipped":
                self.skipped += 1
                self.problems.append(outcome)
            case "failed":
                self.failed += 1
                self.problems.append(outcome)
            case "removed":
                self.removed += 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Pending:
    found: FoundFile
    parsed: ParsedDocument
    spans: list[Span]


def chunk_id(corpus_id: int, path: str, content_hash: str, ordinal: int) -> str:
    return hashlib.sha256(f"{corpus_id}\0{path}\0{content_hash}\0{ordinal}".encode()).hexdigest()[:32]


def ingest_path(
    session_factory: sessionmaker[Session],
    corpus_name: str,
    path: Path,
    *,
    embedder: Embedder,
    store: VectorStore,
    token_counter: TokenCounter,
    max_file_bytes: int,
    chunk_chars: int,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Index ``path`` (a folder or one file) into the corpus ``corpus_name``, creating it if needed."""
    started = time.perf_counter()
    if not path.exists() and not path.is_symlink():
        raise InvalidInputError(f"path does not exist: {path}")
    if not (path.is_dir() or path.is_file()):
        raise InvalidInputError(f"not a regular file or folder: {path}")
    root = path.absolute()

    with session_factory.begin() as session:
        corpus = get_or_create_corpus(session, corpus_name)
        source = _get_or_create_source(session, corpus, str(root))
        corpus_id, source_id = corpus.id, source.id

    report = IngestReport(corpus=corpus_name, root=str(root))
    found = list(walk(root))
    seen: set[str] = set()
    for start in range(0, len(found), _BATCH_FILES):
        batch = found[start : start + _BATCH_FILES]
        seen.update(item.rel for item in batch)
        for outcome in _index_batch(
            session_factory, corpus_id, source_id, batch,
            embedder=embedder, store=store, token_counter=token_counter,
            max_file_bytes=max_file_bytes, chunk_chars=chunk_chars,
        ):
            report.add(outcome)
        if progress is not None:
            progress(start + len(batch), len(found), batch[-1].rel)

    for outcome in _remove_missing(session_factory, corpus_id, source_id, seen, store):
        report.add(outcome)
    report.corpus_documents, report.corpus_tokens = _refresh_totals(session_factory, corpus_id)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _get_or_create_source(session: Session, corpus: Corpus, uri: str) -> Source:
    source = session.scalar(
        select(Source).where(
            Source.corpus_id == corpus.id, Source.kind == SourceKind.PATH, Source.uri == uri
        )
    )
    if source is None:
        source = Source(corpus_id=corpus.id, kind=SourceKind.PATH, uri=uri)
        session.add(source)
        session.flush()
    source.last_synced_at = datetime.now(UTC)
    return source


def _index_batch(
    session_factory: sessionmaker[Session],
    corpus_id: int,
    source_id: int,
    batch: Sequence[FoundFile | Unreadable],
    *,
    embedder: Embedder,
    store: VectorStore,
    token_counter: TokenCounter,
    max_file_bytes: int,
    chunk_chars: int,
) -> list[FileOutcome]:
    outcomes: list[FileOutcome] = []
    with session_factory.begin() as session:
        existing = {
            d.path: d
            for d in session.scalars(
                select(Document).where(
                    Document.corpus_id == corpus_id, Document.path.in_([f.rel for f in batch])
                )
            )
        }
        pending: list[_Pending] = []
        stale_chunk_ids: list[str] = []
        for item in batch:
            doc = existing.get(item.rel)
            if isinstance(item, Unreadable):
                stale_chunk_ids += _record_rejected(
                    session, corpus_id, source_id, doc, item.rel,
                    Rejected(DocumentStatus.SKIPPED, item.reason, _UNKNOWN, 0),
                )
                outcomes.append(FileOutcome(item.rel, DocumentStatus.SKIPPED.value, item.reason))
                continue
            parsed = read_document(item.path, max_file_bytes)
            if isinstance(parsed, Rejected):
                stale_chunk_ids += _record_rejected(session, corpus_id, source_id, doc, item.rel, parsed)
                outcomes.append(FileOutcome(item.rel, parsed.status.value, parsed.reason))
                continue
            if (
                doc is not None
                and doc.status is DocumentStatus.INDEXED
                and doc.content_hash == parsed.content_hash
            ):
                doc.source_id = source_id
                outcomes.append(FileOutcome(item.rel, "unchanged", tokens=doc.token_count))
                continue
            if doc is not None:
                stale_chunk_ids += [c.id for c in doc.chunks]
            pending.append(_Pending(item, parsed, split_document(parsed.text, parsed.kind, chunk_chars)))

        texts = [span.text for p in pending for span in p.spans]
        vectors = embedder.embed_documents(texts)
        chunk_tokens = token_counter.count(texts)
        doc_tokens = token_counter.count([p.parsed.text for p in pending])

        records: list[IndexedChunk] = []
        new_docs: list[tuple[_Pending, int, list[Chunk]]] = []
        cursor = 0
        for p, n_tokens in zip(pending, doc_tokens, strict=True):
            chunks: list[Chunk] = []
            for span in p.spans:
                cid = chunk_id(corpus_id, p.found.rel, p.parsed.content_hash, span.ordinal)
                records.append(IndexedChunk(
                    id=cid,
                    text=span.text,
                    embedding=vectors[cursor],
                    metadata={
                        "path": p.found.rel,
                        "ordinal": span.ordinal,
                        "start_line": span.start_line,
                        "end_line": span.end_line,
                        "kind": p.parsed.kind.kind,
                        **({"symbol": span.symbol} if span.symbol else {}),
                    },
                ))
                chunks.append(Chunk(
                    id=cid, ordinal=span.ordinal, start_line=span.start_line,
                    end_line=span.end_line, char_start=span.char_start, char_end=span.char_end,
                    symbol=span.symbol, token_count=chunk_tokens[cursor], text=span.text,
                    content_hash=hashlib.sha256(span.text.encode()).hexdigest(),
                ))
                cursor += 1
            new_docs.append((p, n_tokens, chunks))

        # Vector store first: if we die before the SQL commit, the next run redoes this batch and
        # the upsert by deterministic id makes that harmless.
        store.delete(corpus_id, stale_chunk_ids)
        store.upsert(corpus_id, records)

        for p, n_tokens, chunks in new_docs:
            doc = existing.get(p.found.rel)
            if doc is None:
                doc = Document(corpus_id=corpus_id, path=p.found.rel)
                session.add(doc)
            else:
                session.execute(delete(Chunk).where(Chunk.document_id == doc.id))
                session.expire(doc, ["chunks"])
            doc.source_id = source_id
            doc.kind = p.parsed.kind.kind
            doc.language = p.parsed.kind.language
            doc.content_hash = p.parsed.content_hash
            doc.size_bytes = p.parsed.size_bytes
            doc.line_count = p.parsed.text.count("\n") + (not p.parsed.text.endswith("\n"))
            doc.token_count = n_tokens
            doc.status = DocumentStatus.INDEXED
            doc.error = None
            doc.chunks = chunks
            outcomes.append(FileOutcome(p.found.rel, "indexed", tokens=n_tokens, chunks=len(chunks)))
    return outcomes


def _record_rejected(
    session: Session,
    corpus_id: int,
    source_id: int,
    doc: Document | None,
    rel: str,
    rejected: Rejected,
) -> list[str]:
    """Record why ``rel`` is not indexed; returns the ids of chunks it had, now stale."""
    stale: list[str] = []
    if doc is None:
        doc = Document(corpus_id=corpus_id, path=rel)
        session.add(doc)
    else:
        stale = [c.id for c in doc.chunks]
        doc.chunks = []
    doc.source_id = source_id
    doc.kind = rejected.kind.kind
    doc.language = rejected.kind.language
    doc.content_hash = rejected.content_hash
    doc.size_bytes = rejected.size_bytes
    doc.line_count = 0
    doc.token_count = 0
    doc.status = rejected.status
    doc.error = rejected.reason
    return stale


def _remove_missing(
    session_factory: sessionmaker[Session],
    corpus_id: int,
    source_id: int,
    seen: set[str],
    store: VectorStore,
) -> list[FileOutcome]:
    outcomes: list[FileOutcome] = []
    with session_factory.begin() as session:
        gone = [
            d for d in session.scalars(
                select(Document).where(
                    Document.corpus_id == corpus_id, Document.source_id == source_id
                )
            )
            if d.path not in seen
        ]
        store.delete(corpus_id, [c.id for d in gone for c in d.chunks])
        for doc in gone:
            outcomes.append(FileOutcome(doc.path, "removed"))
            session.delete(doc)
    return outcomes


def _refresh_totals(session_factory: sessionmaker[Session], corpus_id: int) -> tuple[int, int]:
    with session_factory.begin() as session:
        count, tokens = session.execute(
            select(func.count(Document.id), func.coalesce(func.sum(Document.token_count), 0)).where(
                Document.corpus_id == corpus_id, Document.status == DocumentStatus.INDEXED
            )
        ).one()
        corpus = session.get_one(Corpus, corpus_id)
        corpus.document_count, corpus.token_count = int(count), int(tokens)
        return corpus.document_count, corpus.token_count
