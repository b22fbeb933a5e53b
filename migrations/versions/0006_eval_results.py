"""eval results: what `corral eval` measured, per suite and window, for the dashboard's plot

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

A new table only; downgrading drops it (and the stored measurements with it: `corral eval` makes them
again).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'eval_result',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('workspace_id', sa.Integer(), nullable=False),
        sa.Column('batch', sa.String(length=32), nullable=False),
        sa.Column('suite', sa.String(length=32), nullable=False),
        sa.Column('window', sa.Integer(), nullable=False),
        sa.Column('corpus_tokens', sa.BigInteger(), nullable=False),
        sa.Column('hybrid', sa.Boolean(), nullable=False),
        sa.Column('rows', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'),
                  nullable=False),
        sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_eval_result_workspace_id'), 'eval_result', ['workspace_id'], unique=False)
    op.create_index(op.f('ix_eval_result_batch'), 'eval_result', ['batch'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_eval_result_batch'), table_name='eval_result')
    op.drop_index(op.f('ix_eval_result_workspace_id'), table_name='eval_result')
    op.drop_table('eval_result')
