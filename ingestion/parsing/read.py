"""Reading one document: size limit first, then the format's parser or binary sniffing and strict UTF-8.

Contract of :func:`parse_document`: every document ends as a :class:`ParsedDocument` or a
:class:`Rejected` with a reason — ``skipped`` for what we decline on purpose (binary, empty),
``failed`` for what we could not read (over the size limit, undecodable with the byte offset,
corrupt PDF...). Nothing over ``max_bytes`` is ever read into memory, and no parser error escapes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from corral.core.db import DocumentStatus
from corral.ingestion.parsing.detect import FileKind, classify, looks_binary
from corral.ingestion.parsing.registry import Extracted, ParseFailure, get_parser
from corral.ingestion.parsing.text import decode_text
from corral.ingestion.sources.base import DocumentTooLargeError, SourceDocument

if TYPE_CHECKING:
    from corral.ingestion.parsing.figures import OcrBlock
    from corral.ingestion.parsing.images import StoredImage

__all__ = ["ParsedDocument", "Rejected", "decode_text", "parse_document", "read_document"]

_SNIFF_BYTES = 8192
# Formats that are binary containers by nature: never sniffed, always handed to their parser.
_CONTAINER_KINDS = frozenset({"pdf", "docx", "image"})


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A document's text and what the chunker and the ``Document`` row need about it.

    ``pages`` is empty for unpaged formats; for PDFs it holds the char offset in ``text`` where each
    page starts (``pages[0] == 0``), so page ``i + 1`` is ``text[pages[i]:pages[i + 1]]``.
    ``images`` are the images the document keeps (``DocumentImage`` rows) and ``ocr`` the blocks of
    lines of ``text`` read from them by OCR (:mod:`corral.ingestion.parsing.figures`). A step that
    rewrites ``text`` must keep every line where it is (``ocr`` counts lines) and use
    ``dataclasses.replace`` so these travel on.
    """

    text: str
    kind: FileKind
    content_hash: str
    size_bytes: int
    title: str | None = None
    pages: tuple[int, ...] = ()
    images: tuple[StoredImage, ...] = ()
    ocr: tuple[OcrBlock, ...] = ()

    @property
    def page_count(self) -> int | None:
        return len(self.pages) if self.pages else None

    @property
    def line_count(self) -> int:
        return self.text.count("\n") + (not self.text.endswith("\n"))


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a file was not indexed: ``skipped`` on purpose (binary) or ``failed`` (undecodable…)."""

    status: DocumentStatus
    reason: str
    kind: FileKind
    size_bytes: int
    content_hash: str = ""


def read_document(path: Path, max_bytes: int) -> ParsedDocument | Rejected:
    """Read the file at ``path`` (see :func:`parse_document`); its display path is its name."""
    try:
        doc = SourceDocument.from_file(path, path.name)
    except OSError as exc:
        return Rejected(DocumentStatus.FAILED, f"cannot read: {exc.strerror}", classify(path), 0)
    return parse_document(doc, max_bytes)


def parse_document(doc: SourceDocument, max_bytes: int) -> ParsedDocument | Rejected:
    """Parse ``doc`` into text, or say why not. Never reads more than ``max_bytes + 1`` bytes."""
    kind = classify(PurePosixPath(doc.path))
    size = doc.size_bytes
    if kind.kind == "binary":
        return Rejected(
            DocumentStatus.SKIPPED,
            f"binary format ({PurePosixPath(doc.path).suffix.lower()}) is not indexed", kind, size,
        )
    try:
        data = doc.read_bytes(max_bytes)
    except DocumentTooLargeError as exc:
        return Rejected(DocumentStatus.FAILED, str(exc), kind, exc.size_bytes)
    except OSError as exc:
        return Rejected(DocumentStatus.FAILED, f"cannot read: {exc.strerror or exc}", kind, size)
    size = len(data)
    digest = hashlib.sha256(data).hexdigest()
    if kind.kind not in _CONTAINER_KINDS and looks_binary(data[:_SNIFF_BYTES]):
        return Rejected(
            DocumentStatus.SKIPPED, "binary content (not text) is not indexed", kind, size, digest
        )
    parser = get_parser(kind.kind)
    try:
        extracted = parser(data, kind) if parser is not None else Extracted(decode_text(data))
    except ParseFailure as exc:
        return Rejected(exc.status, exc.reason, kind, size, digest)
    except RecursionError:
        return Rejected(DocumentStatus.FAILED, "document is nested too deeply to parse", kind, size,
                        digest)
    if extracted.kind is not None:
        kind = extracted.kind
    if not extracted.text.strip():
        reason = "empty file" if parser is None else f"no text found in this {kind.kind} document"
        return Rejected(DocumentStatus.SKIPPED, reason, kind, size, digest)
    if kind.kind == "unknown":
        kind = FileKind("text")
    return ParsedDocument(
        text=extracted.text, kind=kind, content_hash=digest, size_bytes=size,
        title=extracted.title or _first_heading(extracted.text, kind), pages=extracted.pages,
        images=extracted.images, ocr=extracted.ocr,
    )


def _first_heading(text: str, kind: FileKind) -> str | None:
    """A Markdown ``# Title`` or an underlined reStructuredText title in the first lines."""
    markdown = kind.kind in ("markdown", "notebook", "html", "docx")
    if not markdown and kind.kind != "rst":
        return None
    lines = text[:4000].split("\n")
    for i, line in enumerate(lines[:40]):
        stripped = line.strip()
        if markdown and stripped.startswith("# "):
            return stripped[2:].strip()[:512] or None
        if (
            kind.kind == "rst" and stripped and i + 1 < len(lines)
            and _is_rst_underline(lines[i + 1], stripped)
        ):
            return stripped[:512]
    return None


def _is_rst_underline(line: str, title: str) -> bool:
    line = line.rstrip()
    return len(line) >= max(len(title), 3) and len(set(line)) == 1 and line[0] in "=-~^\"'`#*+:._"
