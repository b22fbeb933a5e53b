"""SQLAlchemy 2.0 typed models (first cut).

Workspace → ApiKey, Corpus → Source → Document → Chunk; Job and Run record work done on a corpus;
Feedback rates a Run. Chunk ids are deterministic (corpus, path, content hash, ordinal), so re-running
an ingest is idempotent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from corral.core.db.base import Base
from corral.core.db.enums import DocumentStatus, JobKind, JobState, RunState, SourceKind


def _new_id() -> str:
    return uuid.uuid4().hex


def _str_enum(enum: type[Any], length: int = 16) -> Enum:
    return Enum(
        enum,
        native_enum=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class _Timestamped:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class Workspace(_Timestamped, Base):
    __tablename__ = "workspace"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    # Tokens (prompt + completion) the workspace's runs may use per calendar month (UTC); None: no cap.
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    # Credentials found at ingest are redacted from stored text unless the workspace opts in here.
    keep_secrets: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(),
                                               nullable=False)

    corpora: Mapped[list[Corpus]] = relationship(back_populates="workspace")
    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="workspace")


class ApiKey(_Timestamped, Base):
    """An API key; only a keyed hash of the secret is stored, plus a short prefix to recognise it."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Scope values (see corral.core.db.enums.Scope).
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Per-key limits per minute; None: the deployment's defaults.
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)

    workspace: Mapped[Workspace] = relationship(back_populates="api_keys")


class Corpus(_Timestamped, Base):
    __tablename__ = "corpus"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    # Kept equal to the sum over indexed documents by the ingest pipeline; the router reads it.
    token_count: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    document_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)

    workspace: Mapped[Workspace] = relationship(back_populates="corpora")
    sources: Mapped[list[Source]] = relationship(
        back_populates="corpus", cascade="all, delete-orphan"
    )
    documents: Mapped[list[Document]] = relationship(
        back_populates="corpus", cascade="all, delete-orphan"
    )


class Source(_Timestamped, Base):
    __tablename__ = "source"
    __table_args__ = (UniqueConstraint("corpus_id", "kind", "uri"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(
        ForeignKey("corpus.id", ondelete="CASCADE"), index=True, nullable=False
    )
    kind: Mapped[SourceKind] = mapped_column(_str_enum(SourceKind), nullable=False)
    uri: Mapped[str] = mapped_column(String(2048), nullable=False)
    # Git sources: the commit last indexed. Options: branch, include/exclude globs, limits.
    commit: Mapped[str | None] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    corpus: Mapped[Corpus] = relationship(back_populates="sources")
    documents: Mapped[list[Document]] = relationship(back_populates="source")


class Document(_Timestamped, Base):
    """One file of a corpus. ``path`` is relative to its source root and is what citations show."""

    __tablename__ = "document"
    __table_args__ = (UniqueConstraint("corpus_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(
        ForeignKey("corpus.id", ondelete="CASCADE"), index=True, nullable=False
    )
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey("source.id", ondelete="SET NULL"), index=True
    )
    # Also the corpus's reading order: stuffing and order-preserving retrieval sort by path.
    path: Mapped[str] = mapped_column(String(2048), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)  # text | markdown | code | pdf | ...
    language: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str | None] = mapped_column(String(512))
    page_count: Mapped[int | None] = mapped_column(Integer)  # paged formats (PDF) only
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    line_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    token_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    status: Mapped[DocumentStatus] = mapped_column(_str_enum(DocumentStatus), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    corpus: Mapped[Corpus] = relationship(back_populates="documents")
    source: Mapped[Source | None] = relationship(back_populates="documents")
    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="Chunk.ordinal"
    )
    images: Mapped[list[DocumentImage]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="DocumentImage.ref"
    )


class Chunk(Base):
    """A contiguous slice of a document; a document's chunks in ordinal order rebuild its text."""

    __tablename__ = "chunk"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("document.id", ondelete="CASCADE"), index=True, nullable=False
    )
    ordinal: Mapped[int] = mapped_column(Integer, nullable=False)
    start_line: Mapped[int] = mapped_column(Integer, nullable=False)  # 1-based, inclusive
    end_line: Mapped[int] = mapped_column(Integer, nullable=False)  # 1-based, inclusive
    char_start: Mapped[int] = mapped_column(Integer, nullable=False)
    char_end: Mapped[int] = mapped_column(Integer, nullable=False)
    symbol: Mapped[str | None] = mapped_column(String(512))
    # function | class | method | section | paragraph | page | text ...: what the chunk holds.
    symbol_kind: Mapped[str | None] = mapped_column(String(32))
    # The enclosing unit (qualified symbol, heading path) and its line range, for expansion.
    parent: Mapped[str | None] = mapped_column(String(1024))
    unit_start_line: Mapped[int | None] = mapped_column(Integer)
    unit_end_line: Mapped[int | None] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer)  # 1-based page for paged formats
    # Text read from an image by OCR: which of the document's images (DocumentImage.ref) and the box
    # [x0, y0, x1, y1] around the chunk's text, in that stored image's pixels.
    image_ref: Mapped[str | None] = mapped_column(String(64))
    bbox: Mapped[list[int] | None] = mapped_column(JSON)
    # How many credentials were redacted from this chunk's text at ingest.
    redacted: Mapped[int] = mapped_column(Integer, default=0, server_default="0", nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), index=True, nullable=False)
    token_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)

    document: Mapped[Document] = relationship(back_populates="chunks")


