"""rollouts: the state of each deployment's latest rollout, so a restart resumes it

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("deployment", sa.String(64), primary_key=True),
        sa.Column("status", sa.JSON, nullable=False),
        sa.Column("control", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollouts")
