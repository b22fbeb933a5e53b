"""``/healthz``: the process is alive and serving (public). It asks no dependency — a database
outage must not make an orchestrator restart healthy API processes; ``/readyz`` asks them."""

from __future__ import annotations

from fastapi import APIRouter

from corral.core.config import get_settings

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok", "mode": get_settings().mode.value}
