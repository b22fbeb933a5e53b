"""``corral keys create|list|revoke`` and ``corral workspaces create|list|budget|secrets``: who may use
the API, how much, and whether credentials found at ingest are kept.

These talk to the database directly: they are the operator's tools, run where the server's settings
are. ``corral keys create --admin`` makes the first admin key of a deployment.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from corral.core.db import ApiKey, session_scope
from corral.core.errors import ConflictError
from corral.core.services import DEFAULT_WORKSPACE, get_or_create_workspace, get_workspace, list_workspaces
from corral.core.services.corpora import find_workspace, validate_workspace_name
from corral.core.services.keys import create_key, list_keys, parse_scopes, revoke_key
from corral.core.services.usage import tokens_this_month
from corral.platform.composition import prepare

console = Console()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=moment.tzinfo or UTC).isoformat()


def key_row(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
            "created_at": _iso(key.created_at), "expires_at": _iso(key.expires_at),
            "last_used_at": _iso(key.last_used_at), "revoked_at": _iso(key.revoked_at)}


def create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "cli",
    workspace: Annotated[str, typer.Option(help="Its workspace (created if new).")] = DEFAULT_WORKSPACE,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="read, ask, ingest, admin.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Every scope (same as --scope admin).")] = False,
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API key. The whole key is printed once; only its prefix is kept readable."""
    scopes = parse_scopes(["admin"] if admin else (scope or ["read", "ask"]))
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    prepare()
    with session_scope() as session:
        ws = get_or_create_workspace(session, validate_workspace_name(workspace))
        issued = create_key(session, ws, name, scopes, expires_at=expires)
        session.flush()
        row = {**key_row(issued.key), "workspace": ws.name, "secret": issued.secret}
    if as_json:
        typer.echo(json.dumps(row, indent=2))
        return
    console.print(f"Created key [bold]{row['prefix']}[/] in workspace {row['workspace']} with scopes "
                  f"{', '.join(row['scopes'])}. Store it now; it will not be shown again:")
    typer.echo(row["secret"])


def list_cmd(
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List API keys (prefixes only)."""
    prepare()
    with session_scope() as session:
        ws_id = get_workspace(session, workspace).id if workspace else None
        rows = [{**key_row(k), "workspace": k.workspace.name} for k in list_keys(session, ws_id)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id")
    # The prefix is what `corral keys revoke` takes: never wrapped or cut, however narrow the terminal.
    table.add_column("prefix", no_wrap=True, min_width=len("crl_00000000"))
    for title in ("workspace", "name", "scopes", "expires", "last used", "revoked"):
        table.add_column(title)
    for r in rows:
        # Names come from API callers: shown as text, never read as console markup.
        table.add_row(str(r["id"]), r["prefix"], r["workspace"], escape(r["name"]), ",".join(r["scopes"]),
                      r["expires_at"] or "-", r["last_used_at"] or "-", r["revoked_at"] or "-")
    console.print(table)


def revoke(key: Annotated[str, typer.Argument(help="The key's id or prefix (crl_…).")]) -> None:
    """Revoke a key; it stops working on its next request."""
    prepare()
    with session_scope() as session:
        found = revoke_key(session, key)
        console.print(f"Revoked {found.prefix} ({found.name}).")


def workspace_create(
    name: Annotated[str, typer.Argument()],
    budget: Annotated[int | None, typer.Option(min=0, help="Tokens per month.")] = None,
) -> None:
    """Create a workspace (then give it a key with `corral keys create --workspace NAME`)."""
    prepare()
    with session_scope() as session:
        if find_workspace(session, validate_workspace_name(name)) is not None:
            raise ConflictError(f"workspace {name!r} already exists")
        ws = get_or_create_workspace(session, name)
        ws.monthly_token_budget = budget
    console.print(f"Created workspace {name}.")


def workspace_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List workspaces with their monthly budget and this month's tokens."""
    prepare()
    with session_scope() as session:
        rows = [{"name": w.name, "monthly_token_budget": w.monthly_token_budget,
                 "tokens_this_month": tokens_this_month(session, w.id), "keep_secrets": w.keep_secrets}
                for w in list_workspaces(session)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("workspace", "monthly budget", "tokens this month", "credentials")
    for r in rows:
        table.add_row(str(r["name"]), str(r["monthly_token_budget"] or "none"), str(r["tokens_this_month"]),
                      "kept" if r["keep_secrets"] else "redacted")
    console.print(table)


def workspace_budget(
    name: Annotated[str, typer.Argument()],
    tokens: Annotated[int | None, typer.Argument(help="Tokens per month; omit for no cap.")] = None,
) -> None:
    """Set (or clear) a workspace's monthly token budget."""
    prepare()
    with session_scope() as session:
        get_workspace(session, name).monthly_token_budget = tokens
    console.print(f"{name}: monthly budget {tokens if tokens is not None else 'none'}.")


def workspace_secrets(
    name: Annotated[str, typer.Argument()],
    keep: Annotated[bool | None, typer.Option(
        "--keep/--redact", help="Keep credentials in the stored text, or redact them (the default).",
        show_default=False)] = None,
) -> None:
    """Show, or set, whether credentials found at ingest (keys, tokens, passwords, private keys) are
    redacted from a workspace's stored text. A change applies to documents ingested from then on:
    ingest again to apply it to those already indexed."""
    prepare()
    with session_scope() as session:
        ws = get_workspace(session, name)
        if keep is not None:
            ws.keep_secrets = keep
        state = "kept" if ws.keep_secrets else "redacted"
    tail = "; ingest again to apply it to documents already indexed" if keep is not None else ""
    console.print(f"{name}: credentials found at ingest are {state}{tail}.")


__all__ = ["create", "list_cmd", "revoke", "workspace_budget", "workspace_create", "workspace_list",
           "workspace_secrets"]
