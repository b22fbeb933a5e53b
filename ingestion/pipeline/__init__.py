"""The indexing pipeline: plan a job → index its batches (read, parse, chunk, count, embed, write) →
finish it; incremental by content hash, idempotent by chunk id, in-process or fanned out.
Jobs are recorded by :func:`corral.ingestion.ingest.submit_ingest`, the one way in."""

from corral.ingestion.pipeline.batch import (
    MAX_ITEM_ATTEMPTS,
    BatchResult,
    chunk_id,
    fail_batch,
    index_batch,
)
from corral.ingestion.pipeline.configured import (
    configured_services,
    heartbeat_seconds,
    run_batch,
    run_job,
)
from corral.ingestion.pipeline.finish import finish_if_done
from corral.ingestion.pipeline.jobs import Dispatch, fail_job, run_ingest_job
from corral.ingestion.pipeline.plan import plan_job
from corral.ingestion.pipeline.report import (
    FileOutcome,
    IngestProgress,
    IngestReport,
    ProgressCallback,
)
from corral.ingestion.pipeline.services import IngestServices

__all__ = [
    "MAX_ITEM_ATTEMPTS",
    "BatchResult",
    "Dispatch",
    "FileOutcome",
    "IngestProgress",
    "IngestReport",
    "IngestServices",
    "ProgressCallback",
    "chunk_id",
    "configured_services",
    "fail_batch",
    "fail_job",
    "finish_if_done",
    "heartbeat_seconds",
    "index_batch",
    "plan_job",
    "run_batch",
    "run_ingest_job",
    "run_job",
]
