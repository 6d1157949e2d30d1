"""Conversations and their messages, webhook deliveries (an outbox written in the same
transaction as the task's end), tenants' webhook secrets, and the task and batch columns
that point at them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"

Json = sa.JSON().with_variant(JSONB(), "postgresql")
PENDING = sa.text("status = 'PENDING'")


def upgrade() -> None:
    for table in ("tasks", "batches"):
        op.add_column(table, sa.Column("conversation_id", sa.String(40)))
        op.add_column(table, sa.Column("webhook_url", sa.String(2000)))
    op.add_column("tasks", sa.Column("label", sa.String(200)))
    op.create_index("ix_tasks_tenant_label", "tasks", ["tenant", "label", "id"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_conversations_tenant_id", "conversations", ["tenant", "id"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(40), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", Json, nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("task_id", sa.String(40)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_messages_conversation", "messages", ["conversation_id", "id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(40)),
        sa.Column("batch_id", sa.String(40)),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("event_id", sa.String(80), nullable=False, unique=True),
        sa.Column("payload", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_webhooks_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_index("ix_webhooks_task", "webhook_deliveries", ["task_id"])
    op.create_index("ix_webhooks_batch", "webhook_deliveries", ["batch_id"])
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("webhook_secret", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("tenants", "webhook_deliveries", "messages", "conversations"):
        op.drop_table(table)
    op.drop_index("ix_tasks_tenant_label", "tasks")
    op.drop_column("tasks", "label")
    for table in ("tasks", "batches"):
        op.drop_column(table, "webhook_url")
        op.drop_column(table, "conversation_id")
