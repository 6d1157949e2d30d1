"""Batches: one request fanned out to several models, one task each.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("first_wins", sa.Boolean, nullable=False),
        sa.Column("models", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.add_column("tasks", sa.Column("batch_id", sa.String(40)))
    op.create_index("ix_tasks_batch", "tasks", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_batch", "tasks")
    op.drop_column("tasks", "batch_id")
    op.drop_table("batches")
