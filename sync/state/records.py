"""Recording what both sides agree on, and forgetting it: the writes of one action.

The sync pass's side of ``sync_items`` (``sync.state.repo`` holds its reads): after a
server write or a pull, the state remembers the follow-up's href, ETag, document and the
resource as written, so the next pass can tell whose change a difference is. Functions
take the caller's ``Session``; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from mappings.model import FollowUp
from sync.state import followups as crm_store
from sync.state.rows import FollowUpRow, SyncItem, utcnow


def sync_item(session: Session, account: str, followup_id: str) -> SyncItem | None:
    """One follow-up's record, to update it in place (None: recorded for the first time)."""
    return session.get(SyncItem, (account, followup_id))


class Agreed(Protocol):
    """What the state remembers of one follow-up both sides agree on."""

    @property
    def followup_id(self) -> str: ...
    @property
    def href(self) -> str: ...
    @property
    def etag(self) -> str: ...
    @property
    def document(self) -> FollowUp: ...
    @property
    def data(self) -> bytes: ...


def record_agreed_many(session: Session, account: str, batch: Sequence[Agreed]) -> None:
    """``record_agreed`` for a batch of our own server writes, in three statements.

    One query for which of them have a record, one bulk UPDATE by key for those and one
    bulk INSERT for the rest: with an ORM object per write, recording a batch of 100 cost
    about 10 ms (the rows loaded with their resources, then flushed one by one), a tenth
    of the client-side time of a 500-series push (``benchmarks.bench_sync``). Updates go
    first, so a record that gives up an href frees it before a new one takes it. Both
    statements go through the session, so the change counter moves (``sync.state.rows``).
    """
    if not batch:
        return
    latest = {agreed.followup_id: agreed for agreed in batch}  # the later write stands
    known = set(
        session.scalars(
            select(SyncItem.followup_id).where(
                SyncItem.account == account, SyncItem.followup_id.in_(list(latest))
            )
        )
    )
    now = utcnow()
    rows = [
        {
            "account": account,
            "followup_id": followup_id,
            **_agreed_values(
                href=agreed.href,
                etag=agreed.etag,
                document=agreed.document,
                data=agreed.data,
                now=now,
            ),
        }
        for followup_id, agreed in latest.items()
    ]
    updates = [row for row in rows if row["followup_id"] in known]
    inserts = [row for row in rows if row["followup_id"] not in known]
    if updates:
        session.execute(update(SyncItem), updates)
    if inserts:
        session.execute(insert(SyncItem), inserts)


def record_agreed(
    session: Session,
    account: str,
    item: SyncItem | None,
    *,
    followup_id: str,
    href: str,
    etag: str,
    document: FollowUp,
    data: bytes,
) -> None:
    """Remember what both sides agree on for one follow-up; ``item`` is its row, or None."""
    if item is None:
        item = SyncItem(account=account, followup_id=followup_id)
        session.add(item)
    values = _agreed_values(href=href, etag=etag, document=document, data=data, now=utcnow())
    for column, value in values.items():
        setattr(item, column, value)


def _agreed_values(
    *, href: str, etag: str, document: FollowUp, data: bytes, now: dt.datetime
) -> dict[str, Any]:
    """The columns of one record beyond its key, for one row or a batch alike."""
    synced = document.to_json_dict()
    return {
        "uid": document.effective_uid,
        "href": href,
        "etag": etag,
        "synced_hash": crm_store.json_hash(synced),
        "synced_document": synced,
        "server_data": data,
        "updated_at": now,
        "detached": False,
    }


def forget(session: Session, account: str, followup_id: str) -> None:
    """Drop one follow-up's record: it is gone from the calendar, or from both sides."""
    session.execute(
        delete(SyncItem).where(SyncItem.account == account, SyncItem.followup_id == followup_id)
    )


def detach(session: Session, account: str, followup_id: str) -> None:
    """Unlink a follow-up from the calendar but keep it in the CRM (deleted in the calendar)."""
    item = sync_item(session, account, followup_id)
    if item is not None:
        item.detached = True


def purge_if_unused(session: Session, followup_id: str) -> None:
    """A tombstone no calendar refers to any more has done its job."""
    row = session.get(FollowUpRow, followup_id)
    if row is None or not row.deleted:
        return
    others = session.scalar(
        select(func.count()).select_from(SyncItem).where(SyncItem.followup_id == followup_id)
    )
    if not others:
        session.delete(row)
