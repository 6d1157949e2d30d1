"""Retention: the files each task's input names (``file_refs``), so that purging ended tasks
never deletes a file a kept task still names, filled here from the tasks already stored; and
an index of the files no task owns (uploads), oldest first.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"

LOOSE = sa.text("task_id IS NULL")

# Every object member named "file_id" whose value is a string, anywhere in a task's input or
# params: what taskgate.store.file_refs.file_ids finds in new tasks.
BACKFILL = {
    "sqlite": """
        INSERT INTO file_refs (file_id, task_id)
        SELECT DISTINCT j.value, t.id
        FROM tasks AS t, json_tree(t.{column}) AS j
        WHERE t.{column} LIKE '%file_id%' AND j.key = 'file_id' AND j.type = 'text'
    """,
    "postgresql": """
        INSERT INTO file_refs (file_id, task_id)
        SELECT DISTINCT v #>> '{{}}', t.id
        FROM tasks AS t,
            jsonb_path_query(t.{column}, 'lax $.** ? (@.file_id.type() == "string").file_id') AS v
        WHERE t.{column}::text LIKE '%file_id%'
    """,
}


def upgrade() -> None:
    op.create_table(
        "file_refs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("file_id", sa.String(40), nullable=False),
        sa.Column("task_id", sa.String(40)),
        sa.Column("conversation_id", sa.String(40)),
    )
    op.create_index("ix_file_refs_file", "file_refs", ["file_id"])
    op.create_index("ix_file_refs_task", "file_refs", ["task_id"])
    op.create_index("ix_file_refs_conversation", "file_refs", ["conversation_id"])
    op.create_index(
        "ix_files_loose", "files", ["created_at"], sqlite_where=LOOSE, postgresql_where=LOOSE
    )
    statement = BACKFILL[op.get_bind().dialect.name]
    for column in ("input", "params"):
        op.execute(statement.format(column=column))


def downgrade() -> None:
    op.drop_index("ix_files_loose", "files")
    op.drop_table("file_refs")
