"""Answers point at the user turn they answer, so a late answer (turn 1's slow model,
arriving after turn 2 was sent) is filed under its own turn.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("tasks", sa.Column("turn_id", sa.Integer))
    op.add_column("messages", sa.Column("turn_id", sa.Integer))


def downgrade() -> None:
    op.drop_column("messages", "turn_id")
    op.drop_column("tasks", "turn_id")