class DocumentImage(Base):
    """An image of a document (a figure, a scanned page, or the image file itself), kept so that
    citations of its OCR text can show it. ``data`` is the stored copy (scaled down, PNG or JPEG);
    chunk boxes are in its pixels."""

    __tablename__ = "document_image"
    __table_args__ = (UniqueConstraint("document_id", "ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("document.id", ondelete="CASCADE"), index=True, nullable=False
    )
    ref: Mapped[str] = mapped_column(String(64), nullable=False)  # e.g. "p4-img2", "image"
    page: Mapped[int | None] = mapped_column(Integer)
    mime: Mapped[str] = mapped_column(String(32), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    document: Mapped[Document] = relationship(back_populates="images")


class Job(_Timestamped, Base):
    """Background work. Its state lives here, not only in the broker, so nothing is lost with it."""

    __tablename__ = "job"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=_new_id)
    kind: Mapped[JobKind] = mapped_column(_str_enum(JobKind), nullable=False)
    workspace_id: Mapped[int | None] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[JobState] = mapped_column(
        _str_enum(JobState), default=JobState.QUEUED, index=True, nullable=False
    )
    corpus_id: Mapped[int | None] = mapped_column(
        ForeignKey("corpus.id", ondelete="CASCADE"), index=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    done: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    failed: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    skipped: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    phase: Mapped[str | None] = mapped_column(String(64))  # listing | parsing | embedding | ...
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def progress(self) -> float:
        return 1.0 if self.state is JobState.SUCCEEDED else (self.done / self.total if self.total else 0.0)


class JobItem(Base):
    """One document's progress inside a job: what was tried, how often, and how it ended."""

    __tablename__ = "job_item"
    __table_args__ = (UniqueConstraint("job_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), index=True, nullable=False
    )
    batch: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    path: Mapped[str] = mapped_column(String(2048), nullable=False)
    state: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class Run(_Timestamped, Base):
    """One question answered: the strategy decision with its reasons, the tokens, the answer."""

    __tablename__ = "run"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=_new_id)
    corpus_id: Mapped[int] = mapped_column(
        ForeignKey("corpus.id", ondelete="CASCADE"), index=True, nullable=False
    )
    # A run recorded by a synchronous ask is created finished; a background run moves through the
    # states, and the API and the agent worker meet on this row and its events.
    state: Mapped[RunState] = mapped_column(
        _str_enum(RunState), default=RunState.SUCCEEDED, index=True, nullable=False
    )
    # What was asked for (strategy, agent, max tokens...), so a worker can run it from the row alone.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Refreshed while a worker runs it; the watchdog fails a running run whose heartbeat stopped.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    strategy: Mapped[str] = mapped_column(String(32), nullable=False)
    strategy_reason: Mapped[str] = mapped_column(Text, nullable=False)
    forced_strategy: Mapped[str | None] = mapped_column(String(32))
    # The router's inputs and per-strategy estimates, so a decision can be audited later.
    decision: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    backend: Mapped[str | None] = mapped_column(String(64))
    estimated_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    actual_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, nullable=False)
    answer: Mapped[str | None] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    # Safety decisions taken on the way: {"kind": "redacted" | "screened" | "blocked", "source":
    # what it concerned, "detail": why}, in order.
    safety: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]",
                                                        nullable=False)
    # Set when the output guard blocked the answer: the answer stays stored, shown as blocked.
    blocked: Mapped[str | None] = mapped_column(Text)


