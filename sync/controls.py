"""Sync controls a CRM admin drives over HTTP: pause and resume an account, sync it now.

The API and the daemon may be different processes (``followup-sync api`` next to a
daemon, or several daemons on one PostgreSQL database), so a control is a row in the
shared database, not a call into a process: ``account_controls`` says whether an
account is paused and whether someone asked for a pass. The daemon reads it when it
decides whether a pass is due (paused: no pass, whatever triggered it) and on every
CRM poll (a requested pass is queued at once and the request cleared).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.state import Base, Database, utcnow


class AccountControl(Base):
    __tablename__ = "account_controls"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: Set by "sync now", cleared by the daemon that queues the pass.
    sync_requested_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


def _row(session: Session, account: str) -> AccountControl:
    row = session.get(AccountControl, account)
    if row is None:
        row = AccountControl(account=account, paused=False)
        session.add(row)
    return row


def set_paused(db: Database, account: str, paused: bool) -> None:
    with db.sessions.begin() as session:
        row = _row(session, account)
        row.paused = paused
        row.paused_at = utcnow() if paused else None
        if not paused:
            # CRM changes seen while paused triggered nothing: catch up at once.
            row.sync_requested_at = utcnow()


def request_sync(db: Database, account: str) -> None:
    with db.sessions.begin() as session:
        _row(session, account).sync_requested_at = utcnow()


def is_paused(session: Session, account: str) -> bool:
    row = session.get(AccountControl, account)
    return bool(row is not None and row.paused)


def paused_accounts(session: Session) -> set[str]:
    return set(session.scalars(select(AccountControl.account).where(AccountControl.paused)))


def take_requests(db: Database, accounts: set[str]) -> list[str]:
    """Accounts (of ``accounts``) someone asked to sync now; the requests are cleared."""
    with db.sessions.begin() as session:
        names = [
            name
            for name in session.scalars(
                select(AccountControl.account).where(AccountControl.sync_requested_at.is_not(None))
            )
            if name in accounts
        ]
        if names:
            session.execute(
                update(AccountControl)
                .where(AccountControl.account.in_(names))
                .values(sync_requested_at=None)
            )
        return names
