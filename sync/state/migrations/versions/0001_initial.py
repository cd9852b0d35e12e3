"""The tables as sync/state/db.py created them before migrations existed (schema_version 1).

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "followups",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("uid", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("origin_account", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_followups_owner", "followups", ["owner"])
    op.create_index("ix_followups_uid", "followups", ["uid"])
    op.create_table(
        "sync_items",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("followup_id", sa.String(255), nullable=False),
        sa.Column("uid", sa.String(512), nullable=False),
        sa.Column("href", sa.String(1024), nullable=False),
        sa.Column("etag", sa.String(255), nullable=False),
        sa.Column("synced_hash", sa.String(64), nullable=False),
        sa.Column("synced_document", sa.JSON(), nullable=False),
        sa.Column("server_data", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("detached", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account", "followup_id"),
        sa.UniqueConstraint("account", "href", name="uq_sync_items_href"),
    )
    op.create_table(
        "collections",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("calendar_url", sa.String(1024), nullable=False),
        sa.Column("sync_token", sa.Text(), nullable=True),
        sa.Column("server_kind", sa.String(64), nullable=True),
        sa.Column("last_run_at", TS, nullable=True),
        sa.Column("last_full_at", TS, nullable=True),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("last_result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("account"),
    )
    op.create_table(
        "pending_hrefs",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("href", sa.String(1024), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("account", "href"),
    )
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("followup_id", sa.String(255), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("part", sa.String(255), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("winner", sa.String(16), nullable=False),
        sa.Column("kept_value", sa.JSON(), nullable=True),
        sa.Column("lost_value", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conflicts_account", "conflicts", ["account"])
    op.create_index("ix_conflicts_followup_id", "conflicts", ["followup_id"])


def downgrade() -> None:
    for table in ("conflicts", "pending_hrefs", "collections", "sync_items", "followups", "meta"):
        op.drop_table(table)
