"""Alembic, driven from code: ``corral db upgrade`` and the embedded-mode auto-upgrade use this."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError

from corral.core.config import Mode, get_settings
from corral.core.db.session import get_engine
from corral.core.errors import ConfigurationError, ServiceUnavailableError

__all__ = ["alembic_config", "current_revision", "downgrade", "ensure_schema", "head_revision",
           "upgrade"]


def _migrations_dir() -> Path:
    spec = importlib.util.find_spec("corral.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("the corral.migrations package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at our migrations and at ``url`` (default: the configured DB)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    resolved = url or get_settings().sqlalchemy_url
    # Alembic's ini interpolation treats % specially; escape it in passwords.
    cfg.set_main_option("sqlalchemy.url", resolved.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    get_engine(url)  # creates the SQLite folder when needed
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise ServiceUnavailableError(f"database unavailable: {exc.orig}") from exc


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str | None = None) -> str | None:
    try:
        with get_engine(url).connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise ServiceUnavailableError(f"database unavailable: {exc.orig}") from exc


def ensure_schema() -> None:
    """Embedded mode upgrades its own SQLite file; server mode must be upgraded on purpose.

    Server deployments run ``corral db upgrade`` once per release, so several API and worker
    processes never race to migrate the shared database.
    """
    if get_settings().mode is Mode.EMBEDDED:
        if current_revision() != head_revision():
            upgrade()
        return
    current, head = current_revision(), head_revision()
    if current != head:
        raise ConfigurationError(
            f"the database is at revision {current or 'none'} but this Corral needs {head}: "
            "run `corral db upgrade`"
        )
