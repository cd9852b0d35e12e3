"""``account_directions``: one-way mode set over the API (``PUT /v1/accounts/NAME/direction``),
overriding an account's ``direction`` in the config.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_directions",
        sa.Column("account", sa.String(255), primary_key=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("account_directions")
