"""Provider-side jobs: the backend's job id (and what polling it needs) kept on the task, so
that a restarted worker resumes polling instead of submitting the job again.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("tasks", sa.Column("provider_job", sa.JSON().with_variant(JSONB(), "postgresql")))


def downgrade() -> None:
    op.drop_column("tasks", "provider_job")
