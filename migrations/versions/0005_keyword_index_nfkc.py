"""keyword index over NFKC-folded text, as the keyword query is folded

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

The keyword query is folded to Unicode NFKC (corral.core.index.keyword.fold); the index must hold the
same form, or a full-width or ligature spelling in a document never matches its plain spelling in a
question (nor the reverse).

SQLite: ``chunk_fts`` becomes a contentless FTS5 table of ``corral_nfkc(chunk.text)``, the function
every connection of ours registers (corral.core.db.session.register_sqlite_functions); the triggers
feed it the folded text and remove rows with the same folded text. A contentless table cannot
``'rebuild'``: a later migration that recreates ``chunk`` must re-create the triggers and refill the
table with ``INSERT INTO chunk_fts(rowid, text) SELECT rowid, corral_nfkc(text) FROM chunk``.
PostgreSQL: the GIN expression index is over ``normalize(text, NFKC)``, which the search matches
exactly. Downgrading restores migration 0002's index over the raw text.
"""
from collections.abc import Sequence

from alembic import op

from corral.core.db.session import register_sqlite_functions

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS chunk_fts_au", "DROP TRIGGER IF EXISTS chunk_fts_ad",
    "DROP TRIGGER IF EXISTS chunk_fts_ai", "DROP TABLE IF EXISTS chunk_fts",
]
_SQLITE_FOLDED = [
    "CREATE VIRTUAL TABLE chunk_fts USING fts5(text, content='')",
    "CREATE TRIGGER chunk_fts_ai AFTER INSERT ON chunk BEGIN "
    "INSERT INTO chunk_fts(rowid, text) VALUES (new.rowid, corral_nfkc(new.text)); END",
    "CREATE TRIGGER chunk_fts_ad AFTER DELETE ON chunk BEGIN "
    "INSERT INTO chunk_fts(chunk_fts, rowid, text) VALUES ('delete', old.rowid, corral_nfkc(old.text)); END",
    "CREATE TRIGGER chunk_fts_au AFTER UPDATE OF text ON chunk BEGIN "
    "INSERT INTO chunk_fts(chunk_fts, rowid, text) VALUES ('delete', old.rowid, corral_nfkc(old.text)); "
    "INSERT INTO chunk_fts(rowid, text) VALUES (new.rowid, corral_nfkc(new.text)); END",
    "INSERT INTO chunk_fts(rowid, text) SELECT rowid, corral_nfkc(text) FROM chunk",
]
# Migration 0002's index, for the downgrade.
_SQLITE_RAW = [
    "CREATE VIRTUAL TABLE chunk_fts USING fts5(text, content='chunk', content_rowid='rowid')",
    "CREATE TRIGGER chunk_fts_ai AFTER INSERT ON chunk BEGIN "
    "INSERT INTO chunk_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "CREATE TRIGGER chunk_fts_ad AFTER DELETE ON chunk BEGIN "
    "INSERT INTO chunk_fts(chunk_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END",
    "CREATE TRIGGER chunk_fts_au AFTER UPDATE OF text ON chunk BEGIN "
    "INSERT INTO chunk_fts(chunk_fts, rowid, text) VALUES ('delete', old.rowid, old.text); "
    "INSERT INTO chunk_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "INSERT INTO chunk_fts(chunk_fts) VALUES ('rebuild')",
]
_PG_FOLDED = [
    "DROP INDEX IF EXISTS ix_chunk_fts",
    "CREATE INDEX ix_chunk_fts ON chunk USING gin (to_tsvector('simple', normalize(text, NFKC)))",
]
_PG_RAW = [
    "DROP INDEX IF EXISTS ix_chunk_fts",
    "CREATE INDEX ix_chunk_fts ON chunk USING gin (to_tsvector('simple', text))",
]


def _run(sqlite: list[str], postgresql: list[str]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Alembic's own connection is not one of ours: give it the function the statements call.
        register_sqlite_functions(bind.connection.driver_connection)
        statements = _SQLITE_DROP + sqlite
    else:
        statements = postgresql if bind.dialect.name == "postgresql" else []
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    _run(_SQLITE_FOLDED, _PG_FOLDED)


def downgrade() -> None:
    _run(_SQLITE_RAW, _PG_RAW)
