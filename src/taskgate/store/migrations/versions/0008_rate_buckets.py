"""Backends' rate limits (requests and tokens per minute), shared by every worker: one pair
of token buckets per instance, read and taken from inside each claim.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("route", sa.String(100), primary_key=True),
        sa.Column("instance", sa.String(100), primary_key=True),
        sa.Column("requests", sa.Float, nullable=False),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("tokens_spent", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
