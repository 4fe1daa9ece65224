"""observability: metric samples, alert rules/states/notifications

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("series", sa.String(160), primary_key=True),
        sa.Column("resolution", sa.Integer, primary_key=True),
        sa.Column("ts", sa.Float, primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_metric_samples_resolution_ts", "metric_samples",
                    ["resolution", "ts"])
    op.create_table(
        "alert_rules",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("deployment", sa.String(64), nullable=True, index=True),
        sa.Column("expr", sa.String(500), nullable=False),
        sa.Column("for_s", sa.Float, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("notify", sa.JSON, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(160), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("fired_at", sa.Float, nullable=True),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.Column("evaluated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dedup_key", sa.String(400), nullable=False, unique=True),
        sa.Column("rule", sa.String(64), nullable=False, index=True),
        sa.Column("target", sa.String(160), nullable=False),
        sa.Column("destination", sa.Text, nullable=False),  # the clear notify target
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False, index=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    for table in ("alert_notifications", "alert_states", "alert_rules"):
        op.drop_table(table)
    op.drop_index("ix_metric_samples_resolution_ts", "metric_samples")
    op.drop_table("metric_samples")
