"""``followups.has_participants``: find the follow-ups with participants without reading documents.

The invitation step runs after every sync pass that changed something and needs the
account's follow-ups that have participants. Before this column it loaded every synced
document to look; now it is one indexed column, kept by an ORM hook on every write
(``sync.state.db._participants_flag``). Existing rows are filled in here from their
documents, in batches, so a large store is migrated without holding it all in memory.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("followups") as batch:
        batch.add_column(
            sa.Column("has_participants", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index("ix_followups_has_participants", ["has_participants"])
    followups = sa.table(
        "followups",
        sa.column("id", sa.String()),
        sa.column("document", sa.JSON()),
        sa.column("has_participants", sa.Boolean()),
    )
    connection = op.get_bind()
    last = ""
    while True:
        rows = connection.execute(
            sa.select(followups.c.id, followups.c.document)
            .where(followups.c.id > last)
            .order_by(followups.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        with_participants = [row.id for row in rows if _has_participants(row.document)]
        if with_participants:
            connection.execute(
                sa.update(followups)
                .where(followups.c.id.in_(with_participants))
                .values(has_participants=True)
            )
        last = rows[-1].id


def _has_participants(document: object) -> bool:
    if isinstance(document, str):  # a JSON column read back as text by some drivers
        document = json.loads(document)
    return isinstance(document, dict) and bool(document.get("participants"))


def downgrade() -> None:
    with op.batch_alter_table("followups") as batch:
        batch.drop_index("ix_followups_has_participants")
        batch.drop_column("has_participants")
