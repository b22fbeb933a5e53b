"""Request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from corral.agents.ask import MAX_QUESTION_CHARS, Strategy


class IngestRequest(BaseModel):
    """Exactly one of ``path`` (a folder, file or .zip on the server) and ``git``."""

    path: str | None = Field(default=None, min_length=1, max_length=4096,
                             description="Absolute path of a file, folder or .zip on the server")
    git: str | None = Field(default=None, min_length=1, max_length=4096,
                            description="A git repository: http(s)/ssh URL, or a local path under "
                            "the allowed ingest roots")
    branch: str | None = Field(default=None, min_length=1, max_length=255,
                               pattern=r"^[A-Za-z0-9._/-]+$", description="With git: the branch")

    @model_validator(mode="after")
    def _one_source(self) -> IngestRequest:
        if (self.path is None) == (self.git is None):
            raise ValueError("give exactly one of 'path' and 'git'")
        if self.branch is not None and self.git is None:
            raise ValueError("'branch' needs 'git'")
        return self


class JobAccepted(BaseModel):
    job_id: str
    state: str
    url: str


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    corpus: str | None
    progress: float
    done: int
    total: int
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    phase: str | None = None
    failed: int = 0
    skipped: int = 0
    attempts: int = 0
    cancel_requested: bool = False


class JobItemOut(BaseModel):
    path: str
    state: str
    attempts: int
    error: str | None


class JobDetailOut(JobOut):
    items_by_state: dict[str, int]
    items: list[JobItemOut] = Field(description="A page of per-document items, in path order")


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    strategy: Strategy | None = Field(
        default=None, description="Force a reading strategy: stuff, retrieve, scoped-stuff or map-reduce")
    agent: bool = Field(default=False, description="Let the model plan its reading with the corpus tools")


class CitationOut(BaseModel):
    path: str
    start_line: int
    end_line: int
    label: str
    score: float | None
    cited_by_model: bool
    verified: bool = True
    note: str | None = None  # why a citation could not be verified


class AskResponse(BaseModel):
    run_id: str
    corpus: str
    question: str
    answer: str
    strategy: str
    reason: str
    model: str
    estimated_tokens: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    citations: list[CitationOut]
    routed_strategy: str = ""  # the router's first choice; differs from strategy after escalation
    forced: bool = False
    flags: list[str] = Field(default_factory=list)  # unverified citations, screened injections
    decision: dict[str, Any] = Field(default_factory=dict)  # router inputs, estimates, reasons


class CorpusOut(BaseModel):
    name: str
    documents: int
    tokens: int
    created_at: datetime
