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

from typing import Any

from sqlalchemy.orm import Session

from mappings.documents import load_followup
from mappings.equivalence import PLAIN_FIELDS
from mappings.model import FollowUp
from sync.engine.merge import SERIES_FIELDS
from sync.state import controls as control_rows
from sync.state import followups as crm_store
from sync.state import repo
from sync.state.db import ConflictRecord, Database, utcnow


def set_paused(db: Database, account: str, paused: bool) -> None:
    with db.sessions.begin() as session:
        control_rows.set_paused(session, account, paused)
        if not paused:
            # CRM changes seen while paused triggered nothing: catch up at once.
            control_rows.ask_sync(session, account, utcnow())


def request_sync(db: Database, account: str) -> None:
    with db.sessions.begin() as session:
        control_rows.ask_sync(session, account, utcnow())


def request_reset(db: Database, account: str) -> None:
    """Forget what links follow-ups to the account's calendar; the next pass re-links.

    Carried out by the daemon under the account's locks (``take_reset``), never here:
    a pass under way would otherwise record links the reset just removed.
    """
    with db.sessions.begin() as session:
        asked = utcnow()
        control_rows.ask_reset(session, account, asked)
        control_rows.ask_sync(session, account, asked)


def take_reset(db: Database, account: str) -> bool:
    """If a reset was asked for: forget the account's links and sync token; True if so.

    What is left is what a first pass sees: follow-ups and calendar resources with no
    record between them. The planner pairs them by UID (``plan._adopt``: recorded when
    they mean the same, merged when not), so nothing is created twice.
    """
    with db.sessions.begin() as session:
        return take_reset_in(session, account)


def take_reset_in(session: Session, account: str) -> bool:
    """``take_reset`` inside the caller's transaction (the daemon's start of a pass)."""
    if not control_rows.take_reset_request(session, account):
        return False
    repo.forget_links(session, account)
    return True


is_paused = control_rows.is_paused
paused_accounts = control_rows.paused_accounts


def take_requests(db: Database, accounts: set[str]) -> list[str]:
    """Accounts (of ``accounts``) someone asked to sync now; the requests are cleared."""
    with db.sessions.begin() as session:
        return control_rows.take_sync_requests(session, accounts)


# --- conflict resolution --------------------------------------------------------------------------


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
    with db.sessions.begin() as session:
        record = repo.conflict(session, conflict_id)
        if record is None:
            raise LookupError(conflict_id)
        row = crm_store.live_row(session, record.followup_id)
        if row is None:
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
        control_rows.record_resolution(session, conflict_id, action)
    return chosen


def resolution_of(session: Session, conflict_id: int) -> str | None:
    """What an admin decided for the conflict (``resolve``'s action), None: not decided."""
    return control_rows.resolution_of(session, conflict_id)
