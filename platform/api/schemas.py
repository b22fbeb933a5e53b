"""Request and response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel, Field, model_validator

from corral.agents.ask import MAX_QUESTION_CHARS, Strategy
from corral.core.db import Scope

T = TypeVar("T")


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without a zone; every one we store is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]

# How an SSE route declares its 200 in the OpenAPI document (FastAPI would say application/json).
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-Sent Events",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
}

# Numbers and flags in request bodies are strict: "5", 5.0 or true are not the integer 5, as the
# schema says. Budgets stop where a 64-bit column does not.
MAX_TOKEN_BUDGET = 10**15


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items`` from ``offset``, at most ``limit``, of ``total``."""

    items: list[T]
    total: int
    limit: int
    offset: int


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
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    heartbeat_at: Timestamp | None
    phase: str | None = None
    failed: int = 0
    skipped: int = 0
    attempts: int = 0
    cancel_requested: bool = False
    watchdog: list[dict[str, Any]] = Field(
        default_factory=list, description="What the watchdog did to this job: "
        "{at, action (requeued | failed | cancelled), reason}, oldest first")


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
    agent: bool = Field(default=False, strict=True,
                        description="Let the model plan its reading with the corpus tools")


class CitationOut(BaseModel):
    path: str
    start_line: int
    end_line: int
    label: str
    score: float | None
    cited_by_model: bool
    verified: bool = True
    note: str | None = None  # why a citation could not be verified, or does not hold its claim
    support: Literal["cited", "read", "unsupported"] = Field(
        default="read", description="cited: the model pointed at it and it holds the claim; read: in the "
        "model's context, not pointed at; unsupported: pointed at, but it does not hold the claim")
    page: int | None = None
    display: str | None = Field(default=None, description="How people name the source: the label, or "
                                "for OCR'd text its image, e.g. 'report.pdf p.4 (figure)'")
    image_ref: str | None = Field(default=None, description="OCR'd text: the document's image it was "
                                  "read from")
    bbox: list[int] | None = Field(default=None, description="[x0, y0, x1, y1] around the text, in the "
                                   "pixels of that image")
    figure: bool = False
    image_url: str | None = Field(default=None, description="GET it (with the same key) for the image")


def image_url(corpus: str, path: str, ref: str) -> str:
    """The API's URL of image ``ref`` of the document at ``path``
    (``GET /v1/corpora/{name}/documents/{path}/images/{ref}``)."""
    return (f"/v1/corpora/{quote(corpus, safe='')}/documents/{quote(path, safe='/')}/images/"
            f"{quote(ref, safe='')}")


def _with_image_urls(corpus: str, citations: list[CitationOut]) -> None:
    """Each OCR'd citation gets the API's URL of its image."""
    for c in citations:
        if c.image_ref is not None and c.image_url is None:
            c.image_url = image_url(corpus, c.path, c.image_ref)


class SafetyDecisionOut(BaseModel):
    kind: Literal["redacted", "screened", "blocked"] = Field(
        description="redacted: credentials were removed from a source at ingest; screened: a source or "
        "tool output looked like a prompt injection and was defanged (or the guard model could not "
        "check it); blocked: the output guard withheld the answer")
    source: str = Field(description="What it concerned: a passage (path:start-end), a tool, the guard "
                        "or the answer")
    detail: str


class AskResponse(BaseModel):
    run_id: str
    corpus: str
    question: str
    answer: str | None = Field(description="The answer; null when the output guard blocked it")
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
    support: Literal["supported", "partly-supported", "unsupported", "not-found"] = Field(
        description="What the answer rests on: every source it points at holds its claim, some do, none "
        "does, or it says the sources do not hold the answer")
    blocked: str | None = Field(default=None, description="Why the output guard withheld the answer")
    safety: list[SafetyDecisionOut] = Field(default_factory=list,
                                            description="Every safety decision the run made")

    @model_validator(mode="after")
    def _image_urls(self) -> AskResponse:
        _with_image_urls(self.corpus, self.citations)
        return self


class CorpusOut(BaseModel):
    name: str
    documents: int
    tokens: int
    created_at: Timestamp


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1, max_length=4)
    expires_at: Timestamp | None = None
    requests_per_minute: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=1_000_000_000, strict=True)


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    scopes: list[str]
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None
    requests_per_minute: int | None
    tokens_per_minute: int | None


class KeyIssued(KeyOut):
    secret: str = Field(description="The whole key: shown this once, never again")


class WorkspaceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    monthly_token_budget: int | None = Field(default=None, ge=0, le=MAX_TOKEN_BUDGET, strict=True)


class WorkspaceUpdate(BaseModel):
    """Only the fields given change."""

    monthly_token_budget: int | None = Field(default=None, ge=0, le=MAX_TOKEN_BUDGET, strict=True,
                                             description="Tokens per calendar month; null: no cap")
    keep_secrets: bool = Field(
        default=False, strict=True,
        description="Keep credentials found at ingest in the stored text (true) or redact them (false, "
                    "the default; left as it is when not given). Applies to documents ingested from "
                    "now on: ingest again to apply it to the rest.")


class WorkspaceOut(BaseModel):
    name: str
    created_at: Timestamp
    monthly_token_budget: int | None
    tokens_this_month: int
    keep_secrets: bool = Field(description="Whether credentials found at ingest are kept, not redacted")


class WorkspaceCreated(WorkspaceOut):
    admin_key: KeyIssued


class RunAccepted(BaseModel):
    run_id: str
    state: str
    url: str = Field(description="GET it for the run's state, decision, steps and answer")
    events_url: str = Field(description="Server-Sent Events: the run's progress as it happens")

    @classmethod
    def of(cls, run_id: str, state: str = "queued") -> RunAccepted:
        return cls(run_id=run_id, state=state, url=f"/v1/runs/{run_id}",
                   events_url=f"/v1/runs/{run_id}/events")


class RunSummary(BaseModel):
    id: str
    corpus: str
    question: str
    state: str
    strategy: str | None = Field(description="The strategy that answered (null until decided)")
    forced_strategy: str | None
    model: str | None
    answer: str | None = Field(description="The answer; null until there is one, or when the output "
                               "guard blocked it")
    blocked: str | None = Field(default=None, description="Why the output guard withheld the answer")
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    estimated_tokens: int
    cancel_requested: bool
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    seconds: float | None = Field(description="How long it ran, once finished")


class RunOut(RunSummary):
    reason: str | None = Field(description="Why the router chose the strategy")
    decision: dict[str, Any] = Field(description="The router's inputs, estimates and reasons")
    steps: list[dict[str, Any]] = Field(description="Each step with its tokens and milliseconds")
    citations: list[CitationOut]
    params: dict[str, Any] = Field(description="What was asked for: strategy, agent")
    safety: list[SafetyDecisionOut] = Field(default_factory=list, description="Every safety decision "
                                            "the run made: credentials redacted, sources screened, the "
                                            "answer blocked")
    support: Literal["supported", "partly-supported", "unsupported", "not-found"] | None = Field(
        default=None, description="What the answer rests on (see AskResponse); null until it has one")

    @model_validator(mode="after")
    def _image_urls(self) -> RunOut:
        _with_image_urls(self.corpus, self.citations)
        return self


class FeedbackRequest(BaseModel):
    rating: int = Field(ge=-1, le=1, description="-1 (bad), 0 (neutral) or 1 (good)")
    comment: str | None = Field(default=None, max_length=4000)


class FeedbackOut(BaseModel):
    id: int
    run_id: str
    rating: int
    comment: str | None
    created_at: Timestamp
