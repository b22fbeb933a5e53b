"""Enumerations stored as short strings (not native enums, so migrations stay portable)."""

from __future__ import annotations

from enum import StrEnum


class SourceKind(StrEnum):
    PATH = "path"
    GIT = "git"
    UPLOAD = "upload"


class DocumentStatus(StrEnum):
    INDEXED = "indexed"
    SKIPPED = "skipped"  # deliberately not indexed: binary, unsupported, empty
    FAILED = "failed"  # could not be indexed: undecodable, too large, unreadable


class JobKind(StrEnum):
    INGEST = "ingest"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Scope(StrEnum):
    """What an API key may do. ``admin`` implies every other scope within its workspace."""

    READ = "read"
    ASK = "ask"
    INGEST = "ingest"
    ADMIN = "admin"


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)
