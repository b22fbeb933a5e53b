"""Migrations run up and down on SQLite and the real PostgreSQL, and match the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from corral.core.db import Base, migrate
from corral.core.db.session import dispose_engines
from corral.core.index.keyword import include_in_autogenerate

TABLES = {"workspace", "api_key", "corpus", "source", "document", "chunk", "job", "job_item", "run",
          "feedback"}


def _roundtrip(url: str) -> None:
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) >= TABLES
            context = MigrationContext.configure(
                conn, opts={"include_object": include_in_autogenerate}
            )
            diff = compare_metadata(context, Base.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
        assert migrate.current_revision(url) == migrate.head_revision()
        migrate.downgrade(url, "base")
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(url)  # and up again: downgrade left nothing behind that blocks it
        assert migrate.current_revision(url) == migrate.head_revision()
    finally:
        engine.dispose()
        dispose_engines()


def test_migrations_roundtrip_on_sqlite(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.services
def test_migrations_roundtrip_on_postgresql(postgres_url: str) -> None:
    _roundtrip(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))


def test_cli_db_upgrade_reports_the_revision(corral_env: Path) -> None:
    from typer.testing import CliRunner

    from corral.platform.cli.app import app

    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"database at {migrate.head_revision()}" in result.output
    assert (corral_env / "corral.db").is_file()
    current = CliRunner().invoke(app, ["db", "current"])
    assert f"current: {migrate.head_revision()}" in current.output
