"""The one door to the sync tables: what the service knows of each calendar item and collection.

Every query on ``sync_items``, ``collections``, ``pending_hrefs`` and the conflict log is written
here or, for the records a pass writes into ``sync_items`` (recording, forgetting, detaching an
item), in :mod:`sync.state.records`; once, and called by the engine, the daemon, the dialog, the
API and the CLI. Changing one of those tables touches these two modules and its migration, nothing
else. The follow-ups themselves (the CRM side) are behind :mod:`sync.state.followups`; the change
feed behind :mod:`sync.state.changes`.

Functions take the caller's ``Session``: the caller owns the transaction, so a pass can record an
item and its feed entry in one commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.orm import Session

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.state.rows import (
    CollectionState,
    ConflictRecord,
    FollowUpRow,
    PendingHref,
    SyncItem,
    revision_query,
)

#: Rows read per round trip when a query covers many follow-ups.
_ROWS = 500

# --- what one sync pass reads and records (the engine) -------------------------------------------


# The collection row: where the calendar is, how far the last pass got.


def remember_calendar_url(session: Session, account: str, url: str) -> None:
    """Keep the URL discovery found: the next pass connects without discovering."""
    state = session.get(CollectionState, account)
    if state is None:
        session.add(CollectionState(account=account, calendar_url=url))
    else:
        state.calendar_url = url


def open_collection(
    session: Session, account: str, calendar_url: str
) -> tuple[CollectionState, int | None, dict[str, PendingHref]]:
    """The collection's record (created on the first pass), the change counter and the
    items waiting for a retry: read together, so an idle pass costs one round trip.

    One statement carries the row, the counter and whether anything waits for a retry;
    the waiting items are read only when there are some (an idle pass made three
    statements here, each a round trip and most of its CPU in SQLAlchemy).
    """
    waiting = select(PendingHref.href).where(PendingHref.account == account).exists()
    found = session.execute(
        select(CollectionState, revision_query().scalar_subquery(), waiting).where(
            CollectionState.account == account
        )
    ).first()
    if found is None:
        state = CollectionState(account=account, calendar_url=calendar_url)
        session.add(state)
        value, any_waiting = session.scalar(revision_query()), True
    else:
        state, value, any_waiting = found
    revision = int(value) if value is not None else None
    pending = (
        {
            row.href: row
            for row in session.scalars(select(PendingHref).where(PendingHref.account == account))
        }
        if any_waiting
        else {}
    )
    return state, revision, pending


def record_pass_end(
    session: Session,
    account: str,
    *,
    crm_revision_seen: int | None,
    crm_scope_seen: str | None,
    sync_token: str | None,
    last_modified_seen: dt.datetime | None,
    server_kind: str | None,
    now: dt.datetime,
    listed_everything: bool,
    succeeded: bool,
    last_result: str,
) -> None:
    """What a finished pass leaves on the collection row for the next one.

    ``sync_token`` None keeps the stored token: a pass cut short must list the server's
    changes it did not apply again. ``listed_everything`` and ``succeeded`` move
    ``last_full_at`` and ``last_success_at``.
    """
    values: dict[str, Any] = {
        "crm_revision_seen": crm_revision_seen,
        "crm_scope_seen": crm_scope_seen,
        "last_modified_seen": last_modified_seen,
        "server_kind": server_kind,
        "last_run_at": now,
        "last_result": last_result,
    }
    if sync_token is not None:
        values["sync_token"] = sync_token
    if listed_everything:
        values["last_full_at"] = now
    if succeeded:
        values["last_success_at"] = now
    # One UPDATE without reading the row first (the pass opened it: ``open_collection``).
    moved = session.execute(
        update(CollectionState)
        .where(CollectionState.account == account)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    assert getattr(moved, "rowcount", 1) == 1


# Unreadable items (``pending_hrefs``): retried on a back-off by the engine.


def clear_pending_hrefs(
    session: Session, account: str, fetched: Collection[str], listed: Mapping[str, str] | None
) -> None:
    """Forget the unreadable items this pass read, and, after a complete listing
    (``listed``), the ones the server no longer has."""
    gone = (
        {
            row.href
            for row in session.scalars(select(PendingHref).where(PendingHref.account == account))
            if row.href not in listed
        }
        if listed is not None
        else set()
    )
    session.execute(
        delete(PendingHref).where(
            PendingHref.account == account,
            PendingHref.href.in_(set(fetched) | gone),
        )
    )


def note_unreadable(
    session: Session,
    account: str,
    href: str,
    reason: str,
    *,
    etag: str | None,
    now: dt.datetime,
    retry_at: Callable[[int, dt.datetime], dt.datetime | None],
) -> None:
    """Count one more failure to read ``href``; ``retry_at`` says when to try again.

    A "vanished" reason keeps the reason it vanished after: that is what a user can fix.
    """
    row = session.get(PendingHref, (account, href))
    if row is None:
        row = PendingHref(account=account, href=href, reason=reason)
        row.attempts = 1
        session.add(row)
    else:
        row.attempts += 1
        if not reason.startswith("vanished"):
            row.reason = reason
    row.last_seen = now
    row.etag = etag
    row.retry_at = retry_at(row.attempts, now)


# What both sides agreed on (``sync_items``), read without the documents where it can be.


def state_rows(session: Session, account: str) -> Iterator[Row[str, str, str, str, str]]:
    """Every attached item's (followup_id, uid, href, etag, synced_hash), streamed."""
    query = select(
        SyncItem.followup_id,
        SyncItem.uid,
        SyncItem.href,
        SyncItem.etag,
        SyncItem.synced_hash,
    ).where(SyncItem.account == account, SyncItem.detached.is_(False))
    yield from session.execute(query.execution_options(yield_per=_ROWS))


