"""Observing taskgate: each task's timeline entries beyond its row and attempts
(``task_logs``) and when a retried attempt's task fell due again, an index of what ended
lately (statistics), and the trace context a request carried (tracing).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"

FINISHED = sa.text("finished_at IS NOT NULL")


def upgrade() -> None:
    json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    op.create_table(
        "task_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer),
        sa.Column("instance", sa.String(100)),
        sa.Column("message", sa.String(2000)),
        sa.Column("data", json),
    )
    op.create_index("ix_task_logs_task", "task_logs", ["task_id", "id"])
    op.create_index(
        "ix_tasks_finished",
        "tasks",
        ["finished_at"],
        sqlite_where=FINISHED,
        postgresql_where=FINISHED,
    )
    op.add_column("tasks", sa.Column("trace", sa.String(200)))
    op.add_column("attempts", sa.Column("retry_at", sa.Float))


def downgrade() -> None:
    op.drop_column("attempts", "retry_at")
    op.drop_column("tasks", "trace")
    op.drop_index("ix_tasks_finished", "tasks")
    op.drop_index("ix_task_logs_task", "task_logs")
    op.drop_table("task_logs")
