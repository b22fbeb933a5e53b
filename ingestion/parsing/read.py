"""Reading one file: size limit first, then binary sniffing, then strict UTF-8 decoding."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from corral.core.db import DocumentStatus
from corral.ingestion.parsing.detect import FileKind, classify, looks_binary

_SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    text: str
    kind: FileKind
    content_hash: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a file was not indexed: ``skipped`` on purpose (binary) or ``failed`` (undecodable…)."""

    status: DocumentStatus
    reason: str
    kind: FileKind
    size_bytes: int
    content_hash: str = ""


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def read_document(path: Path, max_bytes: int) -> ParsedDocument | Rejected:
    """Read ``path`` as text, or say why not. Never reads more than ``max_bytes`` into memory."""
    kind = classify(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return Rejected(DocumentStatus.FAILED, f"cannot read: {exc.strerror}", kind, 0)
    if size > max_bytes:
        return Rejected(
            DocumentStatus.FAILED,
            f"file is {_mb(size)}, over the {_mb(max_bytes)} limit (CORRAL_MAX_FILE_BYTES)",
            kind,
            size,
        )
    if kind.kind == "binary":
        return Rejected(
            DocumentStatus.SKIPPED, f"binary format ({path.suffix.lower()}) is not indexed", kind, size
        )
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return Rejected(DocumentStatus.FAILED, f"cannot read: {exc.strerror}", kind, size)
    if len(data) > max_bytes:  # grew since stat
        return Rejected(DocumentStatus.FAILED, f"file is over the {_mb(max_bytes)} limit", kind, size)
    digest = hashlib.sha256(data).hexdigest()
    if looks_binary(data[:_SNIFF_BYTES]):
        return Rejected(
            DocumentStatus.SKIPPED, "binary content (not text) is not indexed", kind, size, digest
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Rejected(
            DocumentStatus.FAILED,
            f"invalid UTF-8 at byte {exc.start} (0x{data[exc.start]:02x}); "
            "re-save the file as UTF-8",
            kind,
            size,
            digest,
        )
    if not text.strip():
        return Rejected(DocumentStatus.SKIPPED, "empty file", kind, size, digest)
    if kind.kind == "unknown":
        kind = FileKind("text")
    # Normalise line endings so line numbers and offsets agree on every platform.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return ParsedDocument(text=text, kind=kind, content_hash=digest, size_bytes=size)
