"""``/v1/slack/channels``: which corpus each Slack channel asks, for keys with the ``admin`` scope (the
dashboard edits the same rows; ``/corral corpus`` sets them from Slack). Only channels of Slack teams
bound to the caller's workspace, mapped to its own corpora."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, Field

from corral.core.db import Corpus, SlackChannel
from corral.core.errors import NotFoundError
from corral.core.services.slack import check_team, list_channels, map_channel, unmap_channel
from corral.platform.api.auth import AdminCaller
from corral.platform.api.deps import SessionDep
from corral.platform.api.schemas import Page, Timestamp

router = APIRouter(prefix="/slack", tags=["slack"])

SlackId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")]


class ChannelCorpus(BaseModel):
    corpus: str = Field(min_length=1, max_length=64, description="A corpus of this workspace")


class ChannelOut(BaseModel):
    team_id: str
    channel_id: str
    corpus: str
    set_by: str | None = Field(description="The Slack user who set it, or 'api'")
    created_at: Timestamp


def _out(row: SlackChannel, corpus: str) -> ChannelOut:
    return ChannelOut(team_id=row.team_id, channel_id=row.channel_id, corpus=corpus, set_by=row.set_by,
                      created_at=row.created_at)


@router.get("/channels")
def channels(caller: AdminCaller, session: SessionDep) -> Page[ChannelOut]:
    rows = list_channels(session, caller.workspace_id)
    return Page(items=[_out(r, name) for r, name in rows], total=len(rows), limit=len(rows), offset=0)


@router.put("/channels/{team_id}/{channel_id}")
def set_channel(team_id: SlackId, channel_id: SlackId, body: ChannelCorpus, caller: AdminCaller,
                session: SessionDep) -> ChannelOut:
    """Map the channel to a corpus: its questions ask that corpus."""
    check_team(session, team_id, caller.workspace_id)
    row = map_channel(session, team_id, channel_id, body.corpus, caller.workspace, set_by="api")
    session.commit()  # stored before the answer says so
    corpus = session.get(Corpus, row.corpus_id)
    return _out(row, corpus.name if corpus is not None else body.corpus)


@router.delete("/channels/{team_id}/{channel_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response)
def remove_channel(team_id: SlackId, channel_id: SlackId, caller: AdminCaller,
                   session: SessionDep) -> Response:
    check_team(session, team_id, caller.workspace_id)
    if not unmap_channel(session, team_id, channel_id):
        raise NotFoundError(f"channel {channel_id!r} has no corpus")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