class Feedback(_Timestamped, Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), index=True, nullable=False
    )
    rating: Mapped[int] = mapped_column(Integer, nullable=False)  # -1, 0 or +1
    comment: Mapped[str | None] = mapped_column(Text)


class RunEvent(Base):
    """One event of a run in order: the decision, a step, a slice of answer text, the final record.
    The SSE stream replays them from any ``seq`` (``Last-Event-ID``), in any process."""

    __tablename__ = "run_event"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), index=True, nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)  # decision | step | token | final | error
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class IdempotencyKey(_Timestamped, Base):
    """A client's ``Idempotency-Key`` and what it created: the same key and body get the same
    resource back; the same key with another body is a conflict."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True, nullable=False
    )
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_kind: Mapped[str] = mapped_column(String(16), nullable=False)  # job | run
    resource_id: Mapped[str] = mapped_column(String(32), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Webhook(_Timestamped, Base):
    """A URL a workspace asked to be told about finished jobs and runs; payloads are signed with
    ``secret`` (HMAC-SHA256)."""

    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True, nullable=False
    )
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    secret: Mapped[str] = mapped_column(String(128), nullable=False)
    events: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)


class WebhookDelivery(_Timestamped, Base):
    """One event for one webhook, with every attempt to deliver it."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhook.id", ondelete="CASCADE"), index=True, nullable=False
    )
    event: Mapped[str] = mapped_column(String(32), nullable=False)  # job.finished | run.finished
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    state: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, nullable=False)
    # Set only while pending (runners look for due ones through its index), None once finished.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EvalResult(_Timestamped, Base):
    """What one ``corral eval`` measured for one suite at one window: per (task kind, strategy) the
    mean evidence recall and tokens read (``rows``). The results of one run share its ``batch``."""

    __tablename__ = "eval_result"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True, nullable=False
    )
    batch: Mapped[str] = mapped_column(String(32), index=True, nullable=False)
    suite: Mapped[str] = mapped_column(String(32), nullable=False)  # docs | code | prose
    window: Mapped[int] = mapped_column(Integer, nullable=False)
    corpus_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hybrid: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # [{"kind", "strategy", "tasks", "recall", "tokens", "chosen"?}] as EvalReport.summary() gives them.
    rows: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, nullable=False)


class SlackTeam(_Timestamped, Base):
    """A Slack team (workspace) bound to one Corral workspace: its channels reach only that
    workspace's corpora."""

    __tablename__ = "slack_team"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True, nullable=False
    )


class SlackChannel(_Timestamped, Base):
    """The corpus a Slack channel (or direct-message conversation) asks by default."""

    __tablename__ = "slack_channel"
    __table_args__ = (UniqueConstraint("team_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), nullable=False)
    channel_id: Mapped[str] = mapped_column(String(32), nullable=False)
    corpus_id: Mapped[int] = mapped_column(
        ForeignKey("corpus.id", ondelete="CASCADE"), index=True, nullable=False
    )
    set_by: Mapped[str | None] = mapped_column(String(64))  # a Slack user id, or "dashboard"


class SlackThread(_Timestamped, Base):
    """A Slack thread the bot answered in, and the corpus it answered from: replies in it are
    follow-ups, asked of the same corpus."""

    __tablename__ = "slack_thread"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), nullable=False)
    channel_id: Mapped[str] = mapped_column(String(32), nullable=False)
    thread_ts: Mapped[str] = mapped_column(String(32), nullable=False)
    corpus_id: Mapped[int] = mapped_column(
        ForeignKey("corpus.id", ondelete="CASCADE"), index=True, nullable=False
    )


class SlackEvent(Base):
    """An Events API delivery already taken: Slack's retries of it (``X-Slack-Retry-Num``) carry the
    same event id and are dropped."""

    __tablename__ = "slack_event"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True, nullable=False)
