"""run_uids: the uid each deployment's user code runs as (when the platform runs as root)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_uids",
        sa.Column("owner", sa.String(96), primary_key=True),
        sa.Column("uid", sa.Integer, nullable=False, unique=True),
    )


def downgrade() -> None:
    op.drop_table("run_uids")
