"""Turning files into text: what kind a file is, and its decoded content or a clear reason why not."""

from corral.ingestion.parsing.detect import FileKind, classify
from corral.ingestion.parsing.read import ParsedDocument, Rejected, parse_document, read_document
from corral.ingestion.parsing.registry import Extracted, ParseFailure, register_parser
from corral.ingestion.parsing.text import decode_text

__all__ = [
    "Extracted",
    "FileKind",
    "ParseFailure",
    "ParsedDocument",
    "Rejected",
    "classify",
    "decode_text",
    "parse_document",
    "read_document",
    "register_parser",
]
