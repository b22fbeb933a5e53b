"""What the Slack bot keeps: which Corral workspace a Slack team is bound to, which corpus a channel
asks, which threads the bot answered (their replies are follow-ups), and which Events API deliveries
it already took (Slack retries one it thinks was lost, with the same event id).

Plain functions over a SQL session, shared by the bot, the CLI and the dashboard. A channel can only
be mapped to a corpus of its team's workspace.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral.core.db import Corpus, SlackChannel, SlackEvent, SlackTeam, SlackThread, Workspace
from corral.core.errors import InvalidInputError, NotFoundError
from corral.core.services.corpora import get_corpus, get_or_create_workspace, get_workspace

__all__ = [
    "EVENT_MEMORY",
    "bind_team",
    "channel_corpus",
    "check_team",
    "first_delivery",
    "list_channels",
    "list_teams",
    "map_channel",
    "remember_thread",
    "team_workspace",
    "thread_corpus",
    "unmap_channel",
]

EVENT_MEMORY = timedelta(hours=6)  # Slack retries a delivery for about an hour at most
_SLACK_ID_CHARS = 32


def _check_id(kind: str, value: str) -> str:
    if not value or len(value) > _SLACK_ID_CHARS or not value.replace(".", "").isalnum():
        raise InvalidInputError(f"not a Slack {kind} id: {value[:40]!r}")
    return value


def team_workspace(session: Session, team_id: str, default_workspace: str) -> Workspace:
    """The workspace ``team_id`` is bound to; a team seen for the first time is bound to
    ``default_workspace`` (created if new)."""
    _check_id("team", team_id)
    team = session.scalar(select(SlackTeam).where(SlackTeam.team_id == team_id))
    if team is not None:
        ws = session.get(Workspace, team.workspace_id)
        if ws is not None:
            return ws
    ws = get_or_create_workspace(session, default_workspace)
    try:
        with session.begin_nested():
            session.add(SlackTeam(team_id=team_id, workspace_id=ws.id))
    except IntegrityError:  # bound concurrently: read the winner's binding
        team = session.scalar(select(SlackTeam).where(SlackTeam.team_id == team_id))
        if team is not None:
            return session.get(Workspace, team.workspace_id) or ws
    return ws


def bind_team(session: Session, team_id: str, workspace: str) -> SlackTeam:
    """Bind ``team_id`` to the existing ``workspace`` (moving it from another one). Its channel
    mappings to corpora of the previous workspace are dropped: the team no longer reaches them."""
    _check_id("team", team_id)
    ws = get_workspace(session, workspace)
    team = session.scalar(select(SlackTeam).where(SlackTeam.team_id == team_id))
    if team is None:
        team = SlackTeam(team_id=team_id, workspace_id=ws.id)
        session.add(team)
    elif team.workspace_id != ws.id:
        team.workspace_id = ws.id
        elsewhere = select(Corpus.id).where(Corpus.workspace_id != ws.id)
        session.execute(delete(SlackChannel).where(SlackChannel.team_id == team_id,
                                                   SlackChannel.corpus_id.in_(elsewhere)))
        session.execute(delete(SlackThread).where(SlackThread.team_id == team_id,
                                                  SlackThread.corpus_id.in_(elsewhere)))
    session.flush()
    return team


def list_teams(session: Session) -> list[tuple[SlackTeam, str]]:
    """Every bound team with its workspace's name."""
    return [(t, name) for t, name in session.execute(
        select(SlackTeam, Workspace.name).join(Workspace, Workspace.id == SlackTeam.workspace_id)
        .order_by(SlackTeam.team_id))]


def check_team(session: Session, team_id: str, workspace_id: int) -> None:
    """A NotFoundError unless ``team_id`` is bound to ``workspace_id`` (another workspace's team is
    not found either, with the same message)."""
    bound = session.scalar(select(SlackTeam.workspace_id).where(SlackTeam.team_id == team_id[:64]))
    if bound != workspace_id:
        raise NotFoundError(f"no Slack team {team_id[:40]!r} is bound to this workspace (it is bound when "
                            "it first writes to the bot, or with `corral slack bind`)")


