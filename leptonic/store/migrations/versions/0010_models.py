"""models, model_versions, model_aliases and model_alias_moves: the model registry

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
    )
    op.create_table(
        "model_versions",
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("reference", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "model_aliases",
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("alias", sa.String(40), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
    )
    op.create_table(
        "model_alias_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(64), nullable=False, index=True),
        sa.Column("alias", sa.String(40), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("by", sa.String(128), nullable=True),
    )


def downgrade() -> None:
    for table in ("model_alias_moves", "model_aliases", "model_versions", "models"):
        op.drop_table(table)
