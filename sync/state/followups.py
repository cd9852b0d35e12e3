"""The CRM side of the sync: follow-ups as the service stores them.

A follow-up enters through ``import`` (the mapper's JSON document), the HTTP API or a
pull from a calendar, and leaves through ``export``. Every write recomputes a content
hash; the sync planner compares it with the hash both sides last agreed on, so reading
the follow-ups for a pass costs one small query however large the documents are.

Deleting keeps a tombstone: the calendar copy has to be deleted too, and a row that
simply vanished would look the same as a follow-up that was never synced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.resource import check_renderable
from sync.state import changes
from sync.state.db import Database, FollowUpRow, as_utc, utcnow


def content_hash(followup: FollowUp) -> str:
    """Stable across runs and processes: canonical JSON of the document."""
    return json_hash(followup.to_json_dict())


def json_hash(document: dict[str, object]) -> str:
    """``content_hash`` of a document already turned into JSON data (``to_json_dict``)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CrmEntry:
    """What the planner needs to know of one follow-up without loading its document."""

    id: str
    content_hash: str
    deleted: bool
    updated_at: dt.datetime
    #: The CRM associate; a tail split off in a calendar belongs to the same one.
    owner: str | None = None


@dataclass(frozen=True)
class ImportResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


class FollowUpStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def import_followups(self, followups: Iterable[FollowUp]) -> ImportResult:
        """Store every follow-up or none: each is checked first (``check_renderable``)."""
        created: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        followups = list(followups)
        for followup in followups:
            check_renderable(followup)
        with self.db.sessions.begin() as session:
            for followup in followups:
                outcome = save(session, followup)
                {"created": created, "updated": updated, "unchanged": unchanged}[outcome].append(
                    followup.id
                )
        return ImportResult(created, updated, unchanged)

    def get(self, followup_id: str, *, include_deleted: bool = False) -> FollowUp | None:
        with self.db.session() as session:
            row = session.get(FollowUpRow, followup_id)
            if row is None or (row.deleted and not include_deleted):
                return None
            return load_followup(row.document)

    def all(self, *, include_deleted: bool = False) -> list[FollowUp]:
        with self.db.session() as session:
            query = select(FollowUpRow).order_by(FollowUpRow.id)
            if not include_deleted:
                query = query.where(FollowUpRow.deleted.is_(False))
            return [load_followup(row.document) for row in session.scalars(query)]

    def delete(self, followup_id: str) -> bool:
        with self.db.sessions.begin() as session:
            return tombstone(session, followup_id)

    def put(self, followup: FollowUp) -> str:
        check_renderable(followup)
        with self.db.sessions.begin() as session:
            return save(session, followup)


def save(
    session: Session,
    followup: FollowUp,
    *,
    origin_account: str | None = None,
    origin: str = "crm",
    note: Mapping[str, Any] | None = None,
) -> str:
    """Insert or update one follow-up in the caller's transaction; returns what happened.

    A real change is appended to the change feed (``sync.state.changes``) in the same
    transaction, with ``origin`` (``calendar``, ``crm``, ``invitation``) and ``note``
    (e.g. the series split it belongs to).
    """
    digest = content_hash(followup)
    # The feed's lock first, then the row: every follow-up writer takes them in this
    # order (``sync.state.changes.lock_writes``), so two of them never deadlock on PostgreSQL.
    changes.lock_writes(session)
    row = session.get(FollowUpRow, followup.id)
    document = followup.to_json_dict()
    if row is None:
        session.add(
            FollowUpRow(
                id=followup.id,
                uid=followup.effective_uid,
                kind=followup.kind.value,
                owner=followup.owner,
                document=document,
                content_hash=digest,
                deleted=False,
                updated_at=utcnow(),
                origin_account=origin_account,
            )
        )
        changes.record(
            session, followup_id=followup.id, owner=followup.owner, action="created",
            before=None, after=document, content_hash=digest, origin=origin, extra=note,
        )  # fmt: skip
        return "created"
    if row.content_hash == digest and not row.deleted:
        return "unchanged"
    before = None if row.deleted else dict(row.document)
    row.uid = followup.effective_uid
    row.kind = followup.kind.value
    row.owner = followup.owner
    row.document = document
    row.content_hash = digest
    row.deleted = False
    row.updated_at = utcnow()
    changes.record(
        session, followup_id=followup.id, owner=followup.owner,
        action="created" if before is None else "updated", before=before, after=document,
        content_hash=digest, origin=origin, extra=note,
    )  # fmt: skip
    return "updated"


