"""``collections.last_modified_seen``: an idle pass on Radicale without the O(N) REPORT.

Radicale answers a sync-collection REPORT by reading every item of the calendar, even
when nothing changed (0.5 s at 5,000 series), but its collection ``getlastmodified`` is
a stat per file (0.04 s). The runner keeps the value it saw with the sync token and asks
for it first (``Capabilities.lastmodified_covers_members``). Existing rows start empty,
so their next pass asks with the token as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("last_modified_seen", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("last_modified_seen")
