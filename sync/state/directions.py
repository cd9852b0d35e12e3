"""One-way mode set over the API: an account's sync direction, overriding its config.

``[accounts.NAME] direction`` says which way an account syncs (``sync.config``); a CRM
admin can change it without editing the file or restarting anything with
``PUT /v1/accounts/NAME/direction``. That choice is a row here, in the shared database,
so it holds whichever process serves the API and whichever daemon (or ``sync`` run)
takes the account's next pass.

Why a table of its own and not a column of ``account_controls`` (pause, sync now,
reset): those are read by the daemon and the API, while this one is read by the engine
at the start of every pass (``sync.engine.direction``), and the engine sits below the
API: it may not import the API's table.
"""

from __future__ import annotations

import datetime as dt
from typing import cast, get_args

from sqlalchemy import DateTime, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.policies import SyncDirection
from sync.state.rows import Base, utcnow


class AccountDirection(Base):
    """An account's direction as set over the API (no row: the config's)."""

    __tablename__ = "account_directions"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    direction: Mapped[str] = mapped_column(String(16))
    set_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def override(session: Session, account: str) -> SyncDirection | None:
    """The direction set over the API for ``account``; None: the config decides."""
    row = session.get(AccountDirection, account)
    return _checked(row.direction) if row is not None else None


def overrides(session: Session) -> dict[str, SyncDirection]:
    """Every account's direction set over the API (for the status page)."""
    return {
        row.account: _checked(row.direction) for row in session.scalars(select(AccountDirection))
    }


def set_override(session: Session, account: str, direction: SyncDirection | None) -> None:
    """Set ``account``'s direction, or with None go back to the config's."""
    row = session.get(AccountDirection, account)
    if direction is None:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        session.add(AccountDirection(account=account, direction=direction, set_at=utcnow()))
    else:
        row.direction, row.set_at = direction, utcnow()


def _checked(value: str) -> SyncDirection:
    """A stored value, as the type says: an unknown one (a newer version wrote it) is an error."""
    if value in get_args(SyncDirection):
        return cast(SyncDirection, value)
    raise ValueError(f"unknown sync direction {value!r} in account_directions")
