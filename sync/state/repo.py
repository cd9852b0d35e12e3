"""The one door to the sync tables: what the service knows of each calendar item and collection.

Every query on ``sync_items``, ``collections``, ``pending_hrefs`` and the conflict log is written
here, once, and called by the engine, the daemon, the dialog, the API and the CLI. Changing one of
those tables touches this module and its migration, nothing else. The follow-ups themselves (the CRM
side) are behind :mod:`sync.state.followups`; the change feed behind :mod:`sync.state.changes`.

Functions take the caller's ``Session``: the caller owns the transaction, so a pass can record an
item and its feed entry in one commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sync.state.rows import CollectionState, ConflictRecord, PendingHref, SyncItem

#: Rows read per round trip when a query covers many follow-ups.
_ROWS = 500

# --- what one sync pass reads and records (the engine) -------------------------------------------


# (end of the engine's section)


# --- what the shells read and change (daemon, dialog, API, CLI) ----------------------------------


def collection_states(session: Session) -> dict[str, CollectionState]:
    """Every account's collection row by account: the status views show its passes."""
    return {state.account: state for state in session.scalars(select(CollectionState))}


def known_calendar_url(session: Session, account: str) -> str | None:
    """The calendar a sync pass of ``account`` found, so the dialog need not discover it again."""
    state = session.get(CollectionState, account)
    return state.calendar_url if state is not None else None


def accounts_syncing_to(session: Session, calendar_url: str) -> list[str]:
    """Accounts whose calendar is ``calendar_url``: any of them may hold a follow-up's copy."""
    return list(
        session.scalars(
            select(CollectionState.account).where(CollectionState.calendar_url == calendar_url)
        )
    )


def synced_document(session: Session, account: str, followup_id: str) -> dict[str, object] | None:
    """The follow-up as last synced to ``account``'s calendar (None: never synced there).

    The dialog takes it for what the calendar holds now, to recognise its own busy time.
    """
    item = session.get(SyncItem, (account, followup_id))
    return item.synced_document if item is not None else None


def synced_followup_ids(session: Session, account: str, ids: Collection[str]) -> set[str]:
    """Which of ``ids`` are synced to ``account``: the API's account filter of a page."""
    return set(
        session.scalars(
            select(SyncItem.followup_id).where(
                SyncItem.account == account, SyncItem.followup_id.in_(ids)
            )
        )
    )


def conflict_counts(session: Session) -> dict[str, int]:
    """How many conflicts the log holds per account (status views)."""
    counted = session.execute(
        select(ConflictRecord.account, func.count()).group_by(ConflictRecord.account)
    )
    return {account: int(count) for account, count in counted}


def conflicts_oldest_first(session: Session, account: str | None = None) -> list[ConflictRecord]:
    """The whole conflict log in the order it happened, or one account's (``conflicts``)."""
    query = select(ConflictRecord).order_by(ConflictRecord.occurred_at)
    if account:
        query = query.where(ConflictRecord.account == account)
    return list(session.scalars(query))


def conflicts_newest_first(
    session: Session,
    *,
    before_id: int | None,
    account: str | None,
    followup_id: str | None,
    limit: int,
) -> list[ConflictRecord]:
    """Up to ``limit`` conflicts with an id below ``before_id``, newest first (API pages)."""
    query = select(ConflictRecord).order_by(ConflictRecord.id.desc())
    if before_id is not None:
        query = query.where(ConflictRecord.id < before_id)
    if account is not None:
        query = query.where(ConflictRecord.account == account)
    if followup_id is not None:
        query = query.where(ConflictRecord.followup_id == followup_id)
    return list(session.scalars(query.limit(limit)))


