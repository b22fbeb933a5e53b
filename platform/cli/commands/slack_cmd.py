"""``corral slack``: the Slack bot over Socket Mode (``--socket``), and which Corral workspace a Slack
team asks (``corral slack bind``, ``corral slack teams``). Over HTTP the bot is part of ``corral serve``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from corral.core.config import get_settings
from corral.core.db import session_scope
from corral.core.errors import ConfigurationError
from corral.core.services.slack import bind_team, list_teams
from corral.platform.composition import prepare

console = Console()


def slack(
    ctx: typer.Context,
    socket: Annotated[bool, typer.Option("--socket", help="Connect to Slack over Socket Mode "
                                         "(needs CORRAL_SLACK_APP_TOKEN) and answer until stopped.")] = False,
) -> None:
    """The Slack bot. Over HTTP it is served by `corral serve` at /slack/events; `--socket` runs it
    here for hosts Slack cannot reach."""
    if ctx.invoked_subcommand is not None:
        return
    if not socket:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    from corral.platform.slack import run_socket_mode

    settings = get_settings()
    if settings.slack_bot_token is None:
        raise ConfigurationError("the Slack bot needs CORRAL_SLACK_BOT_TOKEN (xoxb-…)")
    prepare()
    console.print("Slack bot connecting over Socket Mode (Ctrl-C stops it)…")
    run_socket_mode(settings)


def bind(
    team_id: Annotated[str, typer.Argument(help="The Slack team id (T…), as /corral status or the "
                                           "server log shows it.")],
    workspace: Annotated[str, typer.Argument(help="The Corral workspace its channels ask.")],
) -> None:
    """Bind a Slack team to a Corral workspace: its channels reach only that workspace's corpora."""
    prepare()
    with session_scope() as session:
        bind_team(session, team_id, workspace)
    console.print(f"Slack team {escape(team_id)} now asks workspace [bold]{escape(workspace)}[/].")


def teams() -> None:
    """The Slack teams and the workspaces they are bound to."""
    prepare()
    with session_scope() as session:
        rows = [(t.team_id, name) for t, name in list_teams(session)]
    if not rows:
        console.print("No Slack team has written yet; the first one is bound to CORRAL_SLACK_WORKSPACE "
                      f"({escape(get_settings().slack_workspace)}).")
    for team_id, name in rows:
        console.print(f"{escape(team_id)}\t{escape(name)}")
