"""The indexing pipeline: walk → read → split → count → embed → store, incremental by content hash."""

from corral.ingestion.pipeline.configured import ingest_configured
from corral.ingestion.pipeline.ingest import (
    FileOutcome,
    IngestReport,
    ProgressCallback,
    ingest_path,
)
from corral.ingestion.pipeline.jobs import run_ingest_job

__all__ = [
    "FileOutcome",
    "IngestReport",
    "ProgressCallback",
    "ingest_configured",
    "ingest_path",
    "run_ingest_job",
]
