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
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sync.state.rows import CollectionState, ConflictRecord, PendingHref, SyncItem

# --- what one sync pass reads and records (the engine) -------------------------------------------


# (end of the engine's section)


# --- what the shells read and change (daemon, dialog, API, CLI) ----------------------------------

# (h-state: daemon and controls)


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
