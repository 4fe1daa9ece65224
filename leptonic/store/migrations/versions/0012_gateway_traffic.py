"""gateway_traffic: what each follower's gateway counted, for the leader to add to its own

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_traffic",
        sa.Column("holder", sa.String(160), primary_key=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_traffic")
