"""``/static/{name}``: the dashboard's own scripts and styles, and the front-end packages npm installed
into ``platform/web/node_modules`` (from ``package-lock.json``, by ``make install``), never copied
into the repository. Only the files named here are served."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, PlainTextResponse, Response

__all__ = ["ASSETS", "missing_assets", "router"]

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
ASSETS: dict[str, Path] = {
    "pico.min.css": MODULES / "@picocss/pico/css/pico.min.css",
    "htmx.min.js": MODULES / "htmx.org/dist/htmx.min.js",
    "sse.min.js": MODULES / "htmx-ext-sse/dist/sse.min.js",
    "uPlot.min.css": MODULES / "uplot/dist/uPlot.min.css",
    "uPlot.iife.min.js": MODULES / "uplot/dist/uPlot.iife.min.js",
    "app.css": HERE / "static/app.css",
    "app.js": HERE / "static/app.js",
}

router = APIRouter(include_in_schema=False)


def missing_assets() -> list[str]:
    """The front-end files that are not installed (npm did not run)."""
    return [name for name, path in ASSETS.items() if not path.is_file()]


@router.get("/static/{name}")
def asset(name: str) -> Response:
    path = ASSETS.get(name)
    if path is None:
        return PlainTextResponse(f"no static file {name[:80]!r}", status_code=404)
    if not path.is_file():
        return PlainTextResponse(f"{name} is not installed: run `make install` (npm ci in platform/web)",
                                 status_code=503)
    # Versions are pinned by the lock file; an hour's caching spares reloads without hiding upgrades long.
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})