def agreed_versions(
    session: Session, account: str, followup_ids: Collection[str]
) -> dict[str, tuple[dict[str, Any], bytes]]:
    """What both sides agreed on for some follow-ups: the document and the calendar's bytes.

    In one-way mode to the CRM (``sync.engine.direction``) a CRM edit of an item the
    calendar did not change is undone with this: it is the calendar's current version.
    """
    found: dict[str, tuple[dict[str, Any], bytes]] = {}
    wanted = sorted(followup_ids)
    for start in range(0, len(wanted), _ROWS):
        rows = session.execute(
            select(SyncItem.followup_id, SyncItem.synced_document, SyncItem.server_data).where(
                SyncItem.account == account,
                SyncItem.detached.is_(False),
                SyncItem.followup_id.in_(wanted[start : start + _ROWS]),
            )
        )
        for row in rows:
            found[row.followup_id] = (dict(row.synced_document), bytes(row.server_data))
    return found


# the daemon's schedule and an admin's reset (h-state)


def collection_state(session: Session, account: str) -> CollectionState | None:
    """The account's collection row: its schedule, failures and last result (None: never run)."""
    return session.get(CollectionState, account)


def failures_in_a_row(session: Session, account: str) -> int:
    """Failed passes in a row the database records for the account (shared by all daemons)."""
    state = session.get(CollectionState, account)
    return (state.consecutive_failures or 0) if state is not None else 0


def set_failures_in_a_row(session: Session, account: str, failures: int) -> None:
    """Store the failure count; an account never connected (no row) keeps none."""
    state = session.get(CollectionState, account)
    if state is not None:
        state.consecutive_failures = failures


def set_next_run(session: Session, account: str, at: dt.datetime) -> None:
    """When a daemon runs the account next (``status`` shows it); no row, nothing to store."""
    state = session.get(CollectionState, account)
    if state is not None:
        state.next_run_at = at


def record_failed_pass(
    session: Session,
    account: str,
    *,
    calendar_url: str,
    at: dt.datetime,
    failures: int,
    result: str,
    next_run: dt.datetime,
) -> None:
    """A pass that failed: when, how many in a row, why and when it runs next (``status``).

    Creates the collection row when the very first pass fails (it could not connect), so
    the back-off applies to it as well.
    """
    state = session.get(CollectionState, account)
    if state is None:
        state = CollectionState(account=account, calendar_url=calendar_url)
        session.add(state)
    state.last_run_at = at
    state.consecutive_failures = failures
    state.last_result = result
    state.next_run_at = next_run


def forget_links(session: Session, account: str) -> None:
    """Forget what links follow-ups to the account's calendar (an admin's reset).

    Drops its sync records and unreadable hrefs and the sync token: the next pass sees what
    a first pass sees and pairs follow-ups with calendar resources by UID again.
    """
    session.execute(delete(SyncItem).where(SyncItem.account == account))
    session.execute(delete(PendingHref).where(PendingHref.account == account))
    state = session.get(CollectionState, account)
    if state is not None:
        state.sync_token = None
        state.last_modified_seen = None


def synced_pairs(session: Session, followup_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(account, follow-up id) of every sync record of ``followup_ids``."""
    rows = session.execute(
        select(SyncItem.account, SyncItem.followup_id).where(SyncItem.followup_id.in_(followup_ids))
    )
    return {(account, followup_id) for account, followup_id in rows}


def conflict(session: Session, conflict_id: int) -> ConflictRecord | None:
    """One entry of the conflict log, by id."""
    return session.get(ConflictRecord, conflict_id)


# the CRM connector's write-back (sync.crm.reconcile)


def record_conflict(
    session: Session,
    account: str,
    followup_id: str,
    *,
    part: str,
    policy: str,
    winner: str,
    kept: object,
    lost: object,
) -> None:
    """Log a conflict a pass settled outside the engine's merge (a CRM edit racing a calendar edit).

    Written to the engine's log, so ``followup-sync conflicts`` and the API list it with the rest.
    """
    session.add(
        ConflictRecord(
            account=account,
            followup_id=followup_id,
            part=part,
            policy=policy,
            winner=winner,
            kept_value=kept,
            lost_value=lost,
        )
    )
