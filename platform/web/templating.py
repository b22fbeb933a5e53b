"""The dashboard's Jinja2 environment: its templates folder, autoescaping, and a few filters."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.templating import Jinja2Templates

__all__ = ["templates"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _ago(moment: datetime | None) -> str:
    """``5 s ago``, ``3 min ago``, ``2 h ago``, else the date: compact and time-zone free."""
    if moment is None:
        return "—"
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 60:
        return f"{max(0, int(seconds))} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{moment:%Y-%m-%d}"


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def _num(value: Any) -> str:
    """Thousands separated by thin spaces (readable in any locale); ``—`` for nothing."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}".replace(",", "\u202f")
    return f"{int(value):,}".replace(",", "\u202f")


def _path_url(path: str) -> str:
    """A document path as a URL path: each segment quoted, the slashes kept."""
    return quote(path, safe="/")


@lru_cache(maxsize=1)
def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(TEMPLATES))
    t.env.filters.update(ago=_ago, iso=_iso, num=_num, path_url=_path_url)
    t.env.globals["STATES"] = ("queued", "running", "succeeded", "failed", "cancelled")
    return t
