"""Tasks, attempts and API keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
PENDING = sa.text("status = 'PENDING'")
PROCESSING = sa.text("status = 'PROCESSING'")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("fair_seq", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", Json),
        sa.Column("params", Json),
        sa.Column("result", Json),
        sa.Column("error", Json),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_timeout", sa.Float),
        sa.Column("deadline", sa.Float),
        sa.Column("run_after", sa.Float, nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("worker", sa.String(64)),
        sa.Column("instance", sa.String(100)),
        sa.Column("lease_until", sa.Float),
        sa.Column("claimed_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_tasks_idempotency"),
    )
    pending = {"sqlite_where": PENDING, "postgresql_where": PENDING}
    op.create_index("ix_tasks_claim", "tasks", ["route", "priority", "fair_seq", "id"], **pending)
    op.create_index(
        "ix_tasks_key_lane", "tasks", ["route", "priority", "api_key_id", "fair_seq"], **pending
    )
    op.create_index(
        "ix_tasks_lease",
        "tasks",
        ["lease_until"],
        sqlite_where=PROCESSING,
        postgresql_where=PROCESSING,
    )
    op.create_index("ix_tasks_deadline", "tasks", ["deadline"], **pending)
    op.create_index("ix_tasks_tenant_id", "tasks", ["tenant", "id"])

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("outcome", sa.String(16)),
        sa.Column("error", Json),
    )
    op.create_index("ix_attempts_task_id", "attempts", ["task_id"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("attempts")
    op.drop_table("tasks")
