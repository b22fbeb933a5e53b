"""Who is looking at a page, and how pages answer: rendered templates, errors as pages, sign-in
redirects.

Every page depends on :func:`viewer` with a scope, the dashboard's twin of the API's ``require``:
the session's key is looked up on every request (a revoked or expired key is signed out at once and
sent to sign-in with the reason), the key's rate limit applies, and the scope is checked. On an open
embedded server (loopback, ``CORRAL_AUTH=auto``) a visitor who has not signed in *is* the local
user, as the REST API treats a request without a key; signing in with a key switches to that key's
workspace. Every ``POST`` also depends on :data:`Csrf`.

:class:`PageRoute` makes every error of a page a designed page (or, for htmx, a fragment) rather
than the API's JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from corral.core.db import Scope, session_scope
from corral.core.errors import (
    CorralError,
    PermissionDeniedError,
    RateLimitedError,
    UnauthenticatedError,
)
from corral.core.services.keys import Principal, key_principal
from corral.platform.api.auth import AccessPolicy, local_user
from corral.platform.api.errors import status_of
from corral.platform.api.ratelimit import check_request
from corral.platform.web.session import (
    WebSession,
    clear_session,
    csrf_matches,
    csrf_token,
    new_session,
    read_session,
    write_session,
)
from corral.platform.web.templating import templates

__all__ = ["AdminViewer", "AskViewer", "Csrf", "IngestViewer", "PageRoute", "ReadViewer", "SignInRequired",
           "Viewer", "is_htmx", "redirect", "render", "viewer"]

log = logging.getLogger(__name__)


class SignInRequired(Exception):
    """The page needs a signed-in key; ``reason`` is shown on the sign-in page."""

    def __init__(self, reason: str | None = None, *, forget: bool = False) -> None:
        super().__init__(reason or "sign in")
        self.reason = reason
        self.forget = forget  # the session named a key that no longer works: clear it


@dataclass(frozen=True, slots=True)
class Viewer:
    principal: Principal
    session: WebSession
    open_server: bool  # the open embedded server's local user (no key signed in)

    @property
    def csrf(self) -> str:
        return csrf_token(self.session)

    def allows(self, scope: str) -> bool:
        return self.principal.allows(Scope(scope))


def _policy(request: Request) -> AccessPolicy:
    return request.app.state.access  # type: ignore[no-any-return]


def session_of(request: Request) -> WebSession:
    """The request's session, or a new anonymous one (written to the response by :func:`render`)."""
    found: WebSession | None = getattr(request.state, "web_session", None)
    if found is None:
        found = read_session(request)
        if found is None:
            found = new_session()
            request.state.web_session_new = True
        request.state.web_session = found
    return found


def _principal(request: Request, session: WebSession) -> tuple[Principal, bool]:
    if session.key_id is not None and session.key_prefix is not None:
        try:
            with session_scope() as db:
                return key_principal(db, session.key_id, session.key_prefix), False
        except UnauthenticatedError:
            raise SignInRequired("Your API key was revoked or has expired: sign in with another key.",
                                 forget=True) from None
    if _policy(request).open:
        return local_user(request), True
    raise SignInRequired()


def viewer(scope: Scope) -> Callable[..., Viewer]:
    """A dependency admitting viewers whose key has ``scope`` (``admin`` has them all)."""

    def _check(request: Request) -> Viewer:
        session = session_of(request)
        principal, open_server = _principal(request, session)
        check_request(request, principal)
        if not principal.allows(scope):
            raise PermissionDeniedError(f"your API key lacks the {scope.value!r} scope this needs")
        seen = Viewer(principal, session, open_server)
        request.state.viewer = seen
        return seen

    _check.corral_scope = scope  # type: ignore[attr-defined]  # read by the every-route-has-a-scope test
    return _check


ReadViewer = Annotated[Viewer, Depends(viewer(Scope.READ))]
AskViewer = Annotated[Viewer, Depends(viewer(Scope.ASK))]
IngestViewer = Annotated[Viewer, Depends(viewer(Scope.INGEST))]
AdminViewer = Annotated[Viewer, Depends(viewer(Scope.ADMIN))]


async def _csrf(request: Request) -> None:
    """Refuse a POST whose CSRF token (``X-CSRF-Token`` header, or the ``csrf_token`` form field of
    a urlencoded form) does not match the session's: it did not come from a page of this dashboard."""
    token = request.headers.get("x-csrf-token")
    if token is None and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        value = (await request.form()).get("csrf_token")
        token = value if isinstance(value, str) else None
    if not csrf_matches(session_of(request), token):
        raise PermissionDeniedError("This form has expired or did not come from this dashboard (its "
                                    "CSRF token is missing or wrong). Reload the page and try again.")


Csrf = Depends(_csrf)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """``template`` rendered with ``context``, the viewer and the session's CSRF token; a new
    anonymous session is set on the response."""
    session = session_of(request)
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    response = templates().TemplateResponse(request, template, {"csrf": csrf_token(session), **context},
                                            status_code=status_code)
    if getattr(request.state, "web_session_new", False):
        write_session(request, response, session)
    return response


def redirect(request: Request, url: str) -> Response:
    """A 303 to ``url``; for htmx, its ``HX-Redirect`` (htmx follows it as a page load)."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


# The page heading per kind of error (statuses come from the API's table, status_of); kinds not
# here (a model or configuration error) are shown as "Something went wrong", 500.
_HEADINGS = {
    "invalid_input": "That did not work",
    "permission_denied": "Not allowed",
    "not_found": "Not found",
    "conflict": "Not now",
    "payload_too_large": "Too large",
    "rate_limited": "Slow down",
    "service_unavailable": "A service is unavailable",
}


def _sign_in(request: Request, exc: SignInRequired) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/signin?next=" + quote(target if request.method == "GET" else "/", safe="")
    if exc.reason:
        url += "&reason=revoked"
    response = redirect(request, url)
    if exc.forget:
        clear_session(request, response)
    return response


def error_page(request: Request, exc: Exception) -> Response:
    status, title = 500, "Something went wrong"
    if isinstance(exc, RequestValidationError):
        status, title = 400, "That did not work"
        message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
                            for e in exc.errors()[:5]) or "the request is not valid"
    else:
        message = str(exc)
        known = status_of(exc)
        if known is not None and known[1] in _HEADINGS:
            status, title = known[0], _HEADINGS[known[1]]
    template = "fragments/error.html" if is_htmx(request) else "error.html"
    response = render(request, template, status_code=status, title=title, message=message, status=status)
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    if is_htmx(request):  # htmx swaps only 2xx answers unless told: show the error where it was asked
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


class PageRoute(APIRoute):
    """A dashboard route: sign-in redirects and errors become pages, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return _sign_in(request, exc)
            except (CorralError, RequestValidationError) as exc:
                return error_page(request, exc)

        return page
