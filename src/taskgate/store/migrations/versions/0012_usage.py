"""Usage, cost and limits: each task's tokens and cost, keys' limits, and the counters of
keys' and tenants' limits.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    zero = sa.text("0")
    op.add_column(
        "tasks", sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default=zero)
    )
    op.add_column(
        "tasks", sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default=zero)
    )
    op.add_column("tasks", sa.Column("cost", sa.Float, nullable=False, server_default=zero))
    op.add_column("api_keys", sa.Column("requests_per_minute", sa.Integer))
    op.add_column("api_keys", sa.Column("tokens_per_day", sa.BigInteger))
    op.add_column("api_keys", sa.Column("cost_per_month", sa.Float))
    op.create_table(
        "usage_counters",
        sa.Column("subject", sa.String(80), primary_key=True),
        sa.Column("requests", sa.Float, nullable=False),
        sa.Column("requests_at", sa.Float, nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("day_tokens", sa.BigInteger, nullable=False),
        sa.Column("month", sa.Integer, nullable=False),
        sa.Column("month_cost", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_counters")
    for column in ("cost_per_month", "tokens_per_day", "requests_per_minute"):
        op.drop_column("api_keys", column)
    for column in ("cost", "output_tokens", "input_tokens"):
        op.drop_column("tasks", column)
