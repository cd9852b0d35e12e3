"""The one door to the sync tables: what the service knows of each calendar item and collection.

Every query on ``sync_items``, ``collections``, ``pending_hrefs`` and the conflict log is written
here, once, and called by the engine, the daemon, the dialog, the API and the CLI. Changing one of
those tables touches this module and its migration, nothing else. The follow-ups themselves (the CRM
side) are behind :mod:`sync.state.followups`; the change feed behind :mod:`sync.state.changes`.

Functions take the caller's ``Session``: the caller owns the transaction, so a pass can record an
item and its feed entry in one commit.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync.state.db import CollectionState, ConflictRecord, SyncItem

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
