"""Admin: the workspace's API keys (a new key's secret is shown once), revoking them, the
workspace's monthly token budget against this month's usage, and whether credentials found at ingest
are kept or redacted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from corral.core.db import Workspace, session_scope
from corral.core.errors import InvalidInputError
from corral.core.services.keys import create_key, list_keys, parse_scopes, revoke_key
from corral.core.services.usage import next_month_start, tokens_this_month
from corral.platform.web.pages import AdminViewer, Csrf, PageRoute, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SCOPES = ("read", "ask", "ingest", "admin")


def _page(request: Request, viewer: AdminViewer, status_code: int = 200, **extra: object) -> Response:
    with session_scope() as db:
        ws = db.get_one(Workspace, viewer.principal.workspace_id)
        used = tokens_this_month(db, ws.id)
        budget = ws.monthly_token_budget
        return render(request, "admin.html", status_code=status_code, workspace=ws,
                      keys=list_keys(db, ws.id), used=used, budget=budget,
                      share=min(1.0, used / budget) if budget else None, renews=next_month_start(),
                      scopes=SCOPES, **extra)


@router.get("/admin")
def admin(request: Request, viewer: AdminViewer) -> Response:
    return _page(request, viewer)


@router.post("/admin/keys", dependencies=[Csrf])
async def new_key(request: Request, viewer: AdminViewer) -> Response:
    """A new key of the workspace; the page shows its secret this once (it is stored hashed)."""
    form = await request.form()
    name = str(form.get("name") or "").strip()
    scopes = parse_scopes([str(s) for s in form.getlist("scopes")][:8])
    with session_scope() as db:
        ws = db.get_one(Workspace, viewer.principal.workspace_id)
        issued = create_key(db, ws, name, scopes)
        secret, prefix = issued.secret, issued.key.prefix
    return _page(request, viewer, status_code=201, secret=secret, secret_prefix=prefix)


@router.post("/admin/keys/{key_id}/revoke", dependencies=[Csrf])
def revoke(request: Request, key_id: str, viewer: AdminViewer) -> Response:
    with session_scope() as db:
        revoke_key(db, key_id[:64], viewer.principal.workspace_id)
    return redirect(request, "/admin")


@router.post("/admin/secrets", dependencies=[Csrf])
def secrets(request: Request, viewer: AdminViewer,
            keep_secrets: Annotated[str, Form(max_length=8)] = "") -> Response:
    """Keep (``keep_secrets=keep``) or redact (``redact``) the credentials found at ingest; applies
    to documents ingested from now on."""
    if keep_secrets not in ("keep", "redact"):
        raise InvalidInputError("choose keep or redact")
    with session_scope() as db:
        ws = db.get_one(Workspace, viewer.principal.workspace_id)
        ws.keep_secrets = keep_secrets == "keep"
    return redirect(request, "/admin")


@router.post("/admin/budget", dependencies=[Csrf])
def budget(request: Request, viewer: AdminViewer,
           monthly_token_budget: Annotated[str, Form(max_length=20)] = "") -> Response:
    """Set the monthly budget (tokens); empty removes the cap."""
    value = monthly_token_budget.strip().replace("_", "").replace(",", "")
    if value and (not value.isascii() or not value.isdigit() or int(value) > 10**15):
        raise InvalidInputError("the budget is a whole number of tokens (or empty for no cap)")
    with session_scope() as db:
        ws = db.get_one(Workspace, viewer.principal.workspace_id)
        ws.monthly_token_budget = int(value) if value else None
    return redirect(request, "/admin")
