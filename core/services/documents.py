"""A corpus's documents as people browse them: pages of documents with their state, one document with
its chunks, and its text as numbered lines (rebuilt from the chunks, which hold it without overlap).

The caller has already looked the corpus up in its workspace: these functions take the corpus row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.core.db import Chunk, Corpus, Document, DocumentStatus
from corral.core.errors import InvalidInputError, NotFoundError

__all__ = ["DocumentPage", "document_lines", "get_document", "list_documents", "status_counts"]

MAX_PAGE = 1000
MAX_PATH = 2048


@dataclass(frozen=True, slots=True)
class DocumentPage:
    documents: list[Document]
    total: int  # how many documents the filters match


def _status(value: str | None) -> DocumentStatus | None:
    if value in (None, ""):
        return None
    try:
        return DocumentStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in DocumentStatus)
        raise InvalidInputError(f"unknown document state {str(value)[:20]!r}; use {known}") from None


def list_documents(session: Session, corpus: Corpus, *, status: str | None = None,
                   path_contains: str | None = None, limit: int = 100, offset: int = 0) -> DocumentPage:
    """The corpus's documents in path order (its reading order), optionally of one state
    (``indexed``/``skipped``/``failed``) and whose path contains ``path_contains``."""
    where = [Document.corpus_id == corpus.id]
    state = _status(status)
    if state is not None:
        where.append(Document.status == state)
    if path_contains:
        if len(path_contains) > 200:
            raise InvalidInputError("the path filter is longer than 200 characters")
        where.append(Document.path.contains(path_contains, autoescape=True))
    rows = session.scalars(select(Document).where(*where).order_by(Document.path)
                           .limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset)))
    total = session.scalar(select(func.count(Document.id)).where(*where))
    return DocumentPage(list(rows), int(total or 0))


def status_counts(session: Session, corpus: Corpus) -> dict[str, int]:
    """How many of the corpus's documents are in each state."""
    rows = session.execute(select(Document.status, func.count()).where(Document.corpus_id == corpus.id)
                           .group_by(Document.status)).all()
    return {str(state.value if isinstance(state, DocumentStatus) else state): int(n) for state, n in rows}


def get_document(session: Session, corpus: Corpus, path: str) -> Document:
    """The document at ``path`` in ``corpus``; :class:`NotFoundError` when there is none."""
    if not path or len(path) > MAX_PATH or "\x00" in path:
        raise InvalidInputError(f"a document path is 1-{MAX_PATH} characters without NUL")
    doc = session.scalar(select(Document).where(Document.corpus_id == corpus.id, Document.path == path))
    if doc is None:
        raise NotFoundError(f"no document {path[:200]!r} in corpus {corpus.name!r}")
    return doc


def document_lines(session: Session, doc: Document) -> list[str]:
    """The document's text as lines (without their newlines), rebuilt from its chunks in order;
    empty for a document that was skipped or failed (it has no chunks)."""
    text = "".join(session.scalars(select(Chunk.text).where(Chunk.document_id == doc.id)
                                   .order_by(Chunk.ordinal)))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
