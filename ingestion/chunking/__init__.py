"""Splitting documents into contiguous, non-overlapping spans that keep line ranges and symbols."""

from corral.ingestion.chunking.splitter import Span, split_document

__all__ = ["Span", "split_document"]
