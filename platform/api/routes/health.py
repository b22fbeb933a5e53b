from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from corral.core.config import get_settings
from corral.platform.api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok", "mode": get_settings().mode.value}
