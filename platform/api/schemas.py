"""Request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from corral.agents.ask import Strategy
from corral.agents.ask.answer import MAX_QUESTION_CHARS


class IngestRequest(BaseModel):
    path: str = Field(min_length=1, max_length=4096,
                      description="Absolute path of a file or folder on the server")


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


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    strategy: Strategy | None = Field(default=None, description="Force a reading strategy")


class CitationOut(BaseModel):
    path: str
    start_line: int
    end_line: int
    label: str
    score: float | None
    cited_by_model: bool


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


class CorpusOut(BaseModel):
    name: str
    documents: int
    tokens: int
    created_at: datetime
