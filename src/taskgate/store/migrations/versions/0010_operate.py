"""Operating taskgate: routes an admin paused, the worker processes' heartbeats, and how
many times an admin retried a task.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("retries", sa.Integer, nullable=False, server_default=sa.text("0"))
    )
    op.create_table(
        "route_states",
        sa.Column("route", sa.String(100), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(40)),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(100), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("routes", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("in_flight", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("drain", sa.Boolean, nullable=False),
        sa.Column("stopped_at", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("route_states")
    op.drop_column("tasks", "retries")
