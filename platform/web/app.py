"""Mounting the dashboard on the API's FastAPI app: its pages under ``/``, beside ``/v1``."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from corral.platform.web.assets import missing_assets
from corral.platform.web.assets import router as assets
from corral.platform.web.routes import admin, auth, corpora, engine, evaluation, jobs, runs

__all__ = ["mount_dashboard"]

log = logging.getLogger(__name__)


def mount_dashboard(app: FastAPI) -> None:
    """Add the dashboard's routes (none in the OpenAPI document: they answer HTML, not the API)."""
    for module in (auth, corpora, jobs, runs, evaluation, engine, admin):
        app.include_router(module.router)
    app.include_router(assets)
    missing = missing_assets()
    if missing:
        log.warning("the dashboard's front-end files are missing (%s): run `make install`",
                    ", ".join(missing))
