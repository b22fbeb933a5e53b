"""A question from Slack, answered as a run: find the corpus, submit the run, edit one progress message
as the run's events come, then show the answer (or, whatever went wrong, a message saying why).

Where the answer goes is a :class:`Reply`: a thread (a message posted, then edited in place) or an
answer only the asker sees (a slash command's ``response_url``, which Slack lets a bot use five
times in 30 minutes, and ``chat.postEphemeral``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.core.config import Settings
from corral.core.db import Corpus, session_scope
from corral.core.errors import ConflictError, CorralError, NotFoundError, RateLimitedError
from corral.core.services.jobs import active_ingest
from corral.core.services.runs import FINAL, events_after
from corral.core.services.slack import (
    channel_corpus,
    remember_thread,
    team_workspace,
    thread_corpus,
)
from corral.core.services.usage import check_budget
from corral.platform.runs import submit_run
from corral.platform.slack.render import (
    ANSWER_EVENT,
    Message,
    Progress,
    answer_messages,
    error_message,
    escape,
    notice,
    unescape,
)

__all__ = ["Ask", "EphemeralReply", "Reply", "ThreadReply", "answer", "thread_history", "with_history"]

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often a followed run's new events are read
HISTORY_CHARS = 2400  # the earlier turns a follow-up carries, newest kept first
TURN_CHARS = 600
WORDS_EVERY = 4  # progress intervals between two edits that only update a count
HINTS = {
    "conflict": "ask again once its ingest job has finished (`/corral status` shows it)",
    "model_error": "the model failed or ran out of budget; try again, or ask an admin to look at the log",
    "service_unavailable": "a service Corral needs is down; try again in a minute",
    "interrupted": "the server restarted while answering; ask again",
    "cancelled": "someone cancelled the run",
}


class Refused(CorralError):
    """A question the bot turns down before running it; the message says why and what to do."""


class Reply(Protocol):
    """Where one answer goes."""

    share: bool  # whether the answer offers to be shared in the channel (only its asker sees it)

    def progress(self, message: Message) -> None:
        """Show (the first time) or update the progress message."""

    def finish(self, messages: Sequence[Message]) -> None:
        """Show the answer (or the failure) in place of the progress message; more messages after it."""


class ThreadReply:
    """An answer in a thread: one message posted, edited as the run goes, then replaced by the answer
    (a long answer's further parts posted after it)."""

    share = False

    def __init__(self, client: WebClient, channel: str, thread_ts: str) -> None:
        self.client, self.channel, self.thread_ts = client, channel, thread_ts
        self.ts: str | None = None

    def progress(self, message: Message) -> None:
        if self.ts is None:
            posted = self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts,
                                                  **message.kwargs())
            self.ts = str(posted["ts"])
        else:
            self.client.chat_update(channel=self.channel, ts=self.ts, **message.kwargs())

    def finish(self, messages: Sequence[Message]) -> None:
        first, *rest = messages
        if self.ts is None:
            self.progress(first)
        else:
            try:
                self.client.chat_update(channel=self.channel, ts=self.ts, **first.kwargs())
            except SlackApiError as exc:  # e.g. the progress message was deleted: post instead
                log.warning("could not edit the progress message (%s); posting the answer", exc)
                self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, **first.kwargs())
        for message in rest:
            self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, **message.kwargs())


class EphemeralReply:
    """An answer only the asker sees, through the slash command's ``response_url`` (replacing the
    "asking…" message; at most ``max_updates`` progress edits, as Slack allows five uses in all), with
    ``chat.postEphemeral`` for further parts and when the response URL fails. Its answer has a "share
    in channel" button."""

    share = True

    def __init__(self, respond: Callable[..., Any], client: WebClient, channel: str, user: str,
                 max_updates: int = 2) -> None:
        self.respond, self.client, self.channel, self.user = respond, client, channel, user
        self.updates_left = max_updates

    def progress(self, message: Message) -> None:
        if self.updates_left <= 0:
            return
        self.updates_left -= 1
        try:
            self.respond(text=message.text, blocks=message.blocks, response_type="ephemeral",
                         replace_original=True)
        except Exception as exc:  # progress is a courtesy: the answer still comes
            log.warning("could not show progress through the response URL: %r", exc)

    def finish(self, messages: Sequence[Message]) -> None:
        first, *rest = messages
        try:
            self.respond(text=first.text, blocks=first.blocks, response_type="ephemeral",
                         replace_original=True)
        except Exception as exc:
            log.warning("the response URL failed (%r); posting the answer as an ephemeral message", exc)
            rest = [first, *rest]
        for message in rest:
            self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=message.text,
                                           blocks=message.blocks)


