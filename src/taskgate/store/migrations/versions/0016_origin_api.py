"""Tasks and conversations remember the API that made them (NULL: taskgate's own), so a path
two APIs share answers each record in its own API's shape; a conversation's tasks and a
tenant's latest changed conversations are found by index (AI Task System's history and list).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"

IN_CONVERSATION = sa.text("conversation_id IS NOT NULL")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("api", sa.String(32)))
    op.add_column("conversations", sa.Column("api", sa.String(32)))
    op.create_index(
        "ix_tasks_conversation",
        "tasks",
        ["conversation_id"],
        sqlite_where=IN_CONVERSATION,
        postgresql_where=IN_CONVERSATION,
    )
    op.create_index("ix_conversations_tenant_updated", "conversations", ["tenant", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_tenant_updated", "conversations")
    op.drop_index("ix_tasks_conversation", "tasks")
    op.drop_column("conversations", "api")
    op.drop_column("tasks", "api")
