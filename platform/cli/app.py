"""``corral``: ingest, ask, serve, run workers, migrate."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from corral.core.errors import CorralError
from corral.platform.cli import exit_codes
from corral.platform.cli.commands import (
    ask_cmd,
    backup_cmd,
    db_cmd,
    demo_cmd,
    eval_cmd,
    inference_cmd,
    ingest_cmd,
    jobs_cmd,
    keys_cmd,
    serve_cmd,
    slack_cmd,
    stack_cmd,
)

err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Turn our errors into one red line and the matching exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CorralError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exit_codes.for_error(exc)) from None

    return wrapper  # type: ignore[return-value]


app = typer.Typer(
    name="corral",
    help="Corral: ask questions over your documents and code, answered with citations.\n\n"
    + exit_codes.HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ingest", epilog=exit_codes.HELP)(friendly_errors(ingest_cmd.ingest))
app.command("ask")(friendly_errors(ask_cmd.ask))
app.command("corpora")(friendly_errors(ask_cmd.corpora))
app.command("demo")(friendly_errors(demo_cmd.demo))
app.command("eval")(friendly_errors(eval_cmd.eval_command))
app.command("serve")(friendly_errors(serve_cmd.serve))
app.command("worker")(friendly_errors(serve_cmd.worker))
app.command("export")(friendly_errors(backup_cmd.export))
app.command("import")(friendly_errors(backup_cmd.import_))
db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
db_app.command("upgrade")(friendly_errors(db_cmd.upgrade))
db_app.command("downgrade")(friendly_errors(db_cmd.downgrade))
db_app.command("current")(friendly_errors(db_cmd.current))
app.add_typer(db_app, name="db")
jobs_app = typer.Typer(help="Background jobs: list, inspect, cancel, watchdog.", no_args_is_help=True)
jobs_app.command("list")(friendly_errors(jobs_cmd.list_cmd))
jobs_app.command("show")(friendly_errors(jobs_cmd.show_cmd))
jobs_app.command("cancel")(friendly_errors(jobs_cmd.cancel_cmd))
jobs_app.command("watchdog")(friendly_errors(jobs_cmd.watchdog_cmd))
app.add_typer(jobs_app, name="jobs")
inference_app = typer.Typer(help="The OpenAI-compatible inference server.", no_args_is_help=True)
inference_app.command("serve")(friendly_errors(inference_cmd.serve))
app.add_typer(inference_app, name="inference")
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
keys_app.command("create")(friendly_errors(keys_cmd.create))
keys_app.command("list")(friendly_errors(keys_cmd.list_cmd))
keys_app.command("revoke")(friendly_errors(keys_cmd.revoke))
app.add_typer(keys_app, name="keys")
ws_app = typer.Typer(help="Workspaces: who owns which corpora, their budgets, whether credentials are kept.",
                     no_args_is_help=True)
ws_app.command("create")(friendly_errors(keys_cmd.workspace_create))
ws_app.command("list")(friendly_errors(keys_cmd.workspace_list))
ws_app.command("budget")(friendly_errors(keys_cmd.workspace_budget))
ws_app.command("secrets")(friendly_errors(keys_cmd.workspace_secrets))
app.add_typer(ws_app, name="workspaces")
stack_app = typer.Typer(help="The server-mode stack without Docker (honcho).", no_args_is_help=True)
stack_app.command("up")(friendly_errors(stack_cmd.up))
stack_app.command("procfile")(friendly_errors(stack_cmd.procfile_cmd))
app.add_typer(stack_app, name="stack")
slack_app = typer.Typer(help="The Slack bot: Socket Mode, and which workspace a Slack team asks.",
                        invoke_without_command=True)
slack_app.callback()(friendly_errors(slack_cmd.slack))
slack_app.command("bind")(friendly_errors(slack_cmd.bind))
slack_app.command("teams")(friendly_errors(slack_cmd.teams))
app.add_typer(slack_app, name="slack")


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Model loaders draw tqdm bars on every start; ours are the only progress bars worth showing.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=os.environ.get("CORRAL_LOG_LEVEL", "WARNING").upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    app()