@dataclass(frozen=True, slots=True)
class Ask:
    """One question from Slack: who asked where, and the earlier turns of its thread."""

    team_id: str
    channel_id: str
    user_id: str
    question: str
    thread_ts: str | None = None  # the thread it is asked in (None: an ephemeral slash-command ask)
    history: tuple[tuple[str, str], ...] = ()  # (speaker, text), oldest first


def with_history(question: str, history: Sequence[tuple[str, str]]) -> str:
    """The question a follow-up runs as: the thread's earlier turns (the newest that fit in
    :data:`HISTORY_CHARS`), then the follow-up itself, last, where the model looks for it."""
    if not history:
        return question
    lines: list[str] = []
    room = HISTORY_CHARS
    for speaker, text in reversed(history):
        text = " ".join(text.split())
        if len(text) > TURN_CHARS:
            text = text[:TURN_CHARS].rsplit(" ", 1)[0] + " …"
        line = f"{speaker}: {text}"
        if len(line) > room:
            break
        lines.insert(0, line)
        room -= len(line) + 1
    if not lines:
        return question
    return "Earlier in this conversation:\n" + "\n".join(lines) + f"\n\nFollow-up question: {question}"


def thread_history(client: WebClient, channel: str, thread_ts: str, *, current_ts: str,
                   bot_user_id: str | None, bot_id: str | None, limit: int = 100) -> list[tuple[str, str]]:
    """The thread's earlier turns, oldest first: people's messages (the bot's mention taken out) and
    the bot's answers (its progress and error messages are not turns). Other bots' messages are left
    out. Read with ``conversations.replies``."""
    replies = client.conversations_replies(channel=channel, ts=thread_ts, limit=limit,
                                           include_all_metadata=True)
    turns: list[tuple[str, str]] = []
    for m in replies.get("messages") or []:
        if m.get("ts") == current_ts or m.get("subtype") not in (None, "bot_message", "thread_broadcast"):
            continue
        ours = (bot_user_id is not None and m.get("user") == bot_user_id) or (
            bot_id is not None and m.get("bot_id") == bot_id)
        text = unescape(strip_mention(str(m.get("text") or ""), bot_user_id))
        if ours:
            if (m.get("metadata") or {}).get("event_type") == ANSWER_EVENT and text:
                if turns and turns[-1][0] == "Corral":  # a long answer's further parts
                    turns[-1] = ("Corral", f"{turns[-1][1]} {text}")
                else:
                    turns.append(("Corral", text))
        elif not m.get("bot_id") and text:
            turns.append(("User", text))
    return turns


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """``text`` without the bot's mentions."""
    if bot_user_id:
        text = text.replace(f"<@{bot_user_id}>", "")
    return text.strip()


def _corpus_for(session: Session, ask: Ask, workspace_id: int) -> Corpus:
    """Which corpus the question asks: its thread's, else its channel's, else the workspace's only one."""
    if ask.thread_ts is not None:
        corpus = thread_corpus(session, ask.team_id, ask.channel_id, ask.thread_ts)
        if corpus is not None and corpus.workspace_id == workspace_id:
            return corpus
    corpus = channel_corpus(session, ask.team_id, ask.channel_id)
    if corpus is not None and corpus.workspace_id == workspace_id:
        return corpus
    corpora = list(session.scalars(select(Corpus).where(Corpus.workspace_id == workspace_id)
                                   .order_by(Corpus.name).limit(21)))
    if len(corpora) == 1:
        return corpora[0]
    names = ", ".join(f"`{escape(c.name)}`" for c in corpora[:20]) or "none yet"
    raise Refused(f"no corpus is mapped to this channel. An admin can map one with `/corral corpus "
                  f"<name>` (corpora of this workspace: {names}).")


def _check_ready(session: Session, corpus: Corpus) -> None:
    """A corpus with nothing indexed yet is refused with what it is waiting for."""
    if corpus.document_count > 0:
        return
    job = active_ingest(session, corpus.id)
    name = escape(corpus.name)
    if job is not None:
        done = f" ({job.done:,} of {job.total:,} documents so far)" if job.total else ""
        raise Refused(f":hourglass_flowing_sand: *{name}* is still being indexed{done}, and has no "
                      "documents to answer from yet. Ask again when its ingest job has finished — "
                      "`/corral status` shows how far it got.")
    raise Refused(f"*{name}* has no indexed documents yet: add some with `/corral ingest <git url>`.")


