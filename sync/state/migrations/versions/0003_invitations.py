"""Invitations: what participants were last told, the iTIP outbox, the replies read.

``invitation_state`` holds, per account and follow-up, the SEQUENCE and the document as
the participants know it (the basis for "is this change worth a new REQUEST?");
``invitations`` is the outbox, one row per message and recipient, unique on
(account, uid, sequence, method, recipient, recurrence_id) so a message is never
recorded, and so never sent, twice; ``invitation_replies`` keeps every REPLY read.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invitation_state",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("followup_id", sa.String(255), nullable=False),
        sa.Column("uid", sa.String(512), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "followup_id"),
    )
    op.create_index("ix_invitation_state_uid", "invitation_state", ["uid"])
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("followup_id", sa.String(255), nullable=False),
        sa.Column("uid", sa.String(512), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("recurrence_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "account",
            "uid",
            "sequence",
            "method",
            "recipient",
            "recurrence_id",
            name="uq_invitation",
        ),
    )
    op.create_index("ix_invitations_account", "invitations", ["account"])
    op.create_index("ix_invitations_followup_id", "invitations", ["followup_id"])
    op.create_index("ix_invitations_status", "invitations", ["status"])
    op.create_table(
        "invitation_replies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(512), nullable=False),
        sa.Column("uid", sa.String(512), nullable=False),
        sa.Column("followup_id", sa.String(255), nullable=True),
        sa.Column("attendee", sa.String(320), nullable=False),
        sa.Column("partstat", sa.String(32), nullable=False),
        sa.Column("recurrence_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_invitation_replies_message_key", "invitation_replies", ["message_key"])


def downgrade() -> None:
    op.drop_table("invitation_replies")
    op.drop_table("invitations")
    op.drop_table("invitation_state")
