"""The Slack bot, end to end on 127.0.0.1: signed Events API payloads, slash commands and button clicks
are POSTed to the real ``/slack/events`` of a running ``corral serve``; the real Bolt app answers
through its Web API client, pointed (``CORRAL_SLACK_API_URL``) at a fake Slack Web API server written
here, which records every call. Questions run as real runs with a scripted chat model."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from slack_sdk.signature import SignatureVerifier

from tests.agents.scripted import ScriptedChat, WordSearcher, count_words, scripted, write_documents
from tests.platform.conftest import serve_app

SECRET = "test-signing-secret"
TEAM, BOT_USER, BOT_ID = "T0CORRAL", "UBOT", "BBOT"
PUBLIC = "https://corral.example"
DOCS = {
    "kb/deploy.md": "# Deploys\n\nDeploys are frozen on Fridays after noon.\n",
    "kb/oncall.md": "# On-call\n\nThe on-call engineer rotates every Monday; Dana approves deploys.\n",
}
Call = tuple[str, dict[str, Any]]


# -- a fake Slack Web API ----------------------------------------------------------------------------

class FakeSlack:
    """Slack's Web API as the bot uses it, in memory: messages posted and edited per channel (read back
    by ``conversations.replies``), ephemeral messages, response URLs; every call recorded in order."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, dict[str, Any]] = {}  # ts -> message (with its channel)
        self.admins: set[str] = set()
        self.limited: dict[str, int] = {}  # method -> how many calls answer 429 first
        self._ts = itertools.count(1)
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _args(self) -> dict[str, Any]:
                url = urlparse(self.path)
                args: dict[str, Any] = {k: v[0] for k, v in parse_qs(url.query).items()}
                size = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(size).decode() if size else ""
                if raw and "json" in (self.headers.get("Content-Type") or ""):
                    args.update(json.loads(raw))
                elif raw:
                    args.update({k: v[0] for k, v in parse_qs(raw).items()})
                return args

            def _answer(self) -> None:
                path = urlparse(self.path).path
                method = path.removeprefix("/api/") if path.startswith("/api/") else path
                status, body, headers = fake.handle(method, self._args())
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._serving = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._serving.start()

    def next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def handle(self, method: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            self.calls.append((method, args))
            if self.limited.get(method):
                self.limited[method] -= 1
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
            return 200, self._reply(method, args), {}

    def _reply(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "user_id": BOT_USER, "bot_id": BOT_ID, "team_id": TEAM, "user": "corral",
                    "team": "Test", "url": "https://test.slack.com/"}
        if method == "chat.postMessage":
            ts = self.next_ts()
            self.messages[ts] = {**_message(args), "ts": ts, "channel": args["channel"], "user": BOT_USER,
                                 "bot_id": BOT_ID, "thread_ts": args.get("thread_ts")}
            return {"ok": True, "channel": args["channel"], "ts": ts, "message": self.messages[ts]}
        if method == "chat.update":
            message = self.messages.get(args["ts"])
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.update(_message(args))
            return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.next_ts()}
        if method == "conversations.replies":
            root = args["ts"]
            thread = [m for m in self.messages.values()
                      if m["channel"] == args["channel"] and root in (m["ts"], m.get("thread_ts"))]
            return {"ok": True, "messages": sorted(thread, key=lambda m: float(m["ts"])), "has_more": False}
        if method == "users.info":
            return {"ok": True, "user": {"id": args["user"], "is_admin": args["user"] in self.admins}}
        if method.startswith("/respond/"):
            return {"ok": True}
        return {"ok": False, "error": "unknown_method"}

    def user_says(self, channel: str, text: str, *, user: str = "UALICE", thread_ts: str | None = None,
                  ) -> dict[str, Any]:
        """A person's message in Slack (kept for conversations.replies); returns it as an event."""
        with self.lock:
            ts = self.next_ts()
            message = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
                       "team": TEAM}
            if thread_ts:
                message["thread_ts"] = thread_ts
            self.messages[ts] = dict(message)
        return message

    def of(self, *methods: str, channel: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [a for m, a in self.calls
                    if m in methods and (channel is None or a.get("channel") == channel)]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The bot's messages in a thread, as they read now."""
        with self.lock:
            return [dict(m) for m in sorted(self.messages.values(), key=lambda m: float(m["ts"]))
                    if m["channel"] == channel and m.get("thread_ts") == thread_ts and m.get("bot_id")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _message(args: dict[str, Any]) -> dict[str, Any]:
    out = {"text": args.get("text", "")}
    for key in ("blocks", "metadata"):
        if key in args:
            value = args[key]
            out[key] = json.loads(value) if isinstance(value, str) else value
    return out


# -- fixtures --------------------------------------------------------------------------------------

class Model:
    """The chat model the server's runs answer with: scripted replies, optionally slow or failing."""

    def __init__(self) -> None:
        self.chat: ScriptedChat = scripted("Deploys are frozen on Fridays after noon [1].")

    def script(self, *replies: str, delay: float = 0.0, fail: str | None = None) -> ScriptedChat:
        self.chat = _Slow(script=scripted(*replies).script, delay=delay, fail=fail,
                          profile={"max_input_tokens": 2048})
        return self.chat


class _Slow(ScriptedChat):
    delay: float = 0.0
    fail: str | None = None

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError(self.fail)
        return super()._generate(messages, stop, run_manager, **kwargs)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def model(corral_env: Path, monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack) -> Model:
    """Slack configured against the fake; runs answer with the scripted model over a word searcher."""
    from corral.core.config import get_settings
    from corral.core.db import get_sessionmaker
    from corral.core.db.migrate import ensure_schema
    from corral.platform import composition

    for key, value in {"CORRAL_SLACK_BOT_TOKEN": "xoxb-test", "CORRAL_SLACK_SIGNING_SECRET": SECRET,
                       "CORRAL_SLACK_API_URL": f"{fake_slack.url}/api/", "CORRAL_PUBLIC_URL": PUBLIC,
                       "CORRAL_SLACK_PROGRESS_INTERVAL_S": "0"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    held = Model()
    monkeypatch.setattr(composition, "get_chat", lambda: held.chat)
    monkeypatch.setattr(composition, "get_searcher", lambda: WordSearcher())
    ensure_schema()
    with get_sessionmaker().begin() as session:
        write_documents(session, "kb", DOCS, count_words)
    return held


@pytest.fixture
def server(model: Model) -> Iterator[str]:
    """``corral serve`` in this process (embedded mode), on a free port."""
    with serve_app() as url:
        yield url


def _signed(body: str, *, secret: str = SECRET, timestamp: int | None = None,
            content_type: str = "application/json") -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or ""}


def post_event(server: str, event: dict[str, Any], *, event_id: str | None = None,
               headers: dict[str, str] | None = None, **sign: Any) -> httpx.Response:
    body = json.dumps({"token": "unused", "team_id": TEAM, "api_app_id": "A1", "type": "event_callback",
                       "event_id": event_id or f"Ev{uuid.uuid4().hex[:10]}", "event_time": int(time.time()),
                       "event": event,
                       "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]})
    return httpx.post(f"{server}/slack/events", content=body,
                      headers={**_signed(body, **sign), **(headers or {})}, timeout=10)


def post_form(server: str, fields: dict[str, str]) -> httpx.Response:
    body = urlencode(fields)
    return httpx.post(f"{server}/slack/events", content=body,
                      headers=_signed(body, content_type="application/x-www-form-urlencoded"), timeout=10)


def command(server: str, fake: FakeSlack, text: str, *, user: str = "UALICE", channel: str = "C1"
            ) -> httpx.Response:
    return post_form(server, {"command": "/corral", "text": text, "team_id": TEAM, "channel_id": channel,
                              "user_id": user, "response_url": f"{fake.url}/respond/{uuid.uuid4().hex[:8]}",
                              "trigger_id": "1.2.3", "api_app_id": "A1"})


def click(server: str, fake: FakeSlack, action_id: str, value: str, *, channel: str = "C1",
          thread_ts: str | None = None, ephemeral: bool = False, user: str = "UBOB") -> httpx.Response:
    payload = {
        "type": "block_actions", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "A1",
        "channel": {"id": channel}, "trigger_id": "1.2.3", "response_url": f"{fake.url}/respond/click",
        "container": {"type": "message", "channel_id": channel, "is_ephemeral": ephemeral,
                      "message_ts": "1.1", "thread_ts": thread_ts},
        "message": {"ts": "1.1", "thread_ts": thread_ts},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "corral_answer_actions",
                     "value": value, "action_ts": "1.2"}],
    }
    return post_form(server, {"payload": json.dumps(payload)})


def mention(fake: FakeSlack, text: str, *, channel: str = "C1", thread_ts: str | None = None
            ) -> dict[str, Any]:
    event = fake.user_says(channel, f"<@{BOT_USER}> {text}", thread_ts=thread_ts)
    return {**event, "type": "app_mention", "event_ts": event["ts"]}


def wait_for(what: Callable[[], Any], timeout: float = 30, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message or what}")


def answered(fake: FakeSlack, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """The bot's answer messages in the thread, once the last one carries the feedback buttons."""
    messages = [m for m in fake.thread(channel, thread_ts)
                if (m.get("metadata") or {}).get("event_type") == "corral_answer"]
    done = messages and any(b["type"] == "actions" for b in messages[-1].get("blocks") or [])
    return messages if done else []


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for b in blocks:
        if "text" in b:
            out.append(b["text"]["text"])
        out += [e.get("text", "") for e in b.get("elements", []) if isinstance(e.get("text"), str)]
    return out


def runs() -> list[Any]:
    from corral.core.db import Run, session_scope

    with session_scope() as session:
        rows = session.query(Run).order_by(Run.created_at).all()
        session.expunge_all()
        return rows


# -- stories ---------------------------------------------------------------------------------------

def test_a_mention_gets_progress_then_an_answer_with_citation_blocks(
    server: str, fake_slack: FakeSlack, model: Model
) -> None:
    model.script("Deploys are frozen on Fridays after noon [1].", delay=1.0)
    event = mention(fake_slack, "When are deploys frozen?")
    started = time.monotonic()
    assert post_event(server, event).status_code == 200
    assert time.monotonic() - started < 3  # acknowledged within Slack's limit, before the answer

    final = wait_for(lambda: answered(fake_slack, "C1", event["ts"]), message="the answer")
    posted = fake_slack.of("chat.postMessage", channel="C1")
    assert len(posted) == 1 and posted[0]["thread_ts"] == event["ts"]  # one message, in the thread
    progress = [a["text"] for a in [posted[0], *fake_slack.of("chat.update")]][:-1]
    assert progress[0].startswith(":hourglass") or "Looking into" in progress[0]
    assert any(":book: Reading 2 documents of *kb* — stuff" in t for t in progress), progress
    updates = fake_slack.of("chat.update")
    assert all(u["ts"] == posted[0].get("ts", fake_slack.thread("C1", event["ts"])[0]["ts"]) for u in updates)

    [answer] = final
    run = runs()[-1]
    assert run.question == "When are deploys frozen?" and run.state.value == "succeeded"
    assert answer["metadata"] == {"event_type": "corral_answer",
                                  "event_payload": {"run_id": run.id, "part": 1}}
    blocks = answer["blocks"]
    assert blocks[0]["type"] == "section" and blocks[0]["text"]["verbatim"] is True
    assert blocks[0]["text"]["text"] == "Deploys are frozen on Fridays after noon [1]."
    link = f"<{PUBLIC}/corpora/kb/documents/kb/deploy.md#L1-L3|kb/deploy.md:1-3>"
    assert any(link in t for t in texts(blocks)), texts(blocks)
    badge = next(b for b in blocks if b["type"] == "context")["elements"][0]["text"]
    assert "*stuff*" in badge and re.search(r"\d+ tokens \(\d+ in, \d+ out\)", badge) and "scripted" in badge
    buttons = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("corral_feedback_up", run.id), ("corral_feedback_down", run.id)]


def test_a_thread_follow_up_uses_the_earlier_turns(server: str, fake_slack: FakeSlack, model: Model) -> None:
    first = mention(fake_slack, "When are deploys frozen?")
    post_event(server, first)
    wait_for(lambda: answered(fake_slack, "C1", first["ts"]))
    chat = model.script("Dana approves them [1].")

    # A reply in the thread, without a mention: a follow-up.
    follow = fake_slack.user_says("C1", "And who approves them?", thread_ts=first["ts"])
    assert post_event(server, {**follow, "channel_type": "channel"}).status_code == 200
    wait_for(lambda: len(runs()) == 2 and runs()[-1].state.finished)
    [replies] = fake_slack.of("conversations.replies")
    assert replies["ts"] == first["ts"]
    question = runs()[-1].question
    assert question == ("Earlier in this conversation:\nUser: When are deploys frozen?\n"
                        "Corral: Deploys are frozen on Fridays after noon [1].\n\n"
                        "Follow-up question: And who approves them?")
    assert "Follow-up question: And who approves them?" in chat.seen[-1][0][-1].text
    wait_for(lambda: len(answered(fake_slack, "C1", first["ts"])) == 2)

    # Not addressed to the bot: a plain channel message, a reply in a thread it never answered.
    for event in (fake_slack.user_says("C1", "lunch?"),
                  fake_slack.user_says("C1", "same", thread_ts=fake_slack.user_says("C1", "hi")["ts"])):
        assert post_event(server, {**event, "channel_type": "channel"}).status_code == 200
    time.sleep(0.5)
    assert len(runs()) == 2 and len(fake_slack.of("chat.postMessage")) == 2


def test_a_direct_message_is_answered_in_its_thread(server: str, fake_slack: FakeSlack, model: Model) -> None:
    dm = fake_slack.user_says("D1", "When are deploys frozen?")
    assert post_event(server, {**dm, "channel_type": "im"}).status_code == 200
    [answer] = wait_for(lambda: answered(fake_slack, "D1", dm["ts"]))
    assert "Fridays" in answer["text"]
    # The bot's own messages and other bots' are not questions.
    for event in ({**dm, "ts": "9.1", "user": BOT_USER, "bot_id": BOT_ID},
                  {**dm, "ts": "9.2", "user": "UOTHER", "bot_id": "BOTHER", "subtype": "bot_message"}):
        assert post_event(server, {**event, "channel_type": "im"}).status_code == 200
    time.sleep(0.5)
    assert len(runs()) == 1


def test_a_thumbs_up_click_is_stored_as_feedback(server: str, fake_slack: FakeSlack, model: Model) -> None:
    from corral.core.db import Feedback, session_scope

    event = mention(fake_slack, "When are deploys frozen?")
    post_event(server, event)
    wait_for(lambda: answered(fake_slack, "C1", event["ts"]))
    run_id = runs()[-1].id
    assert click(server, fake_slack, "corral_feedback_up", run_id, thread_ts=event["ts"]).status_code == 200
    assert click(server, fake_slack, "corral_feedback_down", run_id, thread_ts=event["ts"]).status_code == 200

    def stored() -> list[int]:
        with session_scope() as session:
            return [f.rating for f in session.query(Feedback).filter_by(run_id=run_id).order_by(Feedback.id)]

    assert wait_for(lambda: stored() == [1, -1] and stored())
    thanks = wait_for(lambda: fake_slack.of("chat.postEphemeral"))
    assert thanks[0]["user"] == "UBOB" and thanks[0]["thread_ts"] == event["ts"]
    assert "recorded" in thanks[0]["text"]
    # A run the team's workspace does not have is refused, visibly.
    click(server, fake_slack, "corral_feedback_up", "0" * 32)
    wait_for(lambda: any("could not record" in a["text"] for a in fake_slack.of("chat.postEphemeral")))
    assert stored() == [1, -1]


def test_a_redelivered_event_produces_one_answer(server: str, fake_slack: FakeSlack, model: Model) -> None:
    model.script("Deploys are frozen on Fridays after noon [1].", delay=0.5)
    event = mention(fake_slack, "When are deploys frozen?")
    assert post_event(server, event, event_id="EvSAME").status_code == 200
    for retry in ("1", "2"):
        again = post_event(server, event, event_id="EvSAME",
                           headers={"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"})
        assert again.status_code == 200
    wait_for(lambda: answered(fake_slack, "C1", event["ts"]))
    time.sleep(0.5)
    assert len(fake_slack.of("chat.postMessage")) == 1 and len(runs()) == 1


def test_a_bad_signature_or_an_old_timestamp_is_refused(server: str, fake_slack: FakeSlack) -> None:
    event = mention(fake_slack, "When are deploys frozen?")
    assert post_event(server, event, secret="not-the-secret").status_code == 401
    assert post_event(server, event, timestamp=int(time.time()) - 6 * 60).status_code == 401
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "x"})
    tampered = {**_signed(body), "X-Slack-Signature": "v0=" + "0" * 64}
    assert httpx.post(f"{server}/slack/events", content=body, headers=tampered).status_code == 401
    ok = httpx.post(f"{server}/slack/events", content=body, headers=_signed(body))
    assert ok.status_code == 200 and ok.json() == {"challenge": "abc123"}
    time.sleep(0.3)
    assert not fake_slack.of("chat.postMessage") and not runs()


