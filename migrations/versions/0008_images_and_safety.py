"""images and safety: document images with OCR'd chunks' boxes, redacted credentials, run safety record

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Adds the document_image table; chunk.image_ref, chunk.bbox and chunk.redacted; workspace.keep_secrets;
run.safety and run.blocked. Existing rows get the defaults: no image, nothing redacted, secrets not
kept, no safety decisions. Downgrading drops the new columns and the stored images (an ingest makes
them again); the text of redacted chunks stays redacted.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'document_image',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('document_id', sa.Integer(), nullable=False),
        sa.Column('ref', sa.String(length=64), nullable=False),
        sa.Column('page', sa.Integer(), nullable=True),
        sa.Column('mime', sa.String(length=32), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['document_id'], ['document.id'],
                                name=op.f('fk_document_image_document_id_document'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_document_image')),
        sa.UniqueConstraint('document_id', 'ref', name=op.f('uq_document_image_document_id')),
    )
    with op.batch_alter_table('document_image', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_document_image_document_id'), ['document_id'], unique=False)
    with op.batch_alter_table('chunk', schema=None) as batch_op:
        batch_op.add_column(sa.Column('image_ref', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('bbox', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('redacted', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('workspace', schema=None) as batch_op:
        batch_op.add_column(sa.Column('keep_secrets', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('safety', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('blocked', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_column('blocked')
        batch_op.drop_column('safety')
    with op.batch_alter_table('workspace', schema=None) as batch_op:
        batch_op.drop_column('keep_secrets')
    with op.batch_alter_table('chunk', schema=None) as batch_op:
        batch_op.drop_column('redacted')
        batch_op.drop_column('bbox')
        batch_op.drop_column('image_ref')
    with op.batch_alter_table('document_image', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_document_image_document_id'))
    op.drop_table('document_image')