def state_row(
    session: Session, account: str, followup_id: str
) -> Row[str, str, str, str, str] | None:
    """One attached item's (followup_id, uid, href, etag, synced_hash), or None."""
    return session.execute(
        select(
            SyncItem.followup_id,
            SyncItem.uid,
            SyncItem.href,
            SyncItem.etag,
            SyncItem.synced_hash,
        ).where(
            SyncItem.account == account,
            SyncItem.followup_id == followup_id,
            SyncItem.detached.is_(False),
        )
    ).first()


def recorded_etags(session: Session, account: str, hrefs: Collection[str]) -> dict[str, str]:
    """href -> recorded ETag, for those of ``hrefs`` (at most ``_ROWS``) an item has."""
    rows = session.execute(
        select(SyncItem.href, SyncItem.etag).where(
            SyncItem.account == account,
            SyncItem.detached.is_(False),
            SyncItem.href.in_(hrefs),
        )
    )
    return {row.href: row.etag for row in rows}


def recorded_at(session: Session, account: str, hrefs: Collection[str]) -> dict[str, dt.datetime]:
    """href -> when we recorded it, for telling our own writes in a re-listed delta."""
    rows = session.execute(
        select(SyncItem.href, SyncItem.updated_at).where(
            SyncItem.account == account, SyncItem.href.in_(hrefs)
        )
    )
    return {row.href: row.updated_at for row in rows}


def synced_documents(session: Session, account: str, ids: Collection[str]) -> dict[str, FollowUp]:
    """The agreed documents (merge bases) of some follow-ups, ``_ROWS`` per round trip."""
    result: dict[str, FollowUp] = {}
    wanted = sorted(ids)
    for start in range(0, len(wanted), _ROWS):
        for row in session.execute(
            select(SyncItem.followup_id, SyncItem.synced_document).where(
                SyncItem.account == account,
                SyncItem.followup_id.in_(wanted[start : start + _ROWS]),
            )
        ):
            result[row.followup_id] = load_followup(row.synced_document)
    return result


def detached_ids(session: Session, account: str) -> set[str]:
    """Follow-ups unlinked from this calendar (``on_server_delete = detach``)."""
    return set(
        session.scalars(
            select(SyncItem.followup_id).where(
                SyncItem.account == account, SyncItem.detached.is_(True)
            )
        )
    )


def followup_rows(
    session: Session,
) -> Iterator[Row[str, str, str, str | None, str, bool, dt.datetime, str | None]]:
    """Every follow-up's id, uid, kind, owner, content_hash, deleted, updated_at and
    origin_account, streamed: what decides which belong in a calendar, without documents."""
    yield from session.execute(
        select(
            FollowUpRow.id,
            FollowUpRow.uid,
            FollowUpRow.kind,
            FollowUpRow.owner,
            FollowUpRow.content_hash,
            FollowUpRow.deleted,
            FollowUpRow.updated_at,
            FollowUpRow.origin_account,
        ).execution_options(yield_per=_ROWS)
    )


def followup_uids(session: Session, followup_id: str) -> dict[str, str]:
    """uid -> id of one follow-up (empty if it is gone): re-planning one item after a 412."""
    rows = session.execute(
        select(FollowUpRow.uid, FollowUpRow.id).where(FollowUpRow.id == followup_id)
    )
    return {row.uid: row.id for row in rows}


def server_data(session: Session, account: str, followup_id: str) -> bytes | None:
    """The server's bytes we recorded last: an update patches them, so unknown parts survive."""
    item = session.get(SyncItem, (account, followup_id))
    return item.server_data if item is not None else None


# The conflict log: every choice a merge made (the records themselves: ``sync.state.records``).


def log_conflict(
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
    """One part both sides changed, and which side's value the policy kept."""
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


# (end of the engine's section)


# --- what the shells read and change (daemon, dialog, API, CLI) ----------------------------------


def collection_states(session: Session) -> dict[str, CollectionState]:
    """Every account's collection row by account: the status views show its passes."""
    return {state.account: state for state in session.scalars(select(CollectionState))}


def known_calendar_url(session: Session, account: str) -> str | None:
    """The calendar a sync pass of ``account`` found, so a pass or the dialog need not
    discover it again (``sync.run.connect``, ``sync.dialog``)."""
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


def clear_failures_in_a_row(session: Session, account: str) -> None:
    """A pass succeeded: its back-off is over. One UPDATE that matches no row in the common
    case (no failure before), instead of reading the row first."""
    session.execute(
        update(CollectionState)
        .where(CollectionState.account == account, CollectionState.consecutive_failures != 0)
        .values(consecutive_failures=0)
        .execution_options(synchronize_session=False)
    )


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