def test_a_document_that_pings_is_answered_without_pinging(
    server: str, fake_slack: FakeSlack, model: Model
) -> None:
    from corral.core.db import get_sessionmaker

    hostile = ("Freeze notice <!channel> <!here> for <@U999> and <#C777>: see <https://evil.example|the "
               "docs> & @here @channel.")
    with get_sessionmaker().begin() as session:
        write_documents(session, "kb", {"kb/freeze.md": f"# Freeze\n\n{hostile}\n"}, count_words)
    model.script(f"The notice says: {hostile} [1]")
    event = mention(fake_slack, "What does the freeze notice say?")
    post_event(server, event)
    [answer] = wait_for(lambda: answered(fake_slack, "C1", event["ts"]))
    shown = json.dumps([answer["text"], answer["blocks"]])
    for ping in ("<!channel>", "<!here>", "<@U999>", "<#C777>", "<https://evil", "@here", "@channel"):
        assert ping not in shown, ping
    assert "&lt;!channel&gt;" in answer["blocks"][0]["text"]["text"]  # shown as text, as in the source
    assert "&amp;" in answer["text"]
    assert all(link.startswith(f"<{PUBLIC}/") for link in re.findall(r"<[^<>]*>", shown))
    sent = json.dumps(fake_slack.of("chat.postMessage", "chat.update"))
    assert "<!channel>" not in sent and "<@U999>" not in sent


