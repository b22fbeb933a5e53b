"""The Slack bot: a Bolt app answering mentions, direct messages, follow-ups in threads it answered,
the ``/corral`` command and its buttons.

Bolt verifies each request's signature (``X-Slack-Signature`` over the body and a timestamp at most
five minutes old: anything else is a 401) and acknowledges events at once; the listeners then run on
the bot's own threads (``CORRAL_SLACK_THREADS``), each following one run to its answer. A delivery
Slack retries (``X-Slack-Retry-Num``) carries the event id of the first and is dropped. The Web API
client retries what Slack rate-limits, after its ``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from sqlalchemy import select

from corral.core.config import Settings, get_settings
from corral.core.db import Corpus, Job, RunEvent, session_scope
from corral.core.errors import ConfigurationError, CorralError
from corral.core.services.jobs import active_ingest
from corral.core.services.runs import FINAL, add_feedback, get_run
from corral.core.services.slack import (
    channel_corpus,
    first_delivery,
    map_channel,
    team_workspace,
    thread_corpus,
)
from corral.ingestion.ingest import submit_ingest
from corral.ingestion.sources import source_spec
from corral.platform.slack.asking import (
    Ask,
    EphemeralReply,
    ThreadReply,
    answer,
    strip_mention,
    thread_history,
)
from corral.platform.slack.render import (
    FEEDBACK_DOWN,
    FEEDBACK_UP,
    SHARE,
    answer_messages,
    escape,
    notice,
)

__all__ = ["HELP", "SlackBot", "build_bot"]

log = logging.getLogger(__name__)

HELP = (
    "*Corral* answers questions from your documents and code, with citations.\n"
    "• Mention me in a channel (`@Corral where are retries configured?`) or write to me directly; "
    "reply in my thread to follow up.\n"
    "• `/corral ask <question>` — an answer only you see, with a button to share it\n"
    "• `/corral corpus <name>` — the corpus this channel asks (admins); `/corral corpus` shows it\n"
    "• `/corral ingest <git url> [corpus]` — index a repository (admins)\n"
    "• `/corral status` — this channel's corpus and its indexing"
)
_JOB_POLL_S = 2.0
_JOB_FOLLOW_S = 25 * 60  # a response URL is good for 30 minutes


class SlackBot:
    """The Bolt app with the threads its listeners run on; :meth:`stop` stops following runs."""

    def __init__(self, settings: Settings, client: WebClient | None = None) -> None:
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
        if not token:
            raise ConfigurationError("the Slack bot needs CORRAL_SLACK_BOT_TOKEN (xoxb-…)")
        self.settings = settings
        self.stopping = threading.Event()
        self.client = client or WebClient(token=token, base_url=settings.slack_api_url)
        self.client.retry_handlers = [ConnectionErrorRetryHandler(max_retry_count=2),
                                      RateLimitErrorRetryHandler(max_retry_count=4)]
        self.executor = ThreadPoolExecutor(max_workers=settings.slack_threads,
                                           thread_name_prefix="corral-slack")
        self.app = App(
            signing_secret=secret, client=self.client, token_verification_enabled=False,  # its token
            request_verification_enabled=secret is not None, listener_executor=self.executor,
            logger=logging.getLogger("corral.slack.bolt"),
        )
        self._register(self.app)

    def stop(self) -> None:
        self.stopping.set()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- wiring ------------------------------------------------------------------------------------
    def _register(self, app: App) -> None:
        app.use(self._once)
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.command("/corral")(self._on_command)
        app.action(FEEDBACK_UP)(self._on_feedback)
        app.action(FEEDBACK_DOWN)(self._on_feedback)
        app.action(SHARE)(self._on_share)
        app.error(self._on_error)

    def _once(self, body: dict[str, Any], next: Any, request: Any) -> BoltResponse | None:
        """Drop a redelivered event (Slack retries one it thinks was lost, same event id)."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            with session_scope() as session:
                fresh = first_delivery(session, str(event_id))
            if not fresh:
                retry = (request.headers.get("x-slack-retry-num") or ["?"])[0]
                log.info("dropped Slack's redelivery %s of event %s", retry, event_id)
                return BoltResponse(status=200, body="")
        next()
        return None

    def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("Slack listener failed: %r (%s)", error, body.get("type"), exc_info=error)

    def _ignored(self, event: dict[str, Any], context: BoltContext) -> bool:
        """The bot's own messages always; other bots' unless CORRAL_SLACK_ANSWER_BOTS."""
        if event.get("user") and event.get("user") == context.bot_user_id:
            return True
        if event.get("bot_id") and event.get("bot_id") == context.bot_id:
            return True
        from_bot = bool(event.get("bot_id")) or event.get("subtype") == "bot_message"
        return from_bot and not self.settings.slack_answer_bots

    # -- questions ---------------------------------------------------------------------------------
    def _on_mention(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        if self._ignored(event, context):
            return
        self._ask(event, context, client)

    def _on_message(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        if event.get("subtype") not in (None, "bot_message", "thread_broadcast", "file_share"):
            return  # edits, deletions, joins…
        if self._ignored(event, context):
            return
        text = str(event.get("text") or "")
        if event.get("channel_type") == "im":
            self._ask(event, context, client)
            return
        thread_ts = event.get("thread_ts")
        if not thread_ts or thread_ts == event.get("ts"):
            return  # not addressed to the bot: a channel message without a mention
        if context.bot_user_id and f"<@{context.bot_user_id}>" in text:
            return  # a mention: the app_mention event answers it
        with session_scope() as session:
            answered = thread_corpus(session, self._team(event, context), str(event["channel"]),
                                     str(thread_ts))
        if answered is not None:
            self._ask(event, context, client)

    def _team(self, event: dict[str, Any], context: BoltContext) -> str:
        return str(context.team_id or event.get("team") or "")

    def _ask(self, event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        channel, ts = str(event["channel"]), str(event["ts"])
        thread_ts = str(event.get("thread_ts") or ts)
        reply = ThreadReply(client, channel, thread_ts)
        question = strip_mention(str(event.get("text") or ""), context.bot_user_id)
        if not question:
            reply.finish([notice(HELP)])
            return
        history: list[tuple[str, str]] = []
        if event.get("thread_ts") and event.get("thread_ts") != ts:
            try:
                history = thread_history(client, channel, thread_ts, current_ts=ts,
                                         bot_user_id=context.bot_user_id, bot_id=context.bot_id)
            except SlackApiError as exc:  # answer without the context rather than not at all
                log.warning("could not read thread %s for context: %s", thread_ts, exc)
        ask = Ask(self._team(event, context), channel, str(event.get("user") or ""), question, thread_ts,
                  tuple(history))
        answer(ask, reply, self.settings, stop=self.stopping)

    # -- /corral -----------------------------------------------------------------------------------
    def _on_command(self, ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient,
                    context: BoltContext) -> None:
        text = str(command.get("text") or "").strip()
        sub, _, rest = text.partition(" ")
        sub, rest = sub.lower(), rest.strip()
        team, channel, user = str(command.get("team_id") or context.team_id), str(command["channel_id"]), \
            str(command["user_id"])
        if sub == "ask" and rest:
            ack(response_type="ephemeral", text=f":mag: Asking: _{escape(rest[:300])}_")
            answer(Ask(team, channel, user, rest), EphemeralReply(respond, client, channel, user),
                   self.settings, stop=self.stopping)
            return
        if sub not in ("corpus", "ingest", "status"):
            ack(response_type="ephemeral", text=HELP)
            return
        ack()
        try:
            if sub == "corpus":
                respond(response_type="ephemeral", text=self._corpus(client, team, channel, user, rest))
            elif sub == "status":
                respond(response_type="ephemeral", text=self._status(team, channel))
            else:
                self._ingest(client, respond, team, channel, user, rest)
        except CorralError as exc:
            respond(response_type="ephemeral", text=f":warning: {escape(str(exc))}")
        except Exception as exc:
            log.exception("/corral %s failed", sub)
            respond(response_type="ephemeral",
                    text=f":warning: `/corral {sub}` failed: an internal error ({type(exc).__name__})")

    def _is_admin(self, client: WebClient, user: str) -> bool:
        if user in self.settings.slack_admins:
            return True
        try:
            info = client.users_info(user=user).get("user") or {}
        except SlackApiError as exc:
            log.warning("could not look up Slack user %s: %s", user, exc)
            return False
        return bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))

    def _corpus(self, client: WebClient, team: str, channel: str, user: str, name: str) -> str:
        with session_scope() as session:
            ws = team_workspace(session, team, self.settings.slack_workspace)
            if not name:
                current = channel_corpus(session, team, channel)
                if current is None:
                    return ("This channel has no corpus yet. An admin can set one: "
                            "`/corral corpus <name>`.")
                return f"This channel asks *{escape(current.name)}*."
            ws_name = ws.name
        if not self._is_admin(client, user):
            return (":no_entry: Only workspace admins (or users in CORRAL_SLACK_ADMINS) can change the "
                    "corpus.")
        with session_scope() as session:
            map_channel(session, team, channel, name, ws_name, set_by=user)
        return f":white_check_mark: Questions in this channel now ask *{escape(name)}*."

    def _status(self, team: str, channel: str) -> str:
        with session_scope() as session:
            ws = team_workspace(session, team, self.settings.slack_workspace)
            corpus = channel_corpus(session, team, channel)
            lines = [f"Slack team bound to Corral workspace *{escape(ws.name)}*."]
            if corpus is None:
                lines.append("No corpus is mapped to this channel (`/corral corpus <name>`).")
                return "\n".join(lines)
            lines.append(f"This channel asks *{escape(corpus.name)}*: {corpus.document_count:,} documents, "
                         f"{corpus.token_count:,} tokens.")
            job = active_ingest(session, corpus.id) or session.scalar(
                select(Job).where(Job.corpus_id == corpus.id).order_by(Job.created_at.desc()).limit(1))
            if job is not None:
                lines.append(_job_line(job))
        return "\n".join(lines)

    def _ingest(self, client: WebClient, respond: Respond, team: str, channel: str, user: str,
                rest: str) -> None:
        url, _, name = rest.partition(" ")
        url, name = url.strip("<>").split("|")[0], name.strip()
        if not url:
            respond(response_type="ephemeral", text="Usage: `/corral ingest <git url> [corpus]`")
            return
        if not self._is_admin(client, user):
            respond(response_type="ephemeral",
                    text=":no_entry: Only workspace admins (or users in CORRAL_SLACK_ADMINS) can ingest.")
            return
        with session_scope() as session:
            ws = team_workspace(session, team, self.settings.slack_workspace)
            mapped = channel_corpus(session, team, channel)
            corpus = name or (mapped.name if mapped is not None else "")
            ws_name = ws.name
        if not corpus:
            respond(response_type="ephemeral", text="Name the corpus: `/corral ingest <git url> <corpus>` "
                    "(or map this channel to one first with `/corral corpus <name>`).")
            return
        job_id = submit_ingest(corpus, source_spec(git=url), workspace=ws_name, remote=True)
        respond(response_type="ephemeral", text=f":inbox_tray: Indexing `{escape(url)}` into "
                f"*{escape(corpus)}* (job `{job_id}`). I will tell you here when it is done.")
        deadline = time.monotonic() + _JOB_FOLLOW_S
        while time.monotonic() < deadline and not self.stopping.is_set():
            with session_scope() as session:
                job = session.get(Job, job_id)
                if job is None or job.state.finished:
                    text = _job_line(job) if job is not None else f"Job `{job_id}` is gone."
                    respond(response_type="ephemeral", text=text)
                    return
            time.sleep(_JOB_POLL_S)
        respond(response_type="ephemeral",
                text=f"Job `{job_id}` is still running: `/corral status` follows it.")

    # -- buttons -----------------------------------------------------------------------------------
    def _run_of(self, body: dict[str, Any], run_id: str) -> tuple[Any, str, dict[str, Any] | None]:
        """The run (of the clicking team's workspace), its corpus's name and its answer record."""
        team = str((body.get("team") or {}).get("id") or body.get("team_id") or "")
        with session_scope() as session:
            ws = team_workspace(session, team, self.settings.slack_workspace)
            run = get_run(session, run_id, workspace_id=ws.id)
            corpus = session.get(Corpus, run.corpus_id)
            final = session.scalar(select(RunEvent).where(RunEvent.run_id == run.id, RunEvent.kind == FINAL)
                                   .order_by(RunEvent.seq.desc()).limit(1))
            result = (final.data or {}).get("result") if final is not None else None
            session.expunge(run)
        return run, corpus.name if corpus is not None else "", result

    def _on_feedback(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                     respond: Respond) -> None:
        ack()
        rating = 1 if action.get("action_id") == FEEDBACK_UP else -1
        user = str((body.get("user") or {}).get("id") or "")
        try:
            run, _, _ = self._run_of(body, str(action.get("value") or ""))
            with session_scope() as session:
                add_feedback(session, get_run(session, run.id), rating, None)
            text = f"Thanks — your {':+1:' if rating > 0 else ':-1:'} is recorded on this answer."
        except CorralError as exc:
            text = f":warning: I could not record that: {escape(str(exc))}"
        self._tell(client, respond, body, user, text)

    def _on_share(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient,
                  respond: Respond) -> None:
        ack()
        user = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or "")
        try:
            _run, corpus, result = self._run_of(body, str(action.get("value") or ""))
            if result is None:
                raise CorralError("this run has no answer to share")
            costs = (self.settings.backend_cost_per_1k_input, self.settings.backend_cost_per_1k_output)
            for message in answer_messages(result, corpus=corpus, public_url=self.settings.public_url,
                                           cost_per_1k=costs, shared_by=user):
                client.chat_postMessage(channel=channel, **message.kwargs())
            respond(delete_original=True)
        except SlackApiError as exc:
            self._tell(client, respond, body, user, f":warning: I could not post in this channel "
                       f"({exc.response.get('error')}): invite me with `/invite @Corral` first.")
        except CorralError as exc:
            self._tell(client, respond, body, user, f":warning: {escape(str(exc))}")

    def _tell(self, client: WebClient, respond: Respond, body: dict[str, Any], user: str, text: str) -> None:
        """A note only ``user`` sees, next to the message they clicked on."""
        container = body.get("container") or {}
        channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
        if not container.get("is_ephemeral") and channel:
            thread = (body.get("message") or {}).get("thread_ts") or container.get("thread_ts")
            try:
                client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread)
                return
            except SlackApiError as exc:
                log.info("chat.postEphemeral failed (%s); answering through the response URL", exc)
        respond(response_type="ephemeral", replace_original=False, text=text)


def _job_line(job: Job) -> str:
    counts = f"{job.done:,}/{job.total:,} documents" if job.total else "listing documents"
    extra = "".join(f", {n:,} {what}" for n, what in ((job.failed, "failed"), (job.skipped, "skipped")) if n)
    error = f" — {escape(job.error)}" if job.error else ""
    return f"Ingest job `{job.id}`: *{job.state.value}* ({counts}{extra}){error}"


def build_bot(settings: Settings | None = None, client: WebClient | None = None) -> SlackBot:
    """The bot for ``settings`` (default: the process's); its Web API client talks to
    ``CORRAL_SLACK_API_URL`` unless ``client`` is given."""
    return SlackBot(settings or get_settings(), client)
