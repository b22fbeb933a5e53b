"""Socket Mode: the bot for hosts Slack cannot reach, connected out to Slack over a WebSocket with the
app-level token (``xapp-…``, scope ``connections:write``)."""

from __future__ import annotations

from slack_bolt.adapter.socket_mode import SocketModeHandler

from corral.core.config import Settings
from corral.core.errors import ConfigurationError
from corral.platform.slack.app import build_bot

__all__ = ["run_socket_mode"]


def run_socket_mode(settings: Settings) -> None:
    """Connect and answer until interrupted."""
    if settings.slack_app_token is None:
        raise ConfigurationError("Socket Mode needs CORRAL_SLACK_APP_TOKEN (an app-level token, xapp-…, "
                                 "with the connections:write scope)")
    bot = build_bot(settings)
    try:
        SocketModeHandler(bot.app, settings.slack_app_token.get_secret_value()).start()  # type: ignore[no-untyped-call]
    finally:
        bot.stop()
