"""``account_controls``: accounts paused over the API, and passes asked for ("sync now");
``conflict_resolutions``: conflicts an admin decided (keep CRM, keep calendar, edit).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_controls",
        sa.Column("account", sa.String(255), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reset_requested_at", sa.DateTime(timezone=True), nullable=True),
    )

    op.create_table(
        "conflict_resolutions",
        sa.Column("conflict_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("conflict_resolutions")
    op.drop_table("account_controls")
