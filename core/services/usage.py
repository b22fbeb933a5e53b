"""What a workspace has spent: tokens read and written by its runs this calendar month (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.core.db import Corpus, Run

__all__ = ["month_start", "tokens_this_month"]


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def tokens_this_month(session: Session, workspace_id: int, now: datetime | None = None) -> int:
    """Prompt and completion tokens of the workspace's runs since the first of this month."""
    query = (
        select(func.coalesce(func.sum(Run.actual_tokens), 0))
        .join(Corpus, Corpus.id == Run.corpus_id)
        .where(Corpus.workspace_id == workspace_id, Run.created_at >= month_start(now))
    )
    return int(session.scalar(query) or 0)
