"""nodes.power: an admin's power override of a node (API-written, like control), and
energy_totals: the running joules of the live energy accounting per node and deployment

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("power", sa.JSON, nullable=True))
    op.create_table(
        "energy_totals",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("joules", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("energy_totals")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("power")
