"""Who may use the API: open only for the one local user of an embedded loopback server; keys with
scopes everywhere else; Host and body-size checks before any of it; keys and workspaces managed from
the CLI and from /v1/keys."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from corral.platform.api.app import create_app
from tests.conftest import bearer, clear_caches, issue_key

BASE = "http://127.0.0.1"
WRONG_KEY = "invalid API key: unknown, revoked or expired"
runner = CliRunner()


@pytest.fixture
def client(corral_env: Path) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url=BASE) as c:
        yield c


def closed_client(bind_host: str | None = None) -> TestClient:
    """A client of the app bound to ``bind_host``, naming that host (loopback for wildcards)."""
    host = bind_host if bind_host and bind_host not in ("0.0.0.0", "::") else "127.0.0.1"
    return TestClient(create_app(bind_host=bind_host), base_url=f"http://{host}")


def assert_unauthenticated(response: Any, message: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["type"] == "unauthenticated"
    if message is not None:
        assert error["message"] == message


def assert_aware_timestamps(value: Any) -> int:
    """Every ``*_at`` field in ``value`` is an ISO timestamp with a zone; returns how many."""
    count = 0
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith("_at") and v is not None:
                assert datetime.fromisoformat(v).tzinfo is not None, (k, v)
                count += 1
            count += assert_aware_timestamps(v)
    elif isinstance(value, list):
        count += sum(assert_aware_timestamps(v) for v in value)
    return count


# --- open or closed --------------------------------------------------------------------------


def test_embedded_loopback_server_is_open_without_keys(client: TestClient) -> None:
    assert client.get("/v1/corpora").status_code == 200
    assert client.get("/v1/keys").status_code == 200  # the local user holds every scope


def test_auth_required_closes_the_embedded_server(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_AUTH", "required")
    clear_caches()
    with closed_client() as c:
        assert_unauthenticated(c.get("/v1/corpora"))
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/corpora", headers=bearer(issue_key("read"))).status_code == 200


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "::", "192.0.2.7"])
def test_a_non_loopback_bind_is_never_open(corral_env: Path, bind_host: str) -> None:
    with closed_client(bind_host) as c:
        assert_unauthenticated(c.get("/v1/corpora"))
        assert_unauthenticated(c.post("/v1/corpora/docs/ask", json={"question": "hi?"}))
        assert c.get("/v1/corpora", headers=bearer(issue_key("read"))).status_code == 200


@pytest.mark.services
def test_server_mode_is_never_open(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str
) -> None:
    from corral.core.db.migrate import upgrade

    monkeypatch.setenv("CORRAL_MODE", "server")
    monkeypatch.setenv("CORRAL_DATABASE_URL", postgres_url)
    monkeypatch.setenv("CORRAL_REDIS_URL", redis_url)
    clear_caches()
    upgrade()
    with closed_client("127.0.0.1") as c:  # loopback and CORRAL_AUTH=auto: still closed
        assert_unauthenticated(c.get("/v1/corpora"))
        assert_unauthenticated(c.get("/v1/keys"))
        assert c.get("/v1/corpora", headers=bearer(issue_key("read"))).status_code == 200


# --- keys ------------------------------------------------------------------------------------


def test_bad_keys_get_one_401_message(corral_env: Path) -> None:
    from corral.core.db import ApiKey, session_scope
    from corral.core.services.keys import hash_key

    revoked, expired, good = issue_key("read"), issue_key("read"), issue_key("read")
    with session_scope() as session:
        for secret, field in ((revoked, "revoked_at"), (expired, "expires_at")):
            key = session.query(ApiKey).filter_by(key_hash=hash_key(secret)).one()
            setattr(key, field, datetime.now(UTC) - timedelta(minutes=1))
    unknown = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    with closed_client("0.0.0.0") as c:
        for secret in (unknown, "crl_nothex!_x", "not-a-key", "x" * 5000, revoked, expired):
            assert_unauthenticated(c.get("/v1/corpora", headers=bearer(secret)), WRONG_KEY)
            assert_unauthenticated(c.get("/v1/corpora", headers={"X-API-Key": secret}), WRONG_KEY)
        for header in ("Basic dXNlcjpwYXNz", "Bearer", "Token " + good):
            assert_unauthenticated(c.get("/v1/corpora", headers={"Authorization": header}))
        assert c.get("/v1/corpora", headers=bearer(good)).status_code == 200
        assert c.get("/v1/corpora", headers={"X-API-Key": good}).status_code == 200


def test_a_bad_key_is_refused_even_where_the_server_is_open(client: TestClient) -> None:
    """A key that is sent is checked: an open server does not fall back to the local user."""
    assert_unauthenticated(client.get("/v1/corpora", headers=bearer("crl_00000000_" + "a" * 43)), WRONG_KEY)


def test_scopes_are_enforced(corral_env: Path, tmp_path: Path) -> None:
    with closed_client("0.0.0.0") as c:
        reader = bearer(issue_key("read"))
        assert c.get("/v1/corpora", headers=reader).status_code == 200
        for method, url, body in (("post", "/v1/corpora/docs/ingest", {"path": str(tmp_path)}),
                                  ("post", "/v1/corpora/docs/ask", {"question": "hi?"}),
                                  ("get", "/v1/keys", None),
                                  ("post", "/v1/keys", {"name": "mine", "scopes": ["admin"]})):
            r = c.request(method.upper(), url, headers=reader, json=body)
            assert r.status_code == 403, (url, r.text)
            assert r.json()["error"]["type"] == "permission_denied"
        # Non-operators manage their own workspace only.
        team_admin = bearer(issue_key("admin", workspace="team"))
        assert c.get("/v1/workspace", headers=team_admin).json()["name"] == "team"
        assert c.get("/v1/workspaces", headers=team_admin).status_code == 403


def test_keys_endpoints_show_the_secret_once(corral_env: Path) -> None:
    with closed_client("0.0.0.0") as c:
        admin = bearer(issue_key("admin"))
        made = c.post("/v1/keys", headers=admin, json={
            "name": "ci", "scopes": ["read", "ask"],
            "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
        assert made.status_code == 201, made.text
        issued = made.json()
        secret, prefix = issued["secret"], issued["prefix"]
        assert secret.startswith(prefix + "_") and issued["scopes"] == ["read", "ask"]
        assert assert_aware_timestamps(issued) >= 2  # created_at, expires_at
        assert c.get("/v1/corpora", headers=bearer(secret)).status_code == 200

        listed = c.get("/v1/keys", headers=admin)
        assert secret not in listed.text and "secret" not in listed.text
        row = next(k for k in listed.json()["items"] if k["prefix"] == prefix)
        assert row["last_used_at"] is not None and assert_aware_timestamps(listed.json()) >= 4

        revoked = c.delete(f"/v1/keys/{issued['id']}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert_aware_timestamps(revoked.json())
        assert_unauthenticated(c.get("/v1/corpora", headers=bearer(secret)), WRONG_KEY)
        assert c.delete(f"/v1/keys/{prefix}", headers=admin).status_code == 200  # idempotent, by prefix
        for missing in ("999999", "\u00b2", "0" * 40, "crl_zzzzzzzz"):  # "²" passes str.isdigit()
            assert c.delete(f"/v1/keys/{missing}", headers=admin).status_code == 404, missing


def test_workspace_endpoints_and_their_timestamps(corral_env: Path) -> None:
    with closed_client("0.0.0.0") as c:
        operator = bearer(issue_key("admin"))
        made = c.post("/v1/workspaces", headers=operator, json={"name": "team", "monthly_token_budget": 5})
        assert made.status_code == 201, made.text
        assert assert_aware_timestamps(made.json()) >= 2  # the workspace's and its admin key's
        team = bearer(made.json()["admin_key"]["secret"])
        assert c.get("/v1/workspace", headers=team).json()["monthly_token_budget"] == 5
        patched = c.patch("/v1/workspace", headers=team, json={"monthly_token_budget": None})
        assert patched.status_code == 200 and patched.json()["monthly_token_budget"] is None
        assert c.post("/v1/workspaces", headers=operator, json={"name": "team"}).status_code == 409
        for url in ("/v1/workspaces", "/v1/workspace", "/v1/keys", "/v1/jobs", "/v1/corpora"):
            assert_aware_timestamps(c.get(url, headers=operator).json())


# --- before routing: Host and body size --------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8321", "127.0.0.1.evil.example",
                                  "localhost.evil.example", ""])
def test_foreign_host_headers_are_refused(client: TestClient, host: str) -> None:
    r = client.get("/v1/corpora", headers={"Host": host})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_host", r.text


@pytest.mark.parametrize("host", ["localhost:8321", "127.0.0.1:8321", "LOCALHOST", "[::1]:8321"])
def test_loopback_names_are_answered_on_a_loopback_bind(client: TestClient, host: str) -> None:
    assert client.get("/v1/corpora", headers={"Host": host}).status_code == 200


def test_configured_hosts_are_answered(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_ALLOWED_HOSTS", '["corral.example.com"]')
    clear_caches()
    with closed_client() as c:
        assert c.get("/healthz", headers={"Host": "corral.example.com"}).status_code == 200
        assert c.get("/healthz", headers={"Host": "evil.example"}).status_code == 400


def big_body() -> bytes:
    return b'{"question": "' + b"x" * (2 * 1024 * 1024) + b'"}'


def test_a_2mb_json_body_is_413(client: TestClient) -> None:
    headers = {"Content-Type": "application/json"}
    declared = client.post("/v1/corpora/docs/ask", content=big_body(), headers=headers)
    assert declared.status_code == 413 and declared.json()["error"]["type"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        body = big_body()
        for i in range(0, len(body), 64 * 1024):
            yield body[i:i + 64 * 1024]

    chunked = client.post("/v1/corpora/docs/ask", content=chunks(), headers=headers)
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413 and chunked.json()["error"]["type"] == "payload_too_large"


async def _asgi_post(app: Any, chunks: list[bytes]) -> tuple[int, int]:
    """POST ``chunks`` as a streamed body straight to the ASGI app; returns (status, chunks read)."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/keys", "raw_path": b"/v1/keys",
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8321)}
    await app(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), read


