"""Signed webhooks: a real HTTP receiver on 127.0.0.1 gets ``job.finished`` after an ingest; a
receiver that is down gets retries with backoff; targets are checked for SSRF; workspaces are
isolated; two runners never claim one delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from corral.platform.api.app import create_app
from tests.conftest import bearer, issue_key

WaitJob = Callable[..., dict[str, Any]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self, port: int | None = None, status: int = 200) -> None:
        self.port = port or free_port()
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/corral"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body, "at": time.time()})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def wait_for(condition: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    """What a receiver does: recompute the HMAC over the raw body, refuse stale timestamps."""
    timestamp = headers["X-Corral-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Corral-Signature"], f"v1={expected}")
    assert abs(time.time() - int(timestamp)) < 120


@pytest.fixture
def hook_env(corral_env: Path, monkeypatch: pytest.MonkeyPatch,
             reset_caches: Callable[[], None]) -> Path:
    monkeypatch.setenv("CORRAL_WEBHOOK_ALLOWED_HOSTS", '["127.0.0.1"]')
    monkeypatch.setenv("CORRAL_WEBHOOK_POLL_SECONDS", "0.05")
    monkeypatch.setenv("CORRAL_WEBHOOK_BACKOFF_SECONDS", "0.5")
    monkeypatch.setenv("CORRAL_WEBHOOK_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", f'["{corral_env.parent}"]')  # tmp_path
    reset_caches()
    return corral_env


@pytest.fixture
def client(hook_env: Path) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:  # open: the local user
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def deliveries(client: TestClient, hook_id: int) -> list[dict[str, Any]]:
    reply = client.get(f"/v1/webhooks/{hook_id}/deliveries")
    assert reply.status_code == 200, reply.text
    return list(reply.json()["items"])


def test_job_finished_is_delivered_signed(client: TestClient, receiver: Receiver, tmp_path: Path,
                                          wait_job: WaitJob) -> None:
    made = client.post("/v1/webhooks", json={"url": receiver.url, "events": ["job.finished"]})
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["job.finished"]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nAlpha.\n")

    accepted = client.post("/v1/corpora/docs/ingest", json={"path": str(docs)})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert wait_job(client, job_id)["state"] == "succeeded"
    got = wait_for(lambda: receiver.requests, what="the webhook")[0]

    headers, body = got["headers"], got["body"]
    verify(hook["secret"], headers, body)
    assert got["path"] == "/hooks/corral"
    assert headers["X-Corral-Event"] == "job.finished"
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert event["event"] == "job.finished"
    assert event["data"]["job"]["id"] == job_id and event["data"]["job"]["state"] == "succeeded"
    assert event["data"]["job"]["corpus"] == "docs"
    datetime.fromisoformat(event["created_at"])

    delivered = wait_for(lambda: [d for d in deliveries(client, hook["id"]) if d["state"] == "delivered"],
                         what="the delivery to be recorded")
    assert str(delivered[0]["id"]) == headers["X-Corral-Delivery"]
    [attempt] = delivered[0]["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None and attempt["duration_ms"] >= 0
    listed = client.get("/v1/webhooks").json()
    assert listed["total"] == 1 and "secret" not in listed["items"][0]


def enqueue(event: str = "job.finished", data: dict[str, Any] | None = None) -> int:
    from corral.core.db import session_scope
    from corral.core.services import DEFAULT_WORKSPACE, get_or_create_workspace
    from corral.core.services.webhooks import enqueue_event

    with session_scope() as session:
        ws = get_or_create_workspace(session, DEFAULT_WORKSPACE)
        return enqueue_event(session, ws.id, event, data or {"job": {"id": "x"}})


def test_receiver_down_then_back_gets_it_with_backoff(client: TestClient) -> None:
    down = Receiver()  # its port is free: nothing listens yet
    hook = client.post("/v1/webhooks", json={"url": down.url, "events": ["job.finished"]}).json()
    assert enqueue() == 1
    pending = wait_for(lambda: [d for d in deliveries(client, hook["id"]) if len(d["attempts"]) >= 3],
                       what="three failed attempts")[0]
    assert pending["state"] == "pending" and pending["next_attempt_at"] is not None
    for attempt in pending["attempts"]:
        assert attempt["status_code"] is None and "Connect" in attempt["error"]
    at = [datetime.fromisoformat(a["at"]).timestamp() for a in pending["attempts"]]
    assert at[1] - at[0] >= 0.45 and at[2] - at[1] >= 0.95  # 0.5 s, then twice that

    down.start()
    try:
        done = wait_for(lambda: [d for d in deliveries(client, hook["id"]) if d["state"] == "delivered"],
                        what="the delivery once the receiver is back")[0]
    finally:
        down.stop()
    assert len(down.requests) == 1
    assert done["attempts"][-1]["status_code"] == 200 and len(done["attempts"]) >= 4
    verify(hook["secret"], down.requests[0]["headers"], down.requests[0]["body"])


def test_failing_receiver_is_given_up_after_the_last_attempt(
    hook_env: Path, monkeypatch: pytest.MonkeyPatch, reset_caches: Callable[[], None],
) -> None:
    monkeypatch.setenv("CORRAL_WEBHOOK_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CORRAL_WEBHOOK_BACKOFF_SECONDS", "0.1")
    reset_caches()
    failing = Receiver(status=500).start()
    try:
        with TestClient(create_app(), base_url="http://127.0.0.1") as client:
            hook = client.post("/v1/webhooks", json={"url": failing.url,
                                                     "events": ["run.finished"]}).json()
            assert enqueue("job.finished") == 0  # not subscribed
            assert enqueue("run.finished", {"run": {"id": "r1"}}) == 1
            failed = wait_for(lambda: [d for d in deliveries(client, hook["id"])
                                       if d["state"] == "failed"], what="the delivery to fail")[0]
    finally:
        failing.stop()
    assert [(a["status_code"], a["error"]) for a in failed["attempts"]] == [(500, "HTTP 500")] * 2
    assert failed["next_attempt_at"] is None and len(failing.requests) == 2
    assert failing.requests[0]["headers"]["X-Corral-Delivery"] == str(failed["id"])


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("http://127.0.0.1:9/x", 403),  # loopback
        ("http://localhost:9/x", 403),
        ("http://169.254.169.254/latest/meta-data", 403),  # cloud metadata
        ("http://10.1.2.3/", 403),
        ("http://[::ffff:192.168.0.1]/", 403),  # IPv4 hidden in IPv6
        ("http://0.0.0.0/", 403),
        ("ftp://example.com/", 400),
        ("http://user:pw@example.com/", 400),
        ("not a url", 400),
        ("http://no-such-host.invalid/", 400),
    ],
)
def test_private_and_bad_targets_are_refused(corral_env: Path, url: str, status: int) -> None:
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        reply = client.post("/v1/webhooks", json={"url": url, "events": ["job.finished"]})
    assert reply.status_code == status, reply.text


def test_bad_events_are_refused(client: TestClient, receiver: Receiver) -> None:
    for events in (["job.started"], []):
        reply = client.post("/v1/webhooks", json={"url": receiver.url, "events": events})
        assert reply.status_code in (400, 422), reply.text


def test_target_checked_again_before_each_attempt(hook_env: Path, receiver: Receiver) -> None:
    """A host allowed when the webhook was made and no longer allowed is refused at delivery."""
    from corral.core.config import get_settings
    from corral.core.db import WebhookDelivery, session_scope
    from corral.platform.webhooks import DeliveryRunner

    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        hook = client.post("/v1/webhooks", json={"url": receiver.url,
                                                 "events": ["job.finished"]}).json()
    # The app (and its runner) stopped; a runner that no longer allows 127.0.0.1 takes over.
    enqueue()
    strict = get_settings().model_copy(update={"webhook_allowed_hosts": []})
    assert DeliveryRunner(strict).run_once() == 1
    with session_scope() as session:
        [delivery] = session.query(WebhookDelivery).filter_by(webhook_id=hook["id"]).all()
        assert delivery.state == "pending"
        assert "loopback" in delivery.attempts[0]["error"]
    assert receiver.requests == []


def test_a_stopping_runner_hands_its_claims_back(hook_env: Path, receiver: Receiver) -> None:
    from datetime import UTC

    from corral.core.db import WebhookDelivery, session_scope
    from corral.platform.webhooks import DeliveryRunner

    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        client.post("/v1/webhooks", json={"url": receiver.url, "events": ["job.finished"]})
    enqueue()
    enqueue()
    stopping = DeliveryRunner()
    stopping.stop()
    assert stopping.run_once() == 0  # claimed both, sent none, gave them back
    with session_scope() as session:
        rows = session.query(WebhookDelivery).all()
        assert [(d.state, d.attempts) for d in rows] == [("pending", [])] * 2
        assert all(d.next_attempt_at is not None
                   and d.next_attempt_at.replace(tzinfo=UTC) <= datetime.now(UTC) for d in rows)
    assert DeliveryRunner().run_once() == 2
    assert len(receiver.requests) == 2


def test_webhooks_belong_to_their_workspace(hook_env: Path, monkeypatch: pytest.MonkeyPatch,
                                            receiver: Receiver) -> None:
    monkeypatch.setenv("CORRAL_AUTH", "required")
    ours, theirs = issue_key("admin", workspace="ours"), issue_key("admin", workspace="theirs")
    reader = issue_key("read", workspace="ours")
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        made = client.post("/v1/webhooks", headers=bearer(ours),
                           json={"url": receiver.url, "events": ["job.finished", "run.finished"]})
        assert made.status_code == 201, made.text
        hook_id = made.json()["id"]
        assert client.get("/v1/webhooks", headers=bearer(ours)).json()["total"] == 1
        assert client.get("/v1/webhooks", headers=bearer(theirs)).json()["total"] == 0
        assert client.get("/v1/webhooks", headers=bearer(reader)).status_code == 403
        for method, url in (("get", f"/v1/webhooks/{hook_id}/deliveries"),
                            ("delete", f"/v1/webhooks/{hook_id}"),
                            ("get", "/v1/webhooks/999999/deliveries")):
            reply = getattr(client, method)(url, headers=bearer(theirs))
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"]["type"] == "not_found"
        # An event of one workspace reaches only its own webhooks.
        from corral.core.db import session_scope
        from corral.core.services import get_or_create_workspace
        from corral.core.services.webhooks import enqueue_event

        with session_scope() as session:
            assert enqueue_event(session, get_or_create_workspace(session, "theirs").id,
                                 "job.finished", {}) == 0
        assert client.delete(f"/v1/webhooks/{hook_id}", headers=bearer(ours)).status_code == 204
        assert client.delete(f"/v1/webhooks/{hook_id}", headers=bearer(ours)).status_code == 404


def test_two_runners_never_claim_one_delivery(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str,
    reset_caches: Callable[[], None],
) -> None:
    from corral.core.db import Webhook, get_sessionmaker
    from corral.core.db.migrate import upgrade
    from corral.core.services import DEFAULT_WORKSPACE, get_or_create_workspace
    from corral.core.services.webhooks import claim_due, enqueue_event

    monkeypatch.setenv("CORRAL_DATABASE_URL", postgres_url)
    reset_caches()
    upgrade()
    factory = get_sessionmaker()
    with factory() as session, session.begin():
        ws = get_or_create_workspace(session, DEFAULT_WORKSPACE)
        session.add(Webhook(workspace_id=ws.id, url="http://127.0.0.1:9/", secret="s",
                            events=["job.finished"], active=True))
        session.flush()
        assert enqueue_event(session, ws.id, "job.finished", {"n": 1}) == 1
        assert enqueue_event(session, ws.id, "job.finished", {"n": 2}) == 1
    first, second = factory(), factory()
    try:
        mine = claim_due(first, lease_seconds=60, limit=1)  # locks one row, not yet committed
        theirs = claim_due(second, lease_seconds=60)  # skips the locked row, takes the other
        assert len(mine) == len(theirs) == 1 and mine[0][0].id != theirs[0][0].id
        first.commit()
        second.commit()
        with factory() as third:
            assert claim_due(third, lease_seconds=60) == []  # both leased: not due again yet
    finally:
        first.close()
        second.close()
