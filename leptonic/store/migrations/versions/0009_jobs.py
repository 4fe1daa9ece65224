"""jobs and job_attempts: batch jobs (spec API-written, status controller-written) and
each attempt of each of their indexes

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("status", sa.JSON, nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False, default=False),
        sa.Column("deleting", sa.Boolean, nullable=False, default=False),
        sa.Column("finished", sa.Boolean, nullable=False, default=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "job_attempts",
        sa.Column("id", sa.String(96), primary_key=True),
        sa.Column("job", sa.String(64), nullable=False, index=True),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("data", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_attempts")
    op.drop_table("jobs")
