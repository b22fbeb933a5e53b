"""What an ingest job reports: per-state counts, new chunks and tokens, corpus totals, problems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FileOutcome", "IngestProgress", "IngestReport", "ProgressCallback"]


@dataclass(slots=True)
class FileOutcome:
    path: str
    status: str
    reason: str | None = None
    tokens: int = 0
    chunks: int = 0


@dataclass(slots=True)
class IngestReport:
    """The outcome of one ingest job; ``job_id`` finds its per-document items (``corral jobs show``)."""

    corpus: str
    root: str
    job_id: str = ""
    indexed: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    removed: int = 0
    cancelled: int = 0
    chunks: int = 0
    tokens: int = 0
    embedded: int = 0  # chunks the model ran on (the rest reused a vector with the same content)
    corpus_documents: int = 0
    corpus_tokens: int = 0
    seconds: float = 0.0
    problems: list[FileOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IngestReport:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "problems"}
        return cls(**fields, problems=[FileOutcome(**p) for p in data.get("problems", [])])


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """Where a running job stands, handed to progress callbacks after every batch."""

    done: int  # documents finished (any outcome)
    total: int  # documents listed
    chunks: int  # chunks written so far by this job
    failed: int
    current: str  # the last path finished


ProgressCallback = Callable[[IngestProgress], None]
