"""A task may be pinned to one instance of its route (an AIFlow client's endpoint on a host
the administrator allows): the instance's name, and an index of the pinned tasks waiting,
empty but for them.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"

PINNED = sa.text("status = 'PENDING' AND pinned_instance IS NOT NULL")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("pinned_instance", sa.String(100)))
    op.create_index(
        "ix_tasks_pinned",
        "tasks",
        ["route", "pinned_instance"],
        sqlite_where=PINNED,
        postgresql_where=PINNED,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_pinned", "tasks")
    op.drop_column("tasks", "pinned_instance")
