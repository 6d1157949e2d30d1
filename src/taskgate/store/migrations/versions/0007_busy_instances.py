"""Capacity holds across workers: each claim counts the calls in flight per instance from
the tasks table, so it gets an index for that, and a task without a backend job has SQL NULL
(not JSON null) in ``provider_job``.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

PROCESSING = sa.text("status = 'PROCESSING'")


def upgrade() -> None:
    null = "'null'::jsonb" if op.get_bind().dialect.name == "postgresql" else "'null'"
    op.execute(f"UPDATE tasks SET provider_job = NULL WHERE provider_job = {null}")
    op.create_index(
        "ix_tasks_busy",
        "tasks",
        ["route", "instance"],
        sqlite_where=PROCESSING,
        postgresql_where=PROCESSING,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_busy", "tasks")
