"""The task list's filters on a big store: an index per filter, leading with it and ending
with the id, so that a page of any one filter is a walk down its index from the cursor
(``store/listing.py``). Those of kind, model and route hold ended tasks only: on PostgreSQL
every change of a task's status writes a new entry in every index that holds it, and a
task's kind, model and route are looked for among waiting and running tasks through the
index of statuses. To pay for the rest, the indexes of batches and labels keep entries only
for the tasks that have one (most have neither: their entries were never read, but written
at every insert, and on PostgreSQL at every change of status).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"

FINISHED = sa.text("finished_at IS NOT NULL")
IN_BATCH = sa.text("batch_id IS NOT NULL")
LABELLED = sa.text("label IS NOT NULL")
ENDED_ONLY = {
    "ix_tasks_kind_id": ["kind", "id"],
    "ix_tasks_model_id": ["model", "id"],
    "ix_tasks_route_id": ["route", "id"],
}


def upgrade() -> None:
    op.create_index("ix_tasks_status_id", "tasks", ["status", "id"])
    for name, columns in ENDED_ONLY.items():
        op.create_index(name, "tasks", columns, sqlite_where=FINISHED, postgresql_where=FINISHED)
    op.drop_index("ix_tasks_batch", "tasks")
    op.create_index(
        "ix_tasks_batch", "tasks", ["batch_id"], sqlite_where=IN_BATCH, postgresql_where=IN_BATCH
    )
    op.drop_index("ix_tasks_tenant_label", "tasks")
    op.create_index(
        "ix_tasks_tenant_label",
        "tasks",
        ["tenant", "label", "id"],
        sqlite_where=LABELLED,
        postgresql_where=LABELLED,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_tenant_label", "tasks")
    op.create_index("ix_tasks_tenant_label", "tasks", ["tenant", "label", "id"])
    op.drop_index("ix_tasks_batch", "tasks")
    op.create_index("ix_tasks_batch", "tasks", ["batch_id"])
    for name in [*ENDED_ONLY, "ix_tasks_status_id"]:
        op.drop_index(name, "tasks")
