"""``change_counter`` and ``collections.crm_revision_seen``/``crm_scope_seen``: an idle pass
that reads no row.

An idle pass used to read every follow-up's hash and every sync record to find nothing
to do (0.15 s of a 0.20 s pass at 5,000 series, growing with N). Every committed write
to ``followups`` or ``sync_items`` now moves one counter; a pass that found nothing to do
keeps the value it read, and the next pass with the same value, the same account
settings and a server listing no change has nothing to do either. Existing rows start
empty, so their next pass reads everything as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_counter",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("crm_revision_seen", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("crm_scope_seen", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("crm_scope_seen")
        batch.drop_column("crm_revision_seen")
    op.drop_table("change_counter")
