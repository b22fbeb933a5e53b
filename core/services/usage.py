"""What a workspace has spent: tokens read and written by its runs this calendar month (UTC), and
the check that refuses new work once its monthly budget is spent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.core.db import Corpus, Run, Workspace
from corral.core.errors import RateLimitedError

__all__ = ["check_budget", "month_start", "next_month_start", "tokens_this_month"]


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


def next_month_start(now: datetime | None = None) -> datetime:
    """The first of next month, 00:00 UTC: when monthly budgets renew."""
    return (month_start(now) + timedelta(days=32)).replace(day=1)


def check_budget(session: Session, workspace_id: int, now: datetime | None = None) -> None:
    """:class:`RateLimitedError` when the workspace has spent its monthly token budget, naming the
    budget and the usage, with ``retry_after`` the seconds until the budget renews."""
    ws = session.get(Workspace, workspace_id)
    if ws is None or ws.monthly_token_budget is None:
        return
    now = now or datetime.now(UTC)
    used = tokens_this_month(session, workspace_id, now)
    if used < ws.monthly_token_budget:
        return
    renews = next_month_start(now)
    raise RateLimitedError(
        f"monthly token budget spent: workspace {ws.name!r} has used {used:,} of its "
        f"{ws.monthly_token_budget:,} tokens this month; it renews on {renews:%Y-%m-%d} (UTC)",
        retry_after=(renews - now).total_seconds(),
    )