def test_a_corpus_still_indexing_gets_a_clear_reply(server: str, fake_slack: FakeSlack, model: Model) -> None:
    from corral.core.db import JobKind, session_scope
    from corral.core.services import get_or_create_corpus
    from corral.core.services.jobs import create_job, start_job
    from corral.core.services.slack import map_channel

    with session_scope() as session:
        corpus = get_or_create_corpus(session, "incoming")
        session.flush()
        start_job(session, create_job(session, JobKind.INGEST, corpus.id, {}), total=40)
        map_channel(session, TEAM, "C2", "incoming", "default")
    event = mention(fake_slack, "What is new?", channel="C2")
    post_event(server, event)
    [reply] = wait_for(lambda: fake_slack.thread("C2", event["ts"]))
    assert "*incoming* is still being indexed (0 of 40 documents so far)" in reply["text"]
    assert "`/corral status`" in reply["text"]
    assert not runs()


def test_a_run_failing_midway_ends_with_an_error_in_the_thread(
    server: str, fake_slack: FakeSlack, model: Model
) -> None:
    model.script("never said", delay=0.3, fail="the GPU caught fire")
    event = mention(fake_slack, "When are deploys frozen?")
    post_event(server, event)

    def failed() -> list[dict[str, Any]]:
        return [m for m in fake_slack.thread("C1", event["ts"]) if m["text"].startswith(":warning:")]

    [message] = wait_for(failed, message="the error message")
    run = runs()[-1]
    assert run.state.value == "failed"
    assert "I could not answer" in message["text"] and "the GPU caught fire" in message["text"]
    assert run.id in json.dumps(message["blocks"])
    assert len(fake_slack.of("chat.postMessage")) == 1  # the progress message became the error


