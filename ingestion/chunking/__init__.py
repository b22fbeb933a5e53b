"""Splitting documents into contiguous, non-overlapping spans that keep line ranges and symbols."""

from corral.ingestion.chunking.splitter import MARKDOWN_KINDS, Span, chunk_document, split_document

__all__ = ["MARKDOWN_KINDS", "Span", "chunk_document", "split_document"]
