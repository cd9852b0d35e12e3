"""``change_feed`` and ``change_feed_head``: every change to a follow-up, for CRM clients.

``sync.state.changes`` appends one row per follow-up write, in the write's transaction,
numbered from the single ``change_feed_head`` row (its lock orders entries by commit).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_feed",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("followup_id", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("etag", sa.String(80), nullable=True),
    )
    op.create_index("ix_change_feed_at", "change_feed", ["at"])
    op.create_index("ix_change_feed_followup_id", "change_feed", ["followup_id"])
    head = op.create_table(
        "change_feed_head",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("pruned_through", sa.Integer(), nullable=False),
    )
    op.bulk_insert(head, [{"name": "changes", "last_seq": 0, "pruned_through": 0}])


def downgrade() -> None:
    op.drop_table("change_feed_head")
    op.drop_index("ix_change_feed_followup_id", table_name="change_feed")
    op.drop_index("ix_change_feed_at", table_name="change_feed")
    op.drop_table("change_feed")