def channel_corpus(session: Session, team_id: str, channel_id: str) -> Corpus | None:
    """The corpus mapped to the channel, if any."""
    return session.scalar(
        select(Corpus).join(SlackChannel, SlackChannel.corpus_id == Corpus.id)
        .where(SlackChannel.team_id == team_id, SlackChannel.channel_id == channel_id))


def map_channel(session: Session, team_id: str, channel_id: str, corpus: str, workspace: str,
                set_by: str | None = None) -> SlackChannel:
    """Map the channel to ``corpus`` of ``workspace`` (the team's): its questions ask that corpus.
    An unknown corpus is a NotFoundError naming the workspace's corpora."""
    _check_id("team", team_id)
    _check_id("channel", channel_id)
    try:
        target = get_corpus(session, corpus, workspace)
    except NotFoundError:
        names = session.scalars(select(Corpus.name).join(Workspace).where(Workspace.name == workspace)
                                .order_by(Corpus.name)).all()
        have = ", ".join(names) if names else "none yet"
        raise NotFoundError(f"no corpus named {corpus[:64]!r} in this workspace (corpora: {have})") from None
    row = session.scalar(select(SlackChannel).where(SlackChannel.team_id == team_id,
                                                    SlackChannel.channel_id == channel_id))
    if row is None:
        row = SlackChannel(team_id=team_id, channel_id=channel_id, corpus_id=target.id, set_by=set_by)
        session.add(row)
    else:
        row.corpus_id, row.set_by = target.id, set_by
    session.flush()
    return row


def unmap_channel(session: Session, team_id: str, channel_id: str) -> bool:
    """Forget the channel's corpus; whether it had one."""
    gone = session.execute(delete(SlackChannel).where(SlackChannel.team_id == team_id,
                                                      SlackChannel.channel_id == channel_id))
    return bool(getattr(gone, "rowcount", 0))


def list_channels(session: Session, workspace_id: int) -> list[tuple[SlackChannel, str]]:
    """The channel mappings of the workspace's corpora, each with its corpus's name."""
    return [(c, name) for c, name in session.execute(
        select(SlackChannel, Corpus.name).join(Corpus, Corpus.id == SlackChannel.corpus_id)
        .where(Corpus.workspace_id == workspace_id).order_by(SlackChannel.team_id, SlackChannel.channel_id))]


def remember_thread(session: Session, team_id: str, channel_id: str, thread_ts: str, corpus_id: int) -> None:
    """Note that the bot answers in this thread, from ``corpus_id`` (kept if already noted)."""
    if thread_corpus(session, team_id, channel_id, thread_ts) is not None:
        return
    try:
        with session.begin_nested():
            session.add(SlackThread(team_id=team_id, channel_id=channel_id, thread_ts=thread_ts,
                                    corpus_id=corpus_id))
    except IntegrityError:
        pass  # noted concurrently


def thread_corpus(session: Session, team_id: str, channel_id: str, thread_ts: str) -> Corpus | None:
    """The corpus the bot answered this thread from, or None when it has not answered in it."""
    return session.scalar(
        select(Corpus).join(SlackThread, SlackThread.corpus_id == Corpus.id)
        .where(SlackThread.team_id == team_id, SlackThread.channel_id == channel_id,
               SlackThread.thread_ts == thread_ts))


def first_delivery(session: Session, event_id: str, now: datetime | None = None) -> bool:
    """True the first time ``event_id`` is seen, False for a redelivery of it. Forgets deliveries
    older than :data:`EVENT_MEMORY` as it goes."""
    now = now or datetime.now(UTC)
    session.execute(delete(SlackEvent).where(SlackEvent.received_at < now - EVENT_MEMORY))
    try:
        with session.begin_nested():
            session.add(SlackEvent(event_id=event_id[:64], received_at=now))
    except IntegrityError:
        return False
    return True