def tombstone(session: Session, followup_id: str, *, origin: str = "crm") -> bool:
    changes.lock_writes(session)  # before the row, as in ``save``
    row = session.get(FollowUpRow, followup_id)
    if row is None or row.deleted:
        return False
    row.deleted = True
    row.updated_at = utcnow()
    changes.record(
        session, followup_id=followup_id, owner=row.owner, action="deleted",
        before=dict(row.document), after=None, content_hash=None, origin=origin,
    )  # fmt: skip
    return True


def purge(session: Session, followup_id: str) -> None:
    """Remove a follow-up for good (a tombstone whose calendar copies are all gone)."""
    row = session.get(FollowUpRow, followup_id)
    if row is not None:
        session.delete(row)


def crm_entries(session: Session, ids: Sequence[str] | None = None) -> dict[str, CrmEntry]:
    query = select(
        FollowUpRow.id, FollowUpRow.content_hash, FollowUpRow.deleted, FollowUpRow.updated_at
    )
    if ids is not None:
        query = query.where(FollowUpRow.id.in_(ids))
    return {
        row.id: CrmEntry(row.id, row.content_hash, row.deleted, as_utc(row.updated_at))
        for row in session.execute(query)
    }


def load_documents(
    session: Session, ids: Iterable[str], *, errors: dict[str, str] | None = None
) -> dict[str, FollowUp]:
    """The stored documents of ``ids``.

    With ``errors``, a document that no longer validates (stored by an older version, or
    edited in the database) is reported there by id instead of failing every other one.
    """
    wanted = list(ids)
    result: dict[str, FollowUp] = {}
    for chunk_start in range(0, len(wanted), 500):
        chunk = wanted[chunk_start : chunk_start + 500]
        for row in session.scalars(select(FollowUpRow).where(FollowUpRow.id.in_(chunk))):
            try:
                result[row.id] = load_followup(row.document)
            except MappingError as exc:
                if errors is None:
                    raise
                errors[row.id] = str(exc)
    return result


# --- reads for the API and the dialog ------------------------------------------------------------


def live_row(session: Session, followup_id: str) -> FollowUpRow | None:
    """The stored row of a follow-up that is not deleted: its document and version (hash).

    The API compares the hash with If-Match and answers the document; None when the
    follow-up is unknown or deleted, which the API treats alike.
    """
    row = session.get(FollowUpRow, followup_id)
    return row if row is not None and not row.deleted else None


def live_rows_after(
    session: Session,
    after: str | None,
    *,
    owner: str | None,
    updated_since: dt.datetime | None,
    limit: int,
) -> list[FollowUpRow]:
    """Up to ``limit`` live rows by id after ``after``: keyset paging, stable under writes."""
    query = select(FollowUpRow).where(FollowUpRow.deleted.is_(False))
    if after is not None:
        query = query.where(FollowUpRow.id > after)
    if owner is not None:
        query = query.where(FollowUpRow.owner == owner)
    if updated_since is not None:
        query = query.where(FollowUpRow.updated_at >= updated_since)
    return list(session.scalars(query.order_by(FollowUpRow.id).limit(limit)))


def owner_documents(session: Session, owner: str, *, except_id: str) -> list[FollowUp]:
    """The owner's live follow-ups but one: the dialog's conflicts within the CRM."""
    rows = session.scalars(
        select(FollowUpRow).where(
            FollowUpRow.owner == owner,
            FollowUpRow.deleted.is_(False),
            FollowUpRow.id != except_id,
        )
    )
    return [load_followup(row.document) for row in rows]


# --- reads for the daemon's CRM poll -------------------------------------------------------------


def last_write_at(session: Session) -> dt.datetime | None:
    """When the newest follow-up write happened (a poller starts watching from there)."""
    value = session.scalar(select(func.max(FollowUpRow.updated_at)))
    return as_utc(value) if value is not None else None


@dataclass(frozen=True)
class WrittenFollowUp:
    """A follow-up some write touched: what decides which accounts it belongs to."""

    id: str
    owner: str | None
    kind: str
    origin_account: str | None
    updated_at: dt.datetime


def written_since(session: Session, since: dt.datetime | None) -> list[WrittenFollowUp]:
    """Follow-ups (tombstones too) written after ``since``; all of them for None."""
    query = select(
        FollowUpRow.id,
        FollowUpRow.owner,
        FollowUpRow.kind,
        FollowUpRow.origin_account,
        FollowUpRow.updated_at,
    )
    if since is not None:
        query = query.where(FollowUpRow.updated_at > since)
    return [
        WrittenFollowUp(row.id, row.owner, row.kind, row.origin_account, row.updated_at)
        for row in session.execute(query)
    ]
