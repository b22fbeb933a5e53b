"""``POST /slack/events``: Slack's Events API, slash commands and button clicks, handed to the bot.

Bolt's own Starlette adapter runs the app on the event loop; here it runs on a worker thread, so a
slow database or Web API call never holds up the server's other requests.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

from corral.platform.slack.app import SlackBot

__all__ = ["EVENTS_PATH", "slack_routes"]

EVENTS_PATH = "/slack/events"


def slack_routes(bot: SlackBot) -> APIRouter:
    """The route Slack's requests come to (its signature checked by the bot, not an API key)."""
    router = APIRouter()

    @router.post(EVENTS_PATH, include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        response = await run_in_threadpool(bot.app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(response)

    return router