def test_a_streamed_body_is_refused_as_it_passes_the_limit(corral_env: Path) -> None:
    import anyio

    app = create_app()
    chunks = [b"x" * (256 * 1024)] * 40  # 10 MB in 256 KB pieces
    status, read = anyio.run(_asgi_post, app, chunks)
    assert status == 413 and read <= 5  # refused after ~1 MB, the rest never read


# --- the CLI ---------------------------------------------------------------------------------


def cli(*args: str) -> str:
    from corral.platform.cli.app import app

    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def test_cli_keys_create_list_revoke(corral_env: Path) -> None:
    made = json.loads(cli("keys", "create", "--json", "--name", "ci", "--scope", "read",
                          "--workspace", "team", "--expires-in-days", "3"))
    secret, prefix = made["secret"], made["prefix"]
    assert made["workspace"] == "team" and made["scopes"] == ["read"] and secret.startswith(prefix)
    assert_aware_timestamps(made)
    plain = cli("keys", "create", "--admin")  # prints the whole key once, on its own line
    assert any(line.startswith("crl_") and line.count("_") >= 2 for line in plain.splitlines())

    listed = json.loads(cli("keys", "list", "--json"))
    row = next(k for k in listed if k["prefix"] == prefix)
    assert row["workspace"] == "team" and "secret" not in row and secret not in json.dumps(listed)
    table = cli("keys", "list")
    assert prefix in table and secret not in table
    assert [k["prefix"] for k in json.loads(cli("keys", "list", "--json", "--workspace", "team"))] == [prefix]

    with closed_client("0.0.0.0") as c:
        assert c.get("/v1/corpora", headers=bearer(secret)).status_code == 200
        cli("keys", "revoke", prefix)
        assert_unauthenticated(c.get("/v1/corpora", headers=bearer(secret)), WRONG_KEY)
    assert json.loads(cli("keys", "list", "--json", "--workspace", "team"))[0]["revoked_at"]


