"""Credentials in documents: found at ingest, and redacted from the stored text unless the workspace
keeps them."""

from corral.ingestion.safety.redact import Cleaned, Redaction, clean_document, redact_text
from corral.ingestion.safety.secrets import MAX_LINE_CHARS, Finding, find_secrets

__all__ = ["MAX_LINE_CHARS", "Cleaned", "Finding", "Redaction", "clean_document", "find_secrets",
           "redact_text"]
