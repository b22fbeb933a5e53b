"""``corral db upgrade|downgrade|current``."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.core.db import migrate


def upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the configured database up to REVISION (default: the latest)."""
    migrate.upgrade(revision=revision)
    typer.echo(f"database at {migrate.current_revision()}")


def downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. 'base' or '-1'.")]) -> None:
    """Migrate the configured database down to REVISION."""
    migrate.downgrade(revision=revision)
    typer.echo(f"database at {migrate.current_revision() or 'base'}")


def current() -> None:
    """Show the database's revision and the latest one this Corral knows."""
    typer.echo(f"current: {migrate.current_revision() or 'none'}; head: {migrate.head_revision()}")
