"""Signing in with an API key, and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from corral.core.db import session_scope
from corral.core.errors import UnauthenticatedError
from corral.core.services.keys import authenticate
from corral.platform.web.pages import Csrf, PageRoute, ReadViewer, redirect, render, session_of
from corral.platform.web.session import clear_session, new_session, write_session

router = APIRouter(route_class=PageRoute, include_in_schema=False)

_REASONS = {
    "revoked": "Your API key was revoked or has expired: sign in with another key.",
    "signed_out": "You are signed out.",
}


def _safe_next(target: str | None) -> str:
    """Only a path of this site: never ``//host`` or ``https://…`` (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/corpora"
    return target[:2000]


@router.get("/")
def home(_viewer: ReadViewer) -> Response:
    return Response(status_code=303, headers={"Location": "/corpora"})


@router.get("/signin")
def sign_in_page(request: Request, next: str | None = None, reason: str | None = None) -> Response:
    return render(request, "signin.html", next=_safe_next(next), notice=_REASONS.get(reason or ""),
                  open_server=request.app.state.access.open)


@router.post("/signin", dependencies=[Csrf])
def sign_in(request: Request, api_key: Annotated[str, Form(max_length=200)] = "",
            next: Annotated[str, Form(max_length=2000)] = "/corpora") -> Response:
    try:
        with session_scope() as db:
            principal = authenticate(db, api_key.strip())
    except UnauthenticatedError:
        return render(request, "signin.html", status_code=401, next=_safe_next(next),
                      error="That key is not valid: it is unknown, revoked or expired.",
                      open_server=request.app.state.access.open)
    # A new session id on every sign-in: a session planted before it is worth nothing after.
    session = new_session(principal.key_id, principal.key_prefix)
    response = redirect(request, _safe_next(next))
    write_session(request, response, session)
    return response


@router.post("/signout", dependencies=[Csrf])
def sign_out(request: Request) -> Response:
    session_of(request)
    response = redirect(request, "/signin?reason=signed_out")
    clear_session(request, response)
    return response