def test_key_names_are_text_not_markup_or_control_codes(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.platform.cli.commands import keys_cmd

    with closed_client("0.0.0.0") as c:
        admin = bearer(issue_key("admin"))
        for name in ("[/]", "[b]boss[/]", "[link=http://evil.example]x[/link]"):
            made = c.post("/v1/keys", headers=admin, json={"name": name, "scopes": ["read"]})
            assert made.status_code == 201, made.text
        for name in ("\x1b[31mred", "a\nb", "bell\x07"):
            r = c.post("/v1/keys", headers=admin, json={"name": name, "scopes": ["read"]})
            assert r.status_code == 400 and "control characters" in r.json()["error"]["message"]
    monkeypatch.setattr(keys_cmd.console, "width", 250)  # whole cells, whatever the terminal
    table = cli("keys", "list")  # a name that is bad markup used to crash it
    assert "[/]" in table and "[b]boss[/]" in table


def test_cli_refuses_unknown_scopes_and_keys(corral_env: Path) -> None:
    from corral.platform.cli.app import app

    bad_scope = runner.invoke(app, ["keys", "create", "--scope", "root"])
    assert bad_scope.exit_code != 0 and "unknown scope" in bad_scope.output
    missing = runner.invoke(app, ["keys", "revoke", "crl_00000000"])
    assert missing.exit_code != 0 and "no API key" in missing.output


def test_cli_workspaces_create_list_budget(corral_env: Path) -> None:
    from corral.platform.cli.app import app

    cli("workspaces", "create", "team", "--budget", "1000")
    rows: Callable[[], dict[str, Any]] = lambda: {  # noqa: E731
        r["name"]: r for r in json.loads(cli("workspaces", "list", "--json"))}
    assert rows()["team"]["monthly_token_budget"] == 1000
    assert rows()["team"]["tokens_this_month"] == 0
    cli("workspaces", "budget", "team", "5000")
    assert rows()["team"]["monthly_token_budget"] == 5000
    cli("workspaces", "budget", "team")
    assert rows()["team"]["monthly_token_budget"] is None
    assert "team" in cli("workspaces", "list")
    again = runner.invoke(app, ["workspaces", "create", "team"])
    assert again.exit_code != 0 and "already exists" in again.output
    bad = runner.invoke(app, ["workspaces", "create", "../etc"])
    assert bad.exit_code != 0
