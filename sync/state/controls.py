"""The control tables an admin writes over HTTP and the daemon reads: ``account_controls`` and
``conflict_resolutions``, with every query on them.

The API and the daemon may be different processes, so a control is a row in the shared
database, not a call into a process (:mod:`sync.api.controls` explains the controls
themselves). The SQL lives here, below both, so changing one of these tables touches this
module and its migration only. Functions take the caller's ``Session``: the caller owns the
transaction, so a reset clears its request in the commit that forgets the links.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.state.rows import Base, utcnow


class AccountControl(Base):
    __tablename__ = "account_controls"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: Set by "sync now", cleared by the daemon that queues the pass.
    sync_requested_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    #: Set by "reset", cleared by the pass that forgets the links and re-links by UID.
    reset_requested_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class ConflictResolution(Base):
    """An admin's decision on a conflict the policy settled (``sync.api.controls.resolve``)."""

    __tablename__ = "conflict_resolutions"
    conflict_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    action: Mapped[str] = mapped_column(String(32))
    resolved_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- account controls --------------------------------------------------------------------------


def _control_row(session: Session, account: str) -> AccountControl:
    """The account's control row, added (not paused, nothing asked) if it has none yet."""
    row = session.get(AccountControl, account)
    if row is None:
        row = AccountControl(account=account, paused=False)
        session.add(row)
    return row


def set_paused(session: Session, account: str, paused: bool) -> None:
    """Pause the account (from now) or let it run again."""
    row = _control_row(session, account)
    row.paused = paused
    row.paused_at = utcnow() if paused else None


def ask_sync(session: Session, account: str, at: dt.datetime) -> None:
    """Ask the daemons for a pass of the account (``take_sync_requests`` hands it over)."""
    _control_row(session, account).sync_requested_at = at


def ask_reset(session: Session, account: str, at: dt.datetime) -> None:
    """Ask for the account's links to be forgotten (``take_reset_request`` hands it over)."""
    _control_row(session, account).reset_requested_at = at


def is_paused(session: Session, account: str) -> bool:
    row = session.get(AccountControl, account)
    return bool(row is not None and row.paused)


def pause_and_reset_asked(session: Session, account: str) -> tuple[bool, bool]:
    """(paused, a reset asked for) from one read: the daemon decides both at a pass's start.

    An account with no control row (the usual case) costs one statement here, not one
    per question (the ORM does not remember that a row is missing).
    """
    row = session.get(AccountControl, account)
    if row is None:
        return False, False
    return bool(row.paused), row.reset_requested_at is not None


def paused_accounts(session: Session) -> set[str]:
    return set(session.scalars(select(AccountControl.account).where(AccountControl.paused)))


def take_reset_request(session: Session, account: str) -> bool:
    """Clear the account's reset request; True if there was one (the caller then resets)."""
    row = session.get(AccountControl, account)
    if row is None or row.reset_requested_at is None:
        return False
    row.reset_requested_at = None
    return True


def take_sync_requests(session: Session, accounts: set[str]) -> list[str]:
    """Accounts (of ``accounts``) someone asked to sync now; their requests are cleared."""
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


# --- conflict resolutions ------------------------------------------------------------------------


def resolution_of(session: Session, conflict_id: int) -> str | None:
    """How an admin decided the conflict (the action), None while the policy's outcome stands."""
    decided = session.get(ConflictResolution, conflict_id)
    return decided.action if decided is not None else None


def record_resolution(session: Session, conflict_id: int, action: str) -> None:
    """Remember the admin's decision; a second decision on one conflict replaces the first."""
    existing = session.get(ConflictResolution, conflict_id)
    if existing is None:
        session.add(ConflictResolution(conflict_id=conflict_id, action=action))
    else:
        existing.action, existing.resolved_at = action, utcnow()
