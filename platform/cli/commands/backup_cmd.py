"""``corral export WORKSPACE`` and ``corral import FILE``: back up and restore a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from corral.core.db.migrate import ensure_schema


def export(
    workspace: Annotated[str, typer.Argument(help="The workspace to export (e.g. default).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write; .gz compresses. "
                                             "Default: WORKSPACE.corral.jsonl.gz")] = None,
) -> None:
    """Write a workspace's corpora (sources, documents, chunks), runs and feedback to one file.
    Vectors are not written (import rebuilds them); nor are API keys, webhooks or jobs."""
    from corral.platform.backup import export_workspace

    ensure_schema()
    path = out or Path(f"{workspace}.corral.jsonl.gz")
    counts = export_workspace(workspace, path)
    typer.echo(f"exported {workspace} to {path}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def import_(
    file: Annotated[Path, typer.Argument(help="An export written by `corral export`.")],
    workspace: Annotated[str | None, typer.Option(help="Import into this workspace instead of the "
                                                  "one the file names.")] = None,
) -> None:
    """Import an export: its corpora (which must not exist in the workspace yet), documents and
    chunks with their vectors rebuilt, runs and feedback. All or nothing."""
    from corral.platform.backup import import_workspace

    ensure_schema()
    summary = import_workspace(file, workspace)
    typer.echo(f"imported into {summary.workspace}: "
               + ", ".join(f"{n} {k}" for k, n in summary.counts.items())
               + f" ({summary.embedded} chunk texts embedded)")
