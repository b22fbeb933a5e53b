"""Who may see the dashboard: every page without a session goes to sign-in; sign-in with an API key
gives a hardened session cookie; a revoked key is signed out at once; a POST without the session's
CSRF token is refused; a key sees only its workspace's pages; the open local server's user needs no
key. (The browser stories are in test_web_browser.py.)"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from corral.platform.api.app import create_app
from corral.platform.web.pages import PageRoute
from tests.conftest import bearer, clear_caches, issue_key, wait_for_job

BASE = "http://127.0.0.1"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture
def closed(corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with keys required (as any server but the open local one)."""
    monkeypatch.setenv("CORRAL_AUTH", "required")
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", json.dumps([str(tmp_path)]))
    clear_caches()
    with TestClient(create_app(), base_url=BASE) as c:
        yield c


def _csrf(client: TestClient, url: str = "/signin") -> str:
    page = client.get(url)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found, f"{url} carries no CSRF token"
    return found.group(1)


def sign_in(client: TestClient, key: str) -> None:
    done = client.post("/signin", data={"api_key": key, "csrf_token": _csrf(client), "next": "/corpora"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/corpora", done.text


def _pages(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every dashboard page, path parameters filled with a name that exists nowhere."""
    found = []
    for context in iter_route_contexts(client.app.router.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if isinstance(route, PageRoute) and context.path not in ("/signin", "/signout"):
            for method in sorted(context.methods or ()):
                found.append((method, re.sub(r"\{[^}]+\}", "nothing-here", context.path)))
    return found


def test_every_page_without_a_session_goes_to_sign_in(closed: TestClient) -> None:
    pages = _pages(closed)
    assert {("GET", "/corpora"), ("POST", "/corpora/nothing-here/upload"), ("GET", "/admin")} <= set(pages)
    token = _csrf(closed)  # an anonymous session: its token gets a POST past the CSRF check
    for method, url in pages:
        got = closed.request(method, url, data={"csrf_token": token}, follow_redirects=False)
        assert got.status_code == 303, (method, url, got.status_code, got.text[:300])
        assert got.headers["location"].startswith("/signin?next="), (method, url)
        if method == "GET":
            assert got.headers["location"] == "/signin?next=" + url.replace("/", "%2F")
    # htmx asks for fragments: it is told to load the sign-in page instead.
    htmx = closed.get("/corpora", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"].startswith("/signin")
    # A POST without any session is refused before anything else.
    closed.cookies.clear()
    assert closed.post("/corpora", data={"name": "x"}, follow_redirects=False).status_code == 403


def test_sign_in_sets_a_hardened_session_cookie_and_sign_out_clears_it(closed: TestClient) -> None:
    key = issue_key("read")
    token = _csrf(closed)
    wrong = closed.post("/signin", data={"api_key": "crl_00000000_" + "x" * 43, "csrf_token": token})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert closed.post("/signin", data={"api_key": key}).status_code == 403  # no CSRF token

    done = closed.post("/signin", data={"api_key": key, "csrf_token": token, "next": "//evil.example/x"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/corpora"  # never off-site
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("corral_session=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert key[13:] not in cookie  # the secret never travels back
    page = closed.get("/corpora")
    assert page.status_code == 200 and key[:12] in page.text  # the key's prefix, as who is signed in
    assert _csrf(closed, "/corpora") != token  # signing in started a new session (and token)

    # A cookie that is not ours (edited, or signed with another secret) is no session.
    closed.cookies.clear()
    closed.cookies.set("corral_session", cookie.split(";")[0].split("=", 1)[1][:-2] + "xx")
    assert closed.get("/corpora", follow_redirects=False).status_code == 303

    sign_in(closed, key)
    out = closed.post("/signout", data={"csrf_token": _csrf(closed, "/corpora")}, follow_redirects=False)
    assert out.status_code == 303 and 'corral_session=""' in out.headers["set-cookie"]
    closed.cookies.clear()
    assert closed.get("/corpora", follow_redirects=False).headers["location"].startswith("/signin")


def test_a_revoked_key_is_signed_out_at_once(closed: TestClient) -> None:
    admin = issue_key("admin")
    reader = issue_key("read", name="to be revoked")
    sign_in(closed, reader)
    assert closed.get("/corpora").status_code == 200
    prefix = reader[:12]  # crl_ and 8 hex digits (the secret after it may hold "_" too)
    assert closed.delete(f"/v1/keys/{prefix}", headers=bearer(admin)).status_code == 200

    bounced = closed.get("/corpora", follow_redirects=False)
    assert bounced.status_code == 303
    assert bounced.headers["location"] == "/signin?next=%2Fcorpora&reason=revoked"
    assert 'corral_session=""' in bounced.headers["set-cookie"]  # the session is forgotten
    page = closed.get(bounced.headers["location"])
    assert "revoked or has expired" in page.text


def test_a_post_without_the_sessions_csrf_token_is_refused(closed: TestClient) -> None:
    sign_in(closed, issue_key("admin"))
    for data, headers in (({"name": "sneaky"}, {}), ({"name": "sneaky", "csrf_token": "0" * 64}, {}),
                          ({"name": "sneaky"}, {"X-CSRF-Token": "not-it"})):
        refused = closed.post("/corpora", data=data, headers=headers)
        assert refused.status_code == 403, refused.text
        assert "CSRF token is missing or wrong" in refused.text
    assert "sneaky" not in closed.get("/corpora").text
    # Another visitor's token (another session) does not do either.
    with TestClient(closed.app, base_url=BASE) as other:
        foreign = _csrf(other)
    assert closed.post("/corpora", data={"name": "sneaky", "csrf_token": foreign}).status_code == 403
    made = closed.post("/corpora", data={"name": "fine", "csrf_token": _csrf(closed, "/corpora")},
                       follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"] == "/corpora/fine/sources"


def test_a_key_without_the_scope_sees_why(closed: TestClient) -> None:
    sign_in(closed, issue_key("read"))
    admin = closed.get("/admin")
    assert admin.status_code == 403 and "lacks the &#39;admin&#39; scope" in admin.text
    created = closed.post("/corpora", data={"name": "nope", "csrf_token": _csrf(closed, "/corpora")})
    assert created.status_code == 403 and "lacks the &#39;ingest&#39; scope" in created.text
    bad = closed.get("/jobs?state=exploded")
    assert bad.status_code == 400 and "unknown job state" in bad.text  # a page, not JSON


def test_another_workspaces_pages_are_not_found(closed: TestClient, tmp_path: Path) -> None:
    b = bearer(issue_key("admin", workspace="bees-inc"))
    docs = tmp_path / "hive"
    docs.mkdir()
    (docs / "honey.md").write_text("# Honey\n\nBees make honey from nectar.\n")
    job_id = closed.post("/v1/corpora/bees-only/ingest", json={"path": str(docs)}, headers=b).json()["job_id"]
    closed.headers.update(b)
    try:
        assert wait_for_job(closed, job_id)["state"] == "succeeded"
        asked = closed.post("/v1/corpora/bees-only/runs", json={"question": "What do bees make?"})
        run_id = asked.json()["run_id"]
        deadline = time.monotonic() + 120
        while closed.get(f"/v1/runs/{run_id}").json()["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        closed.headers.pop("Authorization")

    sign_in(closed, issue_key("admin", workspace="default", name="operator"))
    token = _csrf(closed, "/corpora")
    for url in ("/corpora/bees-only", "/corpora/bees-only/documents/hive/honey.md",
                "/corpora/bees-only/ask", "/corpora/bees-only/sources", "/corpora/bees-only/search?q=honey",
                f"/jobs/{job_id}", f"/jobs/{job_id}/stream", f"/runs/{run_id}", f"/runs/{run_id}/card",
                f"/runs/{run_id}/events"):
        seen = closed.get(url)
        assert seen.status_code == 404, (url, seen.status_code)
    for url in (f"/jobs/{job_id}/cancel", f"/jobs/{job_id}/retry", f"/runs/{run_id}/feedback",
                f"/runs/{run_id}/cancel"):
        assert closed.post(url, data={"csrf_token": token, "rating": "1"}).status_code == 404, url
    for url in ("/corpora", "/jobs", "/runs"):
        shown = closed.get(url).text
        assert "bees-only" not in shown and job_id[:8] not in shown and run_id[:8] not in shown, url
    runs = closed.get(f"/v1/runs/{run_id}", headers=b).json()
    assert runs["state"] in ("succeeded", "failed")  # B's run is untouched


def test_the_open_local_server_signs_its_user_in(corral_env: Path) -> None:
    """Embedded mode on loopback with CORRAL_AUTH=auto: the REST API serves its one local user without
    a key, so the dashboard does too; signing in with a key switches to that key's workspace."""
    with TestClient(create_app(bind_host="127.0.0.1"), base_url=BASE) as c:
        page = c.get("/corpora")
        assert page.status_code == 200 and "local user" in page.text and "Admin" in page.text
        made = c.post("/corpora", data={"name": "mine", "csrf_token": _csrf(c, "/corpora")},
                      follow_redirects=False)
        assert made.status_code == 303
        sign_in(c, issue_key("read", workspace="team-b"))
        page = c.get("/corpora")
        assert "team-b" in page.text and "mine" not in page.text and "local user" not in page.text


def test_bad_sources_are_refused_with_the_reason(closed: TestClient) -> None:
    sign_in(closed, issue_key("ingest", "read"))
    token = _csrf(closed, "/corpora")
    closed.post("/corpora", data={"name": "src", "csrf_token": token})
    for url, why in (("http://127.0.0.1/repo.git", "fetching from it is refused"),
                     ("file:///etc", "admin scope"), ("", "empty")):
        refused = closed.post("/corpora/src/git", data={"url": url, "csrf_token": token},
                              headers={"HX-Request": "true"})
        assert refused.status_code in (400, 403), (url, refused.status_code, refused.text)
        assert why in refused.text and refused.headers["HX-Retarget"] == "#flash", (url, refused.text)
    # A .zip that is not one; then a body that is not multipart at all.
    bad = closed.post("/corpora/src/upload", files={"files": ("kb.zip", b"not a zip", "application/zip")},
                      headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert bad.status_code == 400 and "not a readable zip archive" in bad.text
    bad = closed.post("/corpora/src/upload", content=b"x", headers={"X-CSRF-Token": token,
                                                                     "Content-Type": "text/plain"})
    assert bad.status_code == 400 and "multipart/form-data" in bad.text
    assert closed.get("/jobs").text.count("/jobs/") == 0  # nothing was queued


def test_retry_failed_documents_indexes_them_once_fixed(closed: TestClient, tmp_path: Path) -> None:
    admin = issue_key("admin")
    docs = tmp_path / "notes"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nFine text.\n")
    (docs / "bad.txt").write_bytes(b"caf\xe9\n")  # not UTF-8: fails with the reason
    made = closed.post("/v1/corpora/notes/ingest", json={"path": str(docs)}, headers=bearer(admin))
    job_id = made.json()["job_id"]
    closed.headers.update(bearer(admin))
    try:
        assert wait_for_job(closed, job_id)["failed"] == 1
    finally:
        closed.headers.pop("Authorization")
    sign_in(closed, admin)
    page = closed.get(f"/jobs/{job_id}?items=failed")
    assert "invalid UTF-8" in page.text and "Retry failed documents (1)" in page.text

    (docs / "bad.txt").write_text("café\n")
    again = closed.post(f"/jobs/{job_id}/retry", data={"csrf_token": _csrf(closed, "/corpora")},
                        follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] != f"/jobs/{job_id}"
    new_id = again.headers["location"].rsplit("/", 1)[1]
    closed.headers.update(bearer(admin))
    try:
        finished = wait_for_job(closed, new_id)
    finally:
        closed.headers.pop("Authorization")
    assert finished["state"] == "succeeded" and finished["failed"] == 0
    shown = closed.get("/corpora/notes?state=failed")
    assert "No documents match" in shown.text


def test_the_document_view_shows_lines_chunks_and_why_a_document_failed(
    closed: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from corral.platform.web.routes import corpora as corpora_pages

    admin = issue_key("admin")
    docs = tmp_path / "odd"
    docs.mkdir()
    (docs / "a b#c?.md").write_text("# Title\n\none\ntwo <script>alert(1)</script>\nthree\n")
    (docs / "bad.txt").write_bytes(b"caf\xe9\n")
    made = closed.post("/v1/corpora/odd/ingest", json={"path": str(docs)}, headers=bearer(admin))
    closed.headers.update(bearer(admin))
    try:
        assert wait_for_job(closed, made.json()["job_id"])["state"] == "succeeded"
    finally:
        closed.headers.pop("Authorization")
    sign_in(closed, admin)
    listing = closed.get("/corpora/odd").text
    link = re.search(r'href="(/corpora/odd/documents/odd/a[^"]*)"', listing)
    assert link and link.group(1) == "/corpora/odd/documents/odd/a%20b%23c%3F.md"  # quoted, slashes kept
    page = closed.get(link.group(1))
    assert page.status_code == 200 and 'id="L5"' in page.text and 'id="L6"' not in page.text
    assert "&lt;script&gt;" in page.text and "<script>alert" not in page.text  # source is text, never HTML
    assert 'href="#L1-L5"' in page.text  # the chunk list links its line range

    monkeypatch.setattr(corpora_pages, "MAX_LINES", 2)
    cut = closed.get(link.group(1)).text
    assert 'id="L2"' in cut and 'id="L3"' not in cut and "The last 3 lines are not shown" in cut

    failed = closed.get("/corpora/odd/documents/odd/bad.txt")
    assert failed.status_code == 200 and "invalid UTF-8" in failed.text and "No text to show" in failed.text
