"""The SQL data model and sessions: the source of truth for corpora, documents, jobs and runs."""

from corral.core.db.base import Base
from corral.core.db.enums import DocumentStatus, JobKind, JobState, RunState, Scope, SourceKind
from corral.core.db.models import (
    ApiKey,
    Chunk,
    Corpus,
    Document,
    EvalResult,
    Feedback,
    IdempotencyKey,
    Job,
    JobItem,
    Run,
    RunEvent,
    Source,
    Webhook,
    WebhookDelivery,
    Workspace,
)
from corral.core.db.session import get_engine, get_sessionmaker, session_scope

__all__ = [
    "ApiKey",
    "Base",
    "Chunk",
    "Corpus",
    "Document",
    "DocumentStatus",
    "EvalResult",
    "Feedback",
    "IdempotencyKey",
    "Job",
    "JobItem",
    "JobKind",
    "JobState",
    "Run",
    "RunEvent",
    "RunState",
    "Scope",
    "Source",
    "SourceKind",
    "Webhook",
    "WebhookDelivery",
    "Workspace",
    "get_engine",
    "get_sessionmaker",
    "session_scope",
]