def answer(ask: Ask, reply: Reply, settings: Settings, *, stop: threading.Event | None = None) -> str | None:
    """Answer ``ask`` through ``reply``; returns the run's id (None when refused before running).
    Never raises and never ends silently: every failure becomes a message through ``reply``."""
    run_id: str | None = None
    try:
        with session_scope() as session:
            ws = team_workspace(session, ask.team_id, settings.slack_workspace)
            corpus = _corpus_for(session, ask, ws.id)
            _check_ready(session, corpus)
            check_budget(session, ws.id)
            corpus_name, workspace, indexing = corpus.name, ws.name, active_ingest(session, corpus.id)
            if ask.thread_ts is not None:
                remember_thread(session, ask.team_id, ask.channel_id, ask.thread_ts, corpus.id)
        progress = Progress(corpus_name)
        if indexing is not None:
            progress.note = (f"{corpus_name} is still indexing: answering from the documents indexed so far")
        reply.progress(notice(progress.text()))
        run_id = submit_run(corpus_name, with_history(ask.question, ask.history), workspace=workspace)
        final = _follow(run_id, progress, reply, settings, stop)
        reply.finish(_outcome(final, run_id, corpus_name, settings, share=reply.share))
    except Refused as exc:
        _fail(reply, notice(str(exc)))
    except RateLimitedError as exc:
        _fail(reply, error_message(str(exc), hint="the workspace's token budget is spent"))
    except (NotFoundError, ConflictError, CorralError) as exc:
        _fail(reply, error_message(str(exc), run_id=run_id))
    except SlackApiError as exc:
        log.warning("Slack refused a message of run %s: %s", run_id, exc)
        _fail(reply, error_message(f"Slack refused my message ({exc.response.get('error')})", run_id=run_id))
    except Exception as exc:
        log.exception("answering from Slack failed (run %s)", run_id)
        _fail(reply, error_message(f"an internal error ({type(exc).__name__}) stopped me", run_id=run_id,
                                   hint="the server log has the details"))
    return run_id


def _fail(reply: Reply, message: Message) -> None:
    try:
        reply.finish([message])
    except Exception:
        log.exception("could not even tell Slack that answering failed")


def _follow(run_id: str, progress: Progress, reply: Reply, settings: Settings,
            stop: threading.Event | None) -> Mapping[str, Any] | str:
    """Read the run's events until its ``final`` one (returned), editing the progress message when
    what it says changes (at most every ``slack_progress_interval_s``). A run that stays silent longer
    than :func:`_silence_s` (its worker is gone and nothing failed it yet), or a server stopping, ends
    the following: the reason is returned instead."""
    silence = _silence_s(settings)
    after, shown, shown_at, heard = 0, progress.text(), time.monotonic(), time.monotonic()
    while True:
        with session_scope() as session:
            events = [(e.seq, e.kind, dict(e.data)) for e in events_after(session, run_id, after)]
        for seq, kind, data in events:
            after = seq
            if kind == FINAL:
                return data
        now = time.monotonic()
        if events:
            heard = now
        progress.feed((kind, data) for _, kind, data in events)
        text = progress.text()
        # A new phase shows at the next interval; a mere count (words written) only every few.
        wait = settings.slack_progress_interval_s * (1 if _phase(text) != _phase(shown) else WORDS_EVERY)
        if text != shown and now - shown_at >= wait:
            reply.progress(notice(text))
            shown, shown_at = text, now
        if stop is not None and stop.is_set():
            return "the server is restarting, so I stopped following the run; ask again in a minute"
        if now - heard > silence:
            return (f"the run has said nothing for {silence:.0f} s (its worker may be gone); I stopped "
                    "following it")
        time.sleep(POLL_S)


def _phase(text: str) -> str:
    return re.sub(r"[\d,]+", "#", text)


def _silence_s(settings: Settings) -> float:
    """How long a run may go without an event before the bot stops following it: loading the model
    (the first ask of a process) and a long prompt's prefill are silent, so it is generous."""
    return max(600.0, settings.agent_max_seconds)


def _outcome(final: Mapping[str, Any] | str, run_id: str, corpus: str, settings: Settings, *,
             share: bool = False) -> list[Message]:
    if isinstance(final, str):
        return [error_message(final, run_id=run_id)]
    result = final.get("result")
    if final.get("state") == "succeeded" and result:
        costs = (settings.backend_cost_per_1k_input, settings.backend_cost_per_1k_output)
        return answer_messages(result, corpus=corpus, public_url=settings.public_url, cost_per_1k=costs,
                               share=share)
    error_type = str(final.get("error_type") or "error")
    reason = str(final.get("error") or f"the run ended {final.get('state')}")
    return [error_message(reason, run_id=run_id, hint=HINTS.get(error_type))]
