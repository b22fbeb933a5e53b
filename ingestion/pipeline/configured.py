"""``ingest_path`` wired to the configured services: what the CLI, the API and the worker all run."""

from __future__ import annotations

from pathlib import Path

from corral.core.config import get_settings
from corral.core.db import get_sessionmaker
from corral.core.index import get_vector_store
from corral.ingestion.embedding import get_embedder
from corral.ingestion.pipeline.ingest import IngestReport, ProgressCallback, ingest_path
from corral.ingestion.tokens import get_token_counter

__all__ = ["ingest_configured"]


def ingest_configured(
    corpus: str, path: Path, progress: ProgressCallback | None = None
) -> IngestReport:
    """Index ``path`` into ``corpus`` with the configured database, vector store and models."""
    settings = get_settings()
    return ingest_path(
        get_sessionmaker(),
        corpus,
        path,
        embedder=get_embedder(),
        store=get_vector_store(),
        token_counter=get_token_counter(),
        max_file_bytes=settings.max_file_bytes,
        chunk_chars=settings.chunk_chars,
        progress=progress,
    )
