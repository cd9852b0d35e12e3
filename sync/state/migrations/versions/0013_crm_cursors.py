"""``crm_cursors`` and ``crm_rows``: the CRM connector's watermark, feed cursor and known rows
(``sync.state.crm_cursors``).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_cursors",
        sa.Column("account", sa.String(255), primary_key=True),
        sa.Column("watermark", sa.String(64), nullable=True),
        sa.Column("feed_seq", sa.Integer(), nullable=False),
    )
    op.create_table(
        "crm_rows",
        sa.Column("account", sa.String(255), primary_key=True),
        sa.Column("row_id", sa.String(64), primary_key=True),
        sa.Column("followup_id", sa.String(255), nullable=False),
        sa.Column("original_start", sa.String(32), nullable=False),
        sa.Column("updated", sa.String(64), nullable=False),
    )
    op.create_index("ix_crm_rows_followup_id", "crm_rows", ["followup_id"])


def downgrade() -> None:
    op.drop_index("ix_crm_rows_followup_id", table_name="crm_rows")
    op.drop_table("crm_rows")
    op.drop_table("crm_cursors")
