"""A corpus's documents as people browse them: pages of documents with their state, one document with
its chunks, and its text as numbered lines (rebuilt from the chunks, which hold it without overlap).

The caller has already looked the corpus up in its workspace: these functions take the corpus row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from corral.core.db import Chunk, Corpus, Document, DocumentImage, DocumentStatus
from corral.core.errors import InvalidInputError, NotFoundError

__all__ = [
    "IMAGE_REF", "SAFE_IMAGE_TYPES", "DocumentPage", "ImageInfo", "document_images", "document_lines",
    "get_document", "get_document_image", "image_sizes", "list_documents", "status_counts",
]

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


# What an image's ref looks like ("image", "p4", "p4-img2"): anything else names no image.
IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Served as themselves; a stored image of any other type (an SVG could carry script) goes out as bytes.
SAFE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """A document's image without its bytes."""

    ref: str
    page: int | None
    mime: str
    width: int
    height: int
    size_bytes: int


def get_document_image(session: Session, corpus: Corpus, path: str, ref: str) -> DocumentImage:
    """The image ``ref`` of the document at ``path`` in ``corpus``: :class:`NotFoundError` for a ref
    that is none of its images (a malformed one included: it names nothing)."""
    if not IMAGE_REF.fullmatch(ref):
        raise NotFoundError(f"no image {ref[:64]!r}: an image is named like 'image' or 'p4-img2'")
    doc = get_document(session, corpus, path)
    image = session.scalar(select(DocumentImage).where(DocumentImage.document_id == doc.id,
                                                       DocumentImage.ref == ref))
    if image is None:
        raise NotFoundError(f"document {path[:200]!r} has no image {ref!r}")
    return image


def document_images(session: Session, doc: Document) -> list[ImageInfo]:
    """The document's images in ref order, without reading their bytes."""
    rows = session.execute(
        select(DocumentImage.ref, DocumentImage.page, DocumentImage.mime, DocumentImage.width,
               DocumentImage.height, func.length(DocumentImage.data))
        .where(DocumentImage.document_id == doc.id).order_by(DocumentImage.page, DocumentImage.ref))
    return [ImageInfo(ref, page, mime, width, height, int(size or 0))
            for ref, page, mime, width, height, size in rows]


def image_sizes(session: Session, corpus_id: int, keys: Iterable[tuple[str, str]]
                ) -> dict[tuple[str, str], tuple[int, int]]:
    """(width, height) of each (document path, image ref) of ``keys`` stored in the corpus."""
    wanted = list(dict.fromkeys(keys))[:1000]
    if not wanted:
        return {}
    rows = session.execute(
        select(Document.path, DocumentImage.ref, DocumentImage.width, DocumentImage.height)
        .join(Document, Document.id == DocumentImage.document_id)
        .where(Document.corpus_id == corpus_id, tuple_(Document.path, DocumentImage.ref).in_(wanted)))
    return {(path, ref): (width, height) for path, ref, width, height in rows}
