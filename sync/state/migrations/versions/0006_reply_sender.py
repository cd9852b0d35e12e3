"""``invitation_replies.sender`` and ``.evidence``: answers held until the operator decides.

A REPLY is applied only when its mail comes from the attendee (``sync.invitations.reply_trust``);
otherwise it is recorded with ``outcome = 'held'`` and waits for ``invitations accept``
or ``reject``. The operator needs to see who sent it and what the receiving server's
Authentication-Results said. Existing rows keep both empty.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invitation_replies") as batch:
        batch.add_column(sa.Column("sender", sa.String(320), nullable=True))
        batch.add_column(sa.Column("evidence", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitation_replies") as batch:
        batch.drop_column("evidence")
        batch.drop_column("sender")
