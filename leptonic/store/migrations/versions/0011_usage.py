"""usage_runs, usage_buckets, prices, budgets and budget_notices: metering, prices and
monthly budgets

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_runs",
        sa.Column("run", sa.String(160), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner_kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("user", sa.String(128), nullable=True),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("shape", sa.JSON, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("until", sa.Float, nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
    )
    amounts = ("seconds", "cpu_s", "memory_gib_s", "gpu_s", "energy_j", "requests",
               "errors", "cost")
    op.create_table(
        "usage_buckets",
        sa.Column("run", sa.String(160), primary_key=True),
        sa.Column("hour", sa.Float, primary_key=True),
        sa.Column("owner_kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("user", sa.String(128), nullable=True),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        *[sa.Column(a, sa.Float, nullable=False) for a in amounts],
    )
    op.create_index("ix_usage_buckets_hour", "usage_buckets", ["hour"])
    op.create_table(
        "prices",
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
    )
    op.create_table(
        "budgets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
    )
    op.create_table(
        "budget_notices",
        sa.Column("budget", sa.String(64), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("threshold", sa.Float, primary_key=True),
        sa.Column("spent", sa.Float, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_index("ix_usage_buckets_hour", "usage_buckets")
    for table in ("budget_notices", "budgets", "prices", "usage_buckets", "usage_runs"):
        op.drop_table(table)
