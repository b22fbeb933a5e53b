"""The SQL data model and sessions: the source of truth for corpora, documents, jobs and runs."""

from corral.core.db.base import Base
from corral.core.db.enums import DocumentStatus, JobKind, JobState, SourceKind
from corral.core.db.models import (
    ApiKey,
    Chunk,
    Corpus,
    Document,
    Feedback,
    Job,
    Run,
    Source,
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
    "Feedback",
    "Job",
    "JobKind",
    "JobState",
    "Run",
    "Source",
    "SourceKind",
    "Workspace",
    "get_engine",
    "get_sessionmaker",
    "session_scope",
]
