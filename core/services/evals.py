"""Stored evaluation results: each ``corral eval`` run records what it measured as one batch, and the
dashboard plots the workspace's latest batch."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.core.db import EvalResult
from corral.core.errors import InvalidInputError

__all__ = ["latest_eval", "record_eval"]


def record_eval(session: Session, workspace_id: int,
                suites: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> str:
    """Store one evaluation: ``{suite: {window: {"corpus_tokens", "hybrid", "rows"}}}`` (``rows`` as
    ``EvalReport.summary()`` gives them); returns the batch id its results share."""
    batch = uuid.uuid4().hex
    for suite, by_window in suites.items():
        for window, report in by_window.items():
            rows = report.get("rows")
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise InvalidInputError(f"eval results of {suite!r} at {window}: rows must be a list "
                                        "of objects")
            session.add(EvalResult(workspace_id=workspace_id, batch=batch, suite=suite[:32],
                                   window=int(window), corpus_tokens=int(report.get("corpus_tokens") or 0),
                                   hybrid=bool(report.get("hybrid")), rows=rows))
    session.flush()
    return batch


def latest_eval(session: Session, workspace_id: int) -> list[EvalResult]:
    """The workspace's most recent evaluation (one result per suite and window), or none."""
    last = session.scalar(select(EvalResult.batch).where(EvalResult.workspace_id == workspace_id)
                          .order_by(EvalResult.created_at.desc(), EvalResult.id.desc()).limit(1))
    if last is None:
        return []
    return list(session.scalars(select(EvalResult).where(EvalResult.batch == last)
                                .order_by(EvalResult.suite, EvalResult.window)))
