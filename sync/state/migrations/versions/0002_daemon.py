"""The daemon's bookkeeping: next run and failure count per account, a log of passes.

``collections.next_run_at`` lets ``followup-sync status`` (another process) show when the
daemon will run an account; ``consecutive_failures`` survives a restart so a failing
server is not hammered again at start-up; ``daemon_runs`` records which process ran
which account when, the evidence that no account is synced twice at once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("consecutive_failures", sa.Integer(), nullable=True))
    op.create_table(
        "daemon_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_daemon_runs_account", "daemon_runs", ["account"])
    op.create_index("ix_daemon_runs_started_at", "daemon_runs", ["started_at"])


def downgrade() -> None:
    op.drop_table("daemon_runs")
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("consecutive_failures")
        batch.drop_column("next_run_at")