def test_slash_commands_answer_privately_and_share_on_request(
    server: str, fake_slack: FakeSlack, model: Model
) -> None:
    from corral.core.db import session_scope
    from corral.core.services import get_or_create_corpus
    from corral.core.services.slack import channel_corpus

    ack = command(server, fake_slack, "ask When are deploys frozen?")
    assert ack.status_code == 200 and ack.json()["response_type"] == "ephemeral"
    responses = wait_for(lambda: [a for a in fake_slack.of(*[m for m, _ in fake_slack.calls
                                                             if m.startswith("/respond/")])
                                  if any(b.get("type") == "actions" for b in a.get("blocks", []))])
    final = responses[-1]
    assert final["response_type"] == "ephemeral" and final["replace_original"] is True
    buttons = next(b for b in final["blocks"] if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in buttons] == ["corral_feedback_up", "corral_feedback_down", "corral_share"]
    assert not fake_slack.of("chat.postMessage")  # nothing public until shared

    click(server, fake_slack, "corral_share", buttons[2]["value"], ephemeral=True, user="UALICE")
    [shared] = wait_for(lambda: fake_slack.of("chat.postMessage", channel="C1"))
    assert "shared by <@UALICE>" in json.dumps(shared["blocks"]) and "Fridays" in shared["text"]

    # Mapping a channel is for admins.
    with session_scope() as session:
        get_or_create_corpus(session, "handbook")
    command(server, fake_slack, "corpus handbook", user="UALICE")
    wait_for(lambda: any("Only workspace admins" in a.get("text", "") for _, a in fake_slack.calls))
    fake_slack.admins.add("UADMIN")
    command(server, fake_slack, "corpus handbook", user="UADMIN")
    wait_for(lambda: any("now ask *handbook*" in a.get("text", "") for _, a in fake_slack.calls))
    with session_scope() as session:
        assert channel_corpus(session, TEAM, "C1").name == "handbook"
    command(server, fake_slack, "corpus nowhere", user="UADMIN")
    wait_for(lambda: any("no corpus named 'nowhere'" in a.get("text", "") for _, a in fake_slack.calls))
    command(server, fake_slack, "status")
    wait_for(lambda: any("This channel asks *handbook*: 0 documents" in a.get("text", "")
                         for _, a in fake_slack.calls))
    help_ack = command(server, fake_slack, "")
    assert "/corral ask" in help_ack.json()["text"]


