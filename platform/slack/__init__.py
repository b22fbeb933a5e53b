"""The Slack bot: a Bolt app mounted by ``corral serve`` at ``/slack/events`` (the Events API over HTTP)
or run over Socket Mode by ``corral slack --socket``. Each question becomes a run; its events update
one message in the thread."""

from corral.platform.slack.app import HELP, SlackBot, build_bot
from corral.platform.slack.http import slack_routes
from corral.platform.slack.socket import run_socket_mode

__all__ = ["HELP", "SlackBot", "build_bot", "run_socket_mode", "slack_routes"]
