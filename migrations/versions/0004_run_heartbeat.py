"""run heartbeat: a running run's sign of life, for the watchdog

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Runs running when this upgrade runs get no heartbeat; the watchdog takes their start as their last
sign of life. Downgrading drops the column (and with it only liveness, no answer).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('run') as batch:
        batch.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('run') as batch:
        batch.drop_column('heartbeat_at')