def test_rate_limited_web_api_calls_are_retried_after_retry_after(
    server: str, fake_slack: FakeSlack, model: Model
) -> None:
    fake_slack.limited["chat.postMessage"] = 1
    event = mention(fake_slack, "When are deploys frozen?")
    post_event(server, event)
    wait_for(lambda: answered(fake_slack, "C1", event["ts"]), timeout=30)
    attempts = [m for m, _ in fake_slack.calls if m == "chat.postMessage"]
    assert len(attempts) == 2 and len(fake_slack.thread("C1", event["ts"])) == 1


def test_channel_mappings_are_edited_over_the_api_within_the_workspace(
    server: str, fake_slack: FakeSlack, model: Model
) -> None:
    from corral.core.db import session_scope
    from corral.core.services import get_or_create_corpus
    from tests.conftest import bearer, issue_key

    api = httpx.Client(base_url=server, timeout=10)
    unbound = api.put(f"/v1/slack/channels/{TEAM}/C9", json={"corpus": "kb"})
    assert unbound.status_code == 404 and "corral slack bind" in unbound.json()["error"]["message"]
    event = mention(fake_slack, "When are deploys frozen?")
    post_event(server, event)  # the team's first event binds it to the default workspace
    wait_for(lambda: answered(fake_slack, "C1", event["ts"]))
    with session_scope() as session:
        get_or_create_corpus(session, "handbook")
    put = api.put(f"/v1/slack/channels/{TEAM}/C9", json={"corpus": "handbook"})
    assert put.status_code == 200, put.text
    assert put.json()["corpus"] == "handbook" and put.json()["set_by"] == "api"
    assert api.put(f"/v1/slack/channels/{TEAM}/C9", json={"corpus": "nope"}).status_code == 404
    listed = api.get("/v1/slack/channels").json()
    assert [(c["channel_id"], c["corpus"]) for c in listed["items"]] == [("C9", "handbook")]
    other = bearer(issue_key("admin", workspace="other"))
    assert api.get("/v1/slack/channels", headers=other).json()["total"] == 0
    assert api.delete(f"/v1/slack/channels/{TEAM}/C9", headers=other).status_code == 404
    assert api.delete(f"/v1/slack/channels/{TEAM}/C9").status_code == 204
    assert api.delete(f"/v1/slack/channels/{TEAM}/C9").status_code == 404
    assert api.get(f"/v1/slack/channels/{TEAM}/C9").status_code in (404, 405)


