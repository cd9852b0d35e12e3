"""Sync controls a CRM admin drives over HTTP: pause and resume an account, sync it now,
resolve a conflict.

The API and the daemon may be different processes (``followup-sync api`` next to a
daemon, or several daemons on one PostgreSQL database), so a control is a row in the
shared database, not a call into a process: ``account_controls`` says whether an
account is paused and whether someone asked for a pass. The daemon reads it when it
decides whether a pass is due (paused: no pass, whatever triggered it) and on every
CRM poll (a requested pass is queued at once and the request cleared).

A conflict the merge settled by policy (``conflicts``) can be decided otherwise: the
chosen side's value of that part is written to the follow-up as a CRM change, which the
next pass takes to the calendar like any other; ``conflict_resolutions`` records who
was decided how.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from mappings.equivalence import PLAIN_FIELDS
from mappings.model import FollowUp
from sync.engine.merge import SERIES_FIELDS
from sync.state.db import (
    Base,
    CollectionState,
    ConflictRecord,
    Database,
    FollowUpRow,
    PendingHref,
    SyncItem,
    utcnow,
)


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


def request_reset(db: Database, account: str) -> None:
    """Forget what links follow-ups to the account's calendar; the next pass re-links.

    Carried out by the daemon under the account's locks (``take_reset``), never here:
    a pass under way would otherwise record links the reset just removed.
    """
    with db.sessions.begin() as session:
        row = _row(session, account)
        row.reset_requested_at = row.sync_requested_at = utcnow()


def take_reset(db: Database, account: str) -> bool:
    """If a reset was asked for: forget the account's links and sync token; True if so.

    What is left is what a first pass sees: follow-ups and calendar resources with no
    record between them. The planner pairs them by UID (``plan._adopt``: recorded when
    they mean the same, merged when not), so nothing is created twice.
    """
    with db.sessions.begin() as session:
        row = session.get(AccountControl, account)
        if row is None or row.reset_requested_at is None:
            return False
        row.reset_requested_at = None
        session.execute(delete(SyncItem).where(SyncItem.account == account))
        session.execute(delete(PendingHref).where(PendingHref.account == account))
        state = session.get(CollectionState, account)
        if state is not None:
            state.sync_token = None
            state.last_modified_seen = None
        return True


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


# --- conflict resolution --------------------------------------------------------------------------


class ConflictResolution(Base):
    """An admin's decision on a conflict the policy settled (``resolve``)."""

    __tablename__ = "conflict_resolutions"
    conflict_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    action: Mapped[str] = mapped_column(String(32))
    resolved_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NotResolvable(ValueError):
    """The conflict cannot be resolved that way (gone follow-up, unknown part)."""


def side_value(record: ConflictRecord, side: str) -> Any:
    """The value ``side`` (``crm`` or ``server``) had for the part, from kept/lost."""
    return record.kept_value if record.winner == side else record.lost_value


def with_part(document: dict[str, Any], part: str, value: Any) -> dict[str, Any]:
    """``document`` with one merge part (``sync.engine.merge``) set to ``value``."""
    result = dict(document)
    if part == "series":
        for name in SERIES_FIELDS:
            result.pop(name, None)
        result.update(value or {})
    elif part.startswith("exception "):
        key = part.removeprefix("exception ")
        kept = [e for e in result.get("exceptions") or [] if str(e.get("original_start")) != key]
        result["exceptions"] = kept + ([value] if value else [])
    elif part in PLAIN_FIELDS:
        if value is None:
            result.pop(part, None)
        else:
            result[part] = value
    else:
        raise NotResolvable(f"a {part!r} conflict cannot be resolved by choosing a side")
    return result


def resolve(
    db: Database, conflict_id: int, action: str, edited: FollowUp | None = None
) -> FollowUp:
    """Store the chosen version of the follow-up; the next pass takes it to the calendar.

    ``keep-crm`` / ``keep-calendar`` set the conflicting part to that side's value in the
    follow-up as it is now; ``edit`` stores ``edited`` whole. The write is an ordinary
    CRM-side change (so it is in the feed, and the planner pushes it).
    """
    from mappings.model import load_followup
    from sync.state import followups as crm_store

    with db.sessions.begin() as session:
        record = session.get(ConflictRecord, conflict_id)
        if record is None:
            raise LookupError(conflict_id)
        row = session.get(FollowUpRow, record.followup_id)
        if row is None or row.deleted:
            raise NotResolvable(f"follow-up {record.followup_id!r} no longer exists")
        if action == "edit":
            if edited is None or edited.id != record.followup_id:
                raise NotResolvable("'edit' needs the follow-up document with the same id")
            chosen = edited
        else:
            side = "crm" if action == "keep-crm" else "server"
            value = side_value(record, side)
            chosen = load_followup(with_part(dict(row.document), record.part, value))
        crm_store.save(session, chosen, note={"resolves_conflict": conflict_id})
        existing = session.get(ConflictResolution, conflict_id)
        if existing is None:
            session.add(ConflictResolution(conflict_id=conflict_id, action=action))
        else:
            existing.action, existing.resolved_at = action, utcnow()
    return chosen


def resolution_of(session: Session, conflict_id: int) -> str | None:
    """What an admin decided for the conflict (``resolve``'s action), None: not decided."""
    decided = session.get(ConflictResolution, conflict_id)
    return decided.action if decided is not None else None
