"""The Evaluation page: evidence recall against tokens read, per strategy, from the workspace's latest
``corral eval`` (stored in the database by that command)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from corral.core.db import EvalResult, session_scope
from corral.core.services.evals import latest_eval
from corral.platform.web.pages import PageRoute, ReadViewer, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def plot(result: EvalResult) -> dict[str, Any]:
    """uPlot's aligned columns for one suite and window: x is tokens read; one series per strategy
    whose points are its evidence recall for each task kind (a gap where it has none)."""
    rows = [r for r in result.rows if isinstance(r.get("tokens"), int | float)]
    xs = sorted({int(r["tokens"]) for r in rows})
    at = {x: i for i, x in enumerate(xs)}
    series: dict[str, list[float | None]] = {}
    for r in rows:
        values = series.setdefault(str(r.get("strategy")), [None] * len(xs))
        values[at[int(r["tokens"])]] = float(r.get("recall") or 0.0)
    return {"x": xs, "series": [{"label": name, "values": values} for name, values in sorted(series.items())]}


@router.get("/evaluation")
def evaluation(request: Request, viewer: ReadViewer) -> Response:
    with session_scope() as db:
        results = latest_eval(db, viewer.principal.workspace_id)
        charts = [{"result": r, "data": json.dumps(plot(r))} for r in results]
        return render(request, "evaluation.html", charts=charts,
                      when=results[0].created_at if results else None)