# -- rendering -------------------------------------------------------------------------------------

def test_long_answers_are_split_within_slacks_limits() -> None:
    from corral.platform.slack.render import answer_messages, split_text

    paragraph = ("word " * 150).strip()
    answer = "\n\n".join(f"{i}. {paragraph} & more" for i in range(60))  # ~45,000 characters
    result = {"run_id": "r1", "answer": answer, "strategy": "retrieve", "prompt_tokens": 10,
              "completion_tokens": 5, "citations": [
                  {"path": f"docs/{i}.md", "start_line": 1, "end_line": 9, "verified": True}
                  for i in range(40)]}
    messages = answer_messages(result, corpus="kb", public_url=None)
    assert len(messages) > 1
    for m in messages:
        assert len(m.blocks) <= 50 and len(m.text) <= 3000
        assert all(len(b["text"]["text"]) <= 3000 for b in m.blocks if "text" in b)
    body = " ".join(b["text"]["text"] for m in messages for b in m.blocks
                    if b["type"] == "section" and not b["text"]["text"].startswith("*Sources"))
    assert body.split() == answer.replace("&", "&amp;").split()  # nothing lost or doubled
    sources = next(b["text"]["text"] for b in messages[-1].blocks
                   if "*Sources" in b.get("text", {}).get("text", ""))
    assert sources.count("•") == 15 and "…and 25 more" in sources and "`docs/0.md:1-9`" in sources
    assert all(len(p) <= 100 for p in split_text("x" * 1000, 100))
    assert split_text("a &amp; b" * 3, 12)[0].endswith(("a", "b", "&amp;"))


