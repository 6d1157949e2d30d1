"""A task's callback: the headers its client asked to be sent with its webhook, and the body
shape of the API it came through (taskgate.callbacks); the headers also on each delivery.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0018"
down_revision = "0017"


def upgrade() -> None:
    json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    op.create_table(
        "task_callbacks",
        sa.Column("task_id", sa.String(40), primary_key=True),
        sa.Column("dialect", sa.String(16)),
        sa.Column("headers", json),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.add_column("webhook_deliveries", sa.Column("headers", json))


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "headers")
    op.drop_table("task_callbacks")
