"""Turning files into text: what kind a file is, and its decoded content or a clear reason why not."""

from corral.ingestion.parsing.detect import FileKind, classify
from corral.ingestion.parsing.read import ParsedDocument, Rejected, read_document

__all__ = ["FileKind", "ParsedDocument", "Rejected", "classify", "read_document"]