def test_only_cited_sources_are_listed_when_citations_carry_support_labels() -> None:
    from corral.platform.slack.render import sources

    labelled = [{"path": "a.md", "start_line": 1, "end_line": 2, "verified": True, "support": "cited"},
                {"path": "b.md", "start_line": 3, "end_line": 4, "verified": True, "support": "read"},
                {"path": "c.md", "start_line": 5, "end_line": 6, "verified": True, "support": "unsupported"}]
    shown = sources(labelled, "kb", PUBLIC)
    assert "a.md:1-2" in shown and "b.md" not in shown and "c.md" not in shown
    unlabelled = [{k: v for k, v in c.items() if k != "support"} for c in labelled]
    assert all(p in sources(unlabelled, "kb", PUBLIC) for p in ("a.md", "b.md", "c.md"))
    flagged = sources([{"path": "[7]", "start_line": 0, "end_line": 0, "verified": False,
                        "note": "no source with this number was given"}], "kb", PUBLIC)
    assert ":warning: `[7]` — no source with this number was given" in flagged and "<http" not in flagged
    odd = sources([{"path": "dir/a b|c>.md", "start_line": 2, "end_line": 3, "verified": True}], "my kb",
                  PUBLIC)
    assert f"<{PUBLIC}/corpora/my%20kb/documents/dir/a%20b%7Cc%3E.md#L2-L3|dir/a b|c&gt;.md:2-3>" in odd
