"""``pending_writes`` and the unreadable-item back-off of ``pending_hrefs``.

``pending_writes``: the intent of each server write, recorded before its PUT, so a
write the state did not record before a crash is recognised as ours on the next pass
(``sync.state.db.PendingWrite``). ``pending_hrefs.etag`` and ``retry_at``: an item that
stays unreadable is fetched again on a back-off schedule, at once if its ETag moves
(``sync.engine.unreadable``). Existing rows start with no ``retry_at``: retried next pass.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_writes",
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("followup_id", sa.String(length=255), nullable=False),
        sa.Column("href", sa.String(length=1024), nullable=False),
        sa.Column("if_match", sa.String(length=255), nullable=True),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "followup_id"),
    )
    with op.batch_alter_table("pending_hrefs") as batch:
        batch.add_column(sa.Column("etag", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pending_hrefs") as batch:
        batch.drop_column("retry_at")
        batch.drop_column("etag")
    op.drop_table("pending_writes")
