"""Mounting the dashboard on the API's FastAPI app: its pages under ``/``, beside ``/v1``."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from corral.platform.web.assets import missing_assets
from corral.platform.web.assets import router as assets
from corral.platform.web.routes import admin, auth, corpora, jobs, runs

__all__ = ["mount_dashboard"]

log = logging.getLogger(__name__)


def mount_dashboard(app: FastAPI) -> None:
    """Add the dashboard's routes (none in the OpenAPI document: they answer HTML, not the API)."""
    for router in (assets, auth.router, corpora.router, jobs.router, runs.router, admin.router):
        app.include_router(router)
    missing = missing_assets()
    if missing:
        log.warning("the dashboard's front-end files are missing (%s): run `make install`",
                    ", ".join(missing))
