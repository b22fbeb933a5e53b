"""Asks as background runs, over a real HTTP server: a user submits a question, follows its progress
live (Server-Sent Events), reads the run, lists runs, cancels one mid-answer, walks away from a stream
and finds the answer later, rates it — and another workspace sees none of it. Then the same run on a
separate Celery agent worker over Redis and PostgreSQL."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import bearer, issue_key
from tests.platform.conftest import enter_server_mode, serve_app, start_worker, stop_worker

BIN = Path(sys.executable).parent
Event = dict[str, Any]


def _sse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events from a line stream: ``{"event", "id", "data"}`` (``data`` parsed)."""
    event: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue  # a ping
        key, _, value = line.partition(":")
        event[key] = value[1:] if value.startswith(" ") else value


@contextmanager
def _stream(client: httpx.Client, url: str, **kwargs: Any) -> Iterator[Iterator[Event]]:
    with client.stream("GET", url, timeout=120, **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield _sse(response.iter_lines())


def _follow(client: httpx.Client, url: str, **kwargs: Any) -> list[Event]:
    with _stream(client, url, **kwargs) as events:
        return list(events)


@pytest.fixture
def allowed_roots(corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local paths under the test's folder may be ingested."""
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", json.dumps([str(tmp_path)]))
    monkeypatch.setenv("CORRAL_WEBHOOK_ALLOWED_HOSTS", '["127.0.0.1"]')
    from corral.core.config import get_settings

    get_settings.cache_clear()


@pytest.fixture
def server(allowed_roots: None) -> Iterator[str]:
    """``corral serve`` in this process (embedded mode, open on loopback), on a free port."""
    with serve_app() as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def _ingest(client: httpx.Client, tmp_path: Path, name: str = "kb") -> list[Event]:
    """Index a small knowledge base, following the job's progress stream to its end."""
    docs = tmp_path / name
    docs.mkdir()
    (docs / "oncall.md").write_text("# On-call\n\nThe on-call engineer rotates every Monday.\n")
    (docs / "deploy.md").write_text("# Deploys\n\nDeploys are frozen on Fridays after noon.\n")
    (docs / "notes.bin").write_bytes(b"\x00\x01\x02 binary")
    accepted = client.post(f"/v1/corpora/{name}/ingest", json={"path": str(docs)})
    assert accepted.status_code == 202, accepted.text
    return _follow(client, f"/v1/jobs/{accepted.json()['job_id']}/events")


def _wait_run(client: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if body["state"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def test_a_run_reports_its_decision_steps_and_answer_as_it_goes(
    client: httpx.Client, tmp_path: Path
) -> None:
    job_events = _ingest(client, tmp_path)
    # The job's stream: per-document progress, then one final event with the result.
    assert job_events[-1]["event"] == "final"
    final_job = job_events[-1]["data"]
    assert final_job["state"] == "succeeded" and final_job["done"] == final_job["total"] == 3
    assert final_job["result"]["indexed"] == 2 and final_job["skipped"] + final_job["failed"] == 1
    assert all(e["event"] == "progress" for e in job_events[:-1])
    assert [int(e["id"]) for e in job_events] == list(range(1, len(job_events) + 1))

    hook = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["run.finished"]})
    assert hook.status_code == 201, hook.text

    accepted = client.post("/v1/corpora/kb/runs", json={"question": "When are deploys frozen?"})
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    run_id = body["run_id"]
    assert body["state"] == "queued"
    assert body["url"] == f"/v1/runs/{run_id}" and body["events_url"] == f"/v1/runs/{run_id}/events"

    events = _follow(client, body["events_url"])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "state" and events[0]["data"] == {"state": "running"}
    assert kinds[-1] == "final" and kinds.count("final") == 1
    assert kinds.index("decision") < kinds.index("token") < len(kinds) - 1
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    decision = next(e["data"] for e in events if e["event"] == "decision")
    assert decision["strategy"] == "stuff" and decision["reasons"] and decision["estimates"]
    steps = [e["data"]["step"] for e in events if e["event"] == "step"]
    assert "route" in steps and "generate" in steps
    generate = next(e["data"] for e in events if e["event"] == "step" and e["data"]["step"] == "generate")
    assert generate["completion_tokens"] > 0 and generate["seconds"] >= 0
    final = events[-1]["data"]
    assert final["state"] == "succeeded", final
    streamed = "".join(e["data"]["text"] for e in events if e["event"] == "token")
    assert streamed and final["result"]["answer"] in streamed  # the tiny model may say only spaces

    run = client.get(f"/v1/runs/{run_id}").json()
    assert run["state"] == "succeeded" and run["corpus"] == "kb"
    assert run["strategy"] == "stuff" and run["reason"] and run["decision"]["strategy"] == "stuff"
    assert run["answer"] == final["result"]["answer"]
    assert [s["step"] for s in run["steps"]] == steps
    assert run["citations"][0]["path"].startswith("kb/")
    assert run["completion_tokens"] > 0 and run["prompt_tokens"] > 0 and run["seconds"] > 0
    assert run["started_at"] and run["finished_at"] and not run["cancel_requested"]

    # A reconnecting client resumes after the last event it saw, by header or by query.
    replay = _follow(client, body["events_url"], headers={"Last-Event-ID": events[-3]["id"]})
    assert [e["id"] for e in replay] == [e["id"] for e in events[-2:]]
    assert [e["id"] for e in _follow(client, f"{body['events_url']}?after={events[-2]['id']}")] == \
        [events[-1]["id"]]
    assert _follow(client, f"{body['events_url']}?after={events[-1]['id']}") == []

    # A client retrying its POST with the same Idempotency-Key gets the same run, not a second one.
    retry = {"question": "Who is on call?"}
    first = client.post("/v1/corpora/kb/runs", json=retry, headers={"Idempotency-Key": "ask-1"}).json()
    again = client.post("/v1/corpora/kb/runs", json=retry, headers={"Idempotency-Key": "ask-1"}).json()
    assert again["run_id"] == first["run_id"]
    assert _follow(client, again["events_url"])[-1]["data"]["state"] == "succeeded"
    other = client.post("/v1/corpora/kb/runs", json={"question": "Other?"},
                        headers={"Idempotency-Key": "ask-1"})
    assert other.status_code == 409, other.text

    # The synchronous ask is a run too, listed with the others.
    sync = client.post("/v1/corpora/kb/ask", json={"question": "Who is on call?", "strategy": "retrieve"})
    assert sync.status_code == 200, sync.text
    listed = client.get("/v1/runs").json()
    assert listed["total"] == 3 and listed["limit"] == 50 and listed["offset"] == 0
    assert {r["id"] for r in listed["items"]} == {run_id, first["run_id"], sync.json()["run_id"]}
    assert client.get("/v1/runs", params={"corpus": "kb", "state": "succeeded", "limit": 1}).json()[
        "total"] == 3
    assert client.get("/v1/runs", params={"corpus": "other"}).json() == {
        "items": [], "total": 0, "limit": 50, "offset": 0}
    assert client.get("/v1/runs", params={"state": "running"}).json()["total"] == 0

    rated = client.post(f"/v1/runs/{run_id}/feedback", json={"rating": 1, "comment": "spot on"})
    assert rated.status_code == 201, rated.text
    assert rated.json()["rating"] == 1 and rated.json()["run_id"] == run_id
    assert client.post(f"/v1/runs/{run_id}/feedback", json={"rating": 5}).status_code == 422
    from corral.core.db import Feedback, session_scope

    with session_scope() as session:
        stored = session.query(Feedback).filter_by(run_id=run_id).one()
        assert (stored.rating, stored.comment) == (1, "spot on")

    # The workspace's webhook was told of each finished run, with the change that finished it.
    from corral.core.db import WebhookDelivery

    with session_scope() as session:
        told = [d.payload["data"]["run"] for d in session.query(WebhookDelivery)
                if d.event == "run.finished"]
    assert {(r["id"], r["state"]) for r in told} == {
        (run_id, "succeeded"), (first["run_id"], "succeeded"), (sync.json()["run_id"], "succeeded")}

    # Finished runs cannot be cancelled.
    assert client.delete(f"/v1/runs/{run_id}").status_code == 409


@pytest.fixture
def long_answers(monkeypatch: pytest.MonkeyPatch, corral_env: Path) -> None:
    """Answers long enough (with the tiny model) to act on one while it is generated."""
    monkeypatch.setenv("CORRAL_CHAT_MAX_NEW_TOKENS", "1400")
    from corral.core.config import get_settings

    get_settings.cache_clear()


def test_cancelling_a_run_stops_its_generation(
    long_answers: None, client: httpx.Client, tmp_path: Path
) -> None:
    _ingest(client, tmp_path)
    run_id = client.post("/v1/corpora/kb/runs", json={"question": "Describe the deploy policy."}
                         ).json()["run_id"]
    seen: list[Event] = []
    with _stream(client, f"/v1/runs/{run_id}/events") as events:
        for event in events:
            seen.append(event)
            if event["event"] == "token":
                cancelled = client.delete(f"/v1/runs/{run_id}")
                assert cancelled.status_code == 202, cancelled.text
                assert cancelled.json()["cancel_requested"] is True
                cancel_at = time.monotonic()
    final = seen[-1]
    assert final["event"] == "final" and final["data"]["state"] == "cancelled", final
    assert time.monotonic() - cancel_at < 10  # promptly: at the next check of the flag
    run = client.get(f"/v1/runs/{run_id}").json()
    assert run["state"] == "cancelled" and run["cancel_requested"] and "cancelled" in run["error"]
    assert run["finished_at"]
    assert run["steps"][-1]["step"] != "generate"  # the model call never completed
    generated = "".join(e["data"]["text"] for e in seen if e["event"] == "token")
    assert generated and len(generated) < 1400 * 4
    assert client.delete(f"/v1/runs/{run_id}").status_code == 202  # again: no change
    assert client.get("/v1/runs", params={"state": "cancelled"}).json()["total"] == 1


def test_a_client_walking_away_does_not_stop_the_run(
    long_answers: None, monkeypatch: pytest.MonkeyPatch, client: httpx.Client, tmp_path: Path
) -> None:
    monkeypatch.setenv("CORRAL_CHAT_MAX_NEW_TOKENS", "300")
    from corral.core.config import get_settings

    get_settings.cache_clear()
    _ingest(client, tmp_path)
    run_id = client.post("/v1/corpora/kb/runs", json={"question": "When are deploys frozen?"}
                         ).json()["run_id"]
    with _stream(client, f"/v1/runs/{run_id}/events") as events:
        first_token = next(e for e in events if e["event"] == "token")
    # The stream is closed mid-answer; the run answers all the same, and is read later.
    run = _wait_run(client, run_id)
    assert run["state"] == "succeeded" and run["answer"] is not None, run
    later = _follow(client, f"/v1/runs/{run_id}/events?after={first_token['id']}")
    assert later[-1]["event"] == "final" and later[-1]["data"]["result"]["answer"] == run["answer"]


def test_another_workspace_cannot_see_read_follow_cancel_or_rate_a_run(
    client: httpx.Client, tmp_path: Path
) -> None:
    _ingest(client, tmp_path)
    run_id = client.post("/v1/corpora/kb/runs", json={"question": "Who is on call?"}).json()["run_id"]
    _wait_run(client, run_id)
    other = bearer(issue_key("admin", workspace="other"))
    missing = "0" * 32
    for method, suffix, payload in [("GET", "", None), ("GET", "/events", None), ("DELETE", "", None),
                                    ("POST", "/feedback", {"rating": -1})]:
        theirs = client.request(method, f"/v1/runs/{run_id}{suffix}", json=payload, headers=other)
        nobody = client.request(method, f"/v1/runs/{missing}{suffix}", json=payload, headers=other)
        assert theirs.status_code == nobody.status_code == 404, (method, suffix, theirs.text)
        assert theirs.json()["error"]["message"].replace(run_id, "ID") == \
            nobody.json()["error"]["message"].replace(missing, "ID")
    assert client.get("/v1/runs", headers=other).json()["total"] == 0
    # Its corpus is not theirs either: no run can be submitted over it.
    assert client.post("/v1/corpora/kb/runs", json={"question": "hi?"}, headers=other).status_code == 404
    # A read-only key may follow but not ask, cancel or rate.
    reader = bearer(issue_key("read"))
    assert client.get(f"/v1/runs/{run_id}", headers=reader).status_code == 200
    assert client.post("/v1/corpora/kb/runs", json={"question": "hi?"}, headers=reader).status_code == 403
    assert client.delete(f"/v1/runs/{run_id}", headers=reader).status_code == 403


def test_runs_left_by_a_stopped_server_fail_at_start_up(corral_env: Path, tmp_path: Path) -> None:
    from corral.core.db import Run, RunState, session_scope
    from corral.core.services import get_or_create_corpus
    from corral.core.services.runs import claim_run, create_run
    from corral.platform.api.app import create_app

    with TestClient(create_app(), base_url="http://127.0.0.1"):
        pass  # migrate
    with session_scope() as session:
        corpus = get_or_create_corpus(session, "kb")
        queued = create_run(session, corpus, "left queued?", {}).id
        running = create_run(session, corpus, "left running?", {}).id
        assert claim_run(session, running) is not None
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        for run_id in (queued, running):
            run = c.get(f"/v1/runs/{run_id}").json()
            assert run["state"] == "failed" and "interrupted by a restart" in run["error"], run
            events = _follow_testclient(c, f"/v1/runs/{run_id}/events")
            assert events[-1]["event"] == "final" and events[-1]["data"]["error_type"] == "interrupted"
    with session_scope() as session:
        assert {r.state for r in session.query(Run)} == {RunState.FAILED}


def _follow_testclient(c: TestClient, url: str) -> list[Event]:
    with c.stream("GET", url) as response:  # TestClient buffers: fine for a stream that ends
        assert response.status_code == 200
        return list(_sse(response.iter_lines()))


# -- server mode: a separate agent worker ------------------------------------------------------------

@pytest.fixture
def agent_worker(
    allowed_roots: None, monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str,
    chroma_server: int, tmp_path: Path,
) -> Iterator[Path]:
    env = enter_server_mode(monkeypatch, postgres_url, redis_url, chroma_server)
    log_path = tmp_path / "worker.log"
    proc = start_worker(env, log_path)
    try:
        yield log_path
    finally:
        stop_worker(proc)


@pytest.mark.services
def test_a_run_on_a_separate_agent_worker(agent_worker: Path, tmp_path: Path,
                                          wait_job: Callable[..., dict[str, Any]]) -> None:
    from corral.platform.api.app import create_app

    docs = tmp_path / "kb"
    docs.mkdir()
    (docs / "deploy.md").write_text("# Deploys\n\nDeploys are frozen on Fridays after noon.\n")
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        c.headers.update(bearer(issue_key("admin")))
        job = wait_job(c, c.post("/v1/corpora/kb/ingest", json={"path": str(docs)}).json()["job_id"])
        assert job["state"] == "succeeded", job
        accepted = c.post("/v1/corpora/kb/runs", json={"question": "When are deploys frozen?"})
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["run_id"]
        events = _follow_testclient(c, accepted.json()["events_url"])
        kinds = [e["event"] for e in events]
        assert kinds[0] == "state" and "decision" in kinds and "token" in kinds and kinds[-1] == "final"
        assert events[-1]["data"]["state"] == "succeeded", events[-1]
        run = c.get(f"/v1/runs/{run_id}").json()
        assert run["state"] == "succeeded" and run["strategy"] == "stuff" and run["answer"] is not None
        # The synchronous ask waits for a run on the worker: this process loads no model.
        sync = c.post("/v1/corpora/kb/ask", json={"question": "When are deploys frozen?"})
        assert sync.status_code == 200, sync.text
        from corral.platform.composition import get_chat_model

        assert get_chat_model._value is None
    # Both runs were answered by the worker process.
    done = re.compile(r"Task corral\.agent\.run\[[^\]]+\] succeeded in")
    deadline = time.monotonic() + 10
    while len(done.findall(agent_worker.read_text())) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(done.findall(agent_worker.read_text())) == 2, agent_worker.read_text()


def test_a_slow_synchronous_ask_answers_202_with_the_run_to_follow(
    long_answers: None, monkeypatch: pytest.MonkeyPatch, client: httpx.Client, tmp_path: Path
) -> None:
    _ingest(client, tmp_path)
    monkeypatch.setenv("CORRAL_ASK_TIMEOUT_S", "0.05")
    from corral.core.config import get_settings

    get_settings.cache_clear()
    slow = client.post("/v1/corpora/kb/ask", json={"question": "Describe the deploy policy."})
    assert slow.status_code == 202, slow.text
    body = slow.json()
    assert body["state"] == "running" and body["events_url"] == f"/v1/runs/{body['run_id']}/events"
    events = _follow(client, body["events_url"])  # the run goes on: its answer is read here
    assert events[-1]["event"] == "final" and events[-1]["data"]["state"] == "succeeded"


def test_stuck_runs_do_not_stay_stuck(corral_env: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from corral.core.db import RunEvent, RunState, session_scope
    from corral.core.db.migrate import ensure_schema
    from corral.core.services import get_or_create_corpus
    from corral.core.services.runs import claim_run, create_run, fail_stale_runs, get_run

    ensure_schema()
    with session_scope() as session:
        corpus = get_or_create_corpus(session, "kb")
        lost = create_run(session, corpus, "a worker died running me", {}).id
        old = create_run(session, corpus, "my message was lost", {}).id
        fresh = create_run(session, corpus, "still running", {}).id
        for run_id in (lost, old, fresh):
            assert claim_run(session, run_id) is not None
        assert claim_run(session, fresh) is None  # running elsewhere: not run twice
        get_run(session, old).started_at = datetime.now(UTC) - timedelta(hours=2)
    with session_scope() as session:
        # The broker redelivers the run of a worker lost mid-run: it cannot resume half-generated.
        assert claim_run(session, lost, redelivered=True) is None
        assert fail_stale_runs(session, older_than_s=3600) == [old]
    with session_scope() as session:
        assert get_run(session, lost).state is RunState.FAILED
        assert "agent worker running it stopped" in (get_run(session, lost).error or "")
        assert get_run(session, old).state is RunState.FAILED
        assert get_run(session, fresh).state is RunState.RUNNING
        finals = session.query(RunEvent).filter_by(kind="final").all()
        assert sorted(e.run_id for e in finals) == sorted([lost, old])


def test_concurrent_first_asks_load_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.platform import composition

    loads: list[int] = []

    def slow_load() -> object:
        loads.append(1)
        time.sleep(0.2)
        return object()

    once = composition._LoadedOnce(slow_load)
    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(lambda _: once(), range(8)))
    assert len(loads) == 1 and all(m is models[0] for m in models)
    once.cache_clear()
    assert once() is not models[0] and len(loads) == 2


def test_a_streamed_answer_is_the_answer_in_process_and_over_http(corral_env: Path) -> None:
    """The tokens a run reports are the answer, once each, whichever chat backend writes it."""
    from langchain_core.callbacks import BaseCallbackHandler

    from corral.agents.ask.generate import generate
    from corral.agents.ask.progress import Progress, TokenCallback
    from corral.agents.backends import remote_chat_model
    from corral.platform.composition import get_chat, get_chat_model
    from tests.inference.test_server import serving

    class Tokens(Progress):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def token(self, text: str, call: str) -> None:
            self.seen.append(text)

        def callbacks(self, call: str) -> list[BaseCallbackHandler]:
            return [TokenCallback(self, call)]

    messages = [{"role": "user", "content": "hi"}]  # the tiny random model answers it in words
    in_process = get_chat()
    with serving({"tiny": get_chat_model()}) as url:
        over_http = remote_chat_model(f"{url}/v1", "tiny", None, max_tokens=12, context_window=2048,
                                      token_ids=lambda t: [0] * len(t))
        for chat in (in_process, over_http):
            whole = generate(chat, messages, 12)
            progress = Tokens()
            streamed = generate(chat, messages, 12, callbacks=progress.callbacks("answer"))
            assert streamed.text == whole.text and streamed.finish_reason == whole.finish_reason
            assert "".join(progress.seen).strip() == streamed.text
            assert 1 <= len(progress.seen) <= streamed.completion_tokens  # each token reported once
            assert streamed.completion_tokens == whole.completion_tokens == 12
            assert streamed.prompt_tokens == whole.prompt_tokens > 0  # the usage report, streamed too


def test_an_agent_run_reports_the_models_turns(client: httpx.Client, tmp_path: Path) -> None:
    _ingest(client, tmp_path)
    accepted = client.post("/v1/corpora/kb/runs", json={"question": "When are deploys frozen?",
                                                        "agent": True})
    assert accepted.status_code == 202, accepted.text
    events = _follow(client, accepted.json()["events_url"])
    decision = next(e["data"] for e in events if e["event"] == "decision")
    assert decision["strategy"] == "agent" and "read_span" in decision["tools"]
    steps = [e["data"] for e in events if e["event"] == "step"]
    assert steps and steps[0]["step"] == "model"  # the model's turns, grammar-constrained tool calls
    final = events[-1]
    assert final["event"] == "final" and final["data"]["state"] == "succeeded", final
    run = client.get(accepted.json()["url"]).json()
    assert run["strategy"] == "agent" and [s["step"] for s in run["steps"]] == [s["step"] for s in steps]
