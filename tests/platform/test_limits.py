"""Per-key rate limits (requests and tokens a minute) and workspace monthly token budgets."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from corral.platform.api.app import create_app
from tests.conftest import bearer, issue_key

WaitJob = Callable[..., dict[str, Any]]


@pytest.fixture
def client(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CORRAL_AUTH", "required")
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", f'["{corral_env.parent}"]')  # tmp_path
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def limited_key(client: TestClient, admin: str, **limits: int) -> str:
    made = client.post("/v1/keys", headers=bearer(admin),
                       json={"name": f"limited-{uuid.uuid4().hex[:6]}", "scopes": ["read", "ask"],
                             **limits})
    assert made.status_code == 201, made.text
    return str(made.json()["secret"])


def key_id(client: TestClient, admin: str, secret: str) -> int:
    keys = client.get("/v1/keys", headers=bearer(admin)).json()["items"]
    return next(k["id"] for k in keys if secret.startswith(k["prefix"]))


def assert_request_limit(client: TestClient, admin: str) -> None:
    """A key limited to 3 requests a minute gets its 4th refused; other keys go on."""
    limited = limited_key(client, admin, requests_per_minute=3)
    for _ in range(3):
        assert client.get("/v1/corpora", headers=bearer(limited)).status_code == 200
    refused = client.get("/v1/corpora", headers=bearer(limited))
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["type"] == "rate_limited"
    assert "3 requests a minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 120  # the window fades over 2 minutes
    # Every route counts, whatever its scope.
    assert client.get("/v1/jobs", headers=bearer(limited)).status_code == 429
    # The admin key (deployment defaults) and a fresh key are not affected.
    other = limited_key(client, admin, requests_per_minute=3)
    assert client.get("/v1/corpora", headers=bearer(other)).status_code == 200
    assert client.get("/v1/corpora", headers=bearer(admin)).status_code == 200


def test_requests_per_minute_embedded(client: TestClient) -> None:
    assert_request_limit(client, issue_key("admin"))


def test_deployment_default_applies_to_keys_without_their_own(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_RATE_LIMIT_REQUESTS_PER_MINUTE", "2")
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:  # open: the local user
        assert [client.get("/healthz").status_code for _ in range(4)] == [200] * 4  # not limited
        codes = [client.get("/v1/corpora").status_code for _ in range(3)]
        assert codes == [200, 200, 429]


def test_requests_per_minute_server_mode_in_redis(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str,
    reset_caches: Callable[[], None],
) -> None:
    from corral.core.db.migrate import upgrade

    monkeypatch.setenv("CORRAL_MODE", "server")
    monkeypatch.setenv("CORRAL_DATABASE_URL", postgres_url)
    monkeypatch.setenv("CORRAL_REDIS_URL", redis_url)
    monkeypatch.setenv("CORRAL_RATE_LIMIT_NAMESPACE", f"test-{uuid.uuid4().hex[:8]}")
    reset_caches()
    upgrade()
    admin = issue_key("admin")
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        assert_request_limit(client, admin)
    # The counters are in Redis: a second API process (a new app and limiter) sees them.
    from corral.platform.api import ratelimit

    ratelimit._built = None
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        limited = [k for k in client.get("/v1/keys", headers=bearer(admin)).json()["items"]
                   if k["requests_per_minute"] == 3]
        assert limited
        import redis

        names = redis.Redis.from_url(redis_url).keys(f"*{ratelimit.get_limiter().namespace}*")
        assert names, "no counters in Redis"


def test_unreachable_redis_fails_open(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str,
    reset_caches: Callable[[], None], caplog: pytest.LogCaptureFixture,
) -> None:
    from corral.core.db.migrate import upgrade

    monkeypatch.setenv("CORRAL_MODE", "server")
    monkeypatch.setenv("CORRAL_DATABASE_URL", postgres_url)
    monkeypatch.setenv("CORRAL_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    monkeypatch.setenv("CORRAL_RATE_LIMIT_REQUESTS_PER_MINUTE", "1")
    reset_caches()
    upgrade()
    admin = issue_key("admin")
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        codes = [client.get("/v1/corpora", headers=bearer(admin)).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert "rate limits are not enforced" in caplog.text


def test_tokens_per_minute(client: TestClient) -> None:
    from corral.platform.api.ratelimit import charge_tokens

    admin = issue_key("admin")
    limited = limited_key(client, admin, tokens_per_minute=100)
    other = limited_key(client, admin, tokens_per_minute=100)
    ident = key_id(client, admin, limited)
    charge_tokens(ident, 99)  # one token left: still accepted (the check reserves nothing)
    first = client.post("/v1/corpora/nope/ask", headers=bearer(limited), json={"question": "hi?"})
    assert first.status_code == 404, first.text  # past the limits, on to the corpus lookup
    charge_tokens(ident, 5_000)  # a charge is never refused, even past the limit
    refused = client.post("/v1/corpora/nope/ask", headers=bearer(limited), json={"question": "hi?"})
    assert refused.status_code == 429, refused.text
    assert "100 model tokens a minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 120  # the window fades over 2 minutes
    # Reads are not token-limited, and another key has its own tokens.
    assert client.get("/v1/corpora", headers=bearer(limited)).status_code == 200
    assert client.post("/v1/corpora/nope/ask", headers=bearer(other),
                       json={"question": "hi?"}).status_code == 404


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "policy.md").write_text("# Policy\n\nRefunds are paid within five working days.\n")
    return root


def test_ask_charges_tokens_and_budget_stops_the_workspace(
    client: TestClient, docs: Path, wait_job: WaitJob
) -> None:
    admin = issue_key("admin")
    job = client.post("/v1/corpora/docs/ingest", headers=bearer(admin), json={"path": str(docs)})
    assert wait_job_with(client, admin, job.json()["job_id"], wait_job)["state"] == "succeeded"

    # A key allowed 10 tokens a minute: its first ask spends more than that, its second is refused.
    small = limited_key(client, admin, tokens_per_minute=10)
    question = {"question": "How fast are refunds paid?"}
    reply = client.post("/v1/corpora/docs/ask", headers=bearer(small), json=question)
    assert reply.status_code == 200, reply.text
    spent = reply.json()["prompt_tokens"] + reply.json()["completion_tokens"]
    assert spent > 10
    again = client.post("/v1/corpora/docs/ask", headers=bearer(small), json=question)
    assert again.status_code == 429 and "model tokens a minute" in again.text

    # The workspace's monthly budget: below what it has used, every key of it is refused.
    patched = client.patch("/v1/workspace", headers=bearer(admin), json={"monthly_token_budget": spent})
    assert patched.status_code == 200, patched.text
    assert patched.json()["tokens_this_month"] >= spent
    refused = client.post("/v1/corpora/docs/ask", headers=bearer(admin), json=question)
    assert refused.status_code == 429, refused.text
    message = refused.json()["error"]["message"]
    assert "monthly token budget" in message and f"of its {spent:,} tokens" in message
    now = datetime.now(UTC)
    renews = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert abs(int(refused.headers["Retry-After"]) - (renews - now).total_seconds()) < 120
    # Another workspace is not affected by this one's budget.
    other_ws = issue_key("ask", workspace="other")
    assert client.post("/v1/corpora/docs/ask", headers=bearer(other_ws),
                       json=question).status_code == 404  # its own (empty) corpora, not a 429
    # Raising the budget lets the workspace ask again.
    client.patch("/v1/workspace", headers=bearer(admin), json={"monthly_token_budget": spent * 100})
    assert client.post("/v1/corpora/docs/ask", headers=bearer(admin), json=question).status_code == 200


def wait_job_with(client: TestClient, admin: str, job_id: str, wait_job: WaitJob) -> dict[str, Any]:
    client.headers.update(bearer(admin))
    try:
        return wait_job(client, job_id)
    finally:
        del client.headers["Authorization"]


def test_budget_renews_on_the_first_of_next_month(corral_env: Path) -> None:
    from corral.core.db import session_scope
    from corral.core.db.migrate import ensure_schema
    from corral.core.errors import RateLimitedError
    from corral.core.services import get_or_create_workspace
    from corral.core.services.usage import check_budget, next_month_start

    assert next_month_start(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_month_start(datetime(2027, 1, 31, 12, tzinfo=UTC)) == datetime(2027, 2, 1, tzinfo=UTC)
    ensure_schema()
    with session_scope() as session:
        ws = get_or_create_workspace(session, "budgeted")
        check_budget(session, ws.id)  # no budget: never refused
        ws.monthly_token_budget = 0
        session.flush()
        with pytest.raises(RateLimitedError) as caught:
            check_budget(session, ws.id, now=datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert caught.value.retry_after == 3600
    assert "'budgeted' has used 0 of its 0 tokens" in str(caught.value)


@pytest.mark.parametrize(
    ("window", "limit", "expected"),
    [
        ((0, 0.0, 0, 0.0), 3, 0.0),  # nothing counted
        ((0, 0.0, 3, 100.0), 3, 60.0),  # the current minute full: it ends in 40 s, fades 20 s more
        ((6, 30.0, 0, 90.0), 3, 10.0),  # the previous minute fading: 6 * (30 - t) / 60 <= 2
        ((0, 0.0, 600, 75.0), 100, 15.0 + 60 * (1 - 99 / 600)),  # a big charge: waits past the minute
    ],
)
def test_wait_seconds(window: tuple[int, float, int, float], limit: int, expected: float) -> None:
    from corral.platform.api.ratelimit import wait_seconds

    assert math.isclose(wait_seconds(*window, limit=limit, expiry=60), expected, abs_tol=1e-9)
