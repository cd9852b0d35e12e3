"""The service's own tables: the follow-ups and what we know of each calendar.

The floor of the database package: the declarative ``Base`` every table module builds on
(this one, :mod:`sync.state.changes`, :mod:`sync.state.outbox`, :mod:`sync.state.controls`,
the invitations' records), the clock helpers, and the tables of the sync itself. It imports
nothing of ``sync.state`` so that every table module can import it without a cycle;
:mod:`sync.state.tables` lists them all, and :mod:`sync.state.db` opens the database.

``followups``       the CRM side: one row per follow-up, the document as JSON, a content
                    hash, a tombstone flag (a deleted follow-up stays as a tombstone
                    until every account has removed it from its calendar) and whether
                    the document has participants (the invitation step's index).
``sync_items``      per account and follow-up, the last state both sides agreed on: href,
                    ETag, the agreed document (the merge base for conflicts) and the
                    server's bytes (the base our writes patch, so that alarms and X-
                    properties a client added survive).
``collections``     per account: calendar URL, sync token, server kind, last run.
``pending_hrefs``   server items that failed (bad iCalendar, 5xx on fetch): retried on the
                    next pass even when the sync token no longer lists them.
``conflicts``       the losing side of every conflict, for ``followup-sync conflicts``.
``daemon_runs``     one row per pass a daemon process ran (who, when, result).
``meta``            the schema version.
``change_counter``  one number moved by every committed write to ``followups``,
                    ``sync_items`` or ``pending_writes``: an idle pass compares it with
                    the value it saw instead of reading every row (``revision_of``).
``alembic_version`` the migration revision (``followup-sync db upgrade``, sync/state/migrations).

Every write the sync worker makes to the server has its intent recorded before it is
sent (``PendingWrite``) and is recorded after it, in batches (``sync.engine.apply``): a crash
loses at most the records of one batch, and the next pass recognises those writes as
its own by the intents.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Protocol

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Integer,
    LargeBinary,
    Select,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, ORMExecuteState, Session, mapped_column

SCHEMA_VERSION = 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite gives timestamps back without their zone; every one we store is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class DatabaseLike(Protocol):
    """What the modules below ``sync.state.db`` need of a database: its URL and its engine.

    ``sync.state.db.Database`` is one. Naming this instead of it keeps the schema and the
    table modules below the module that opens the database, so it can call them.
    """

    url: str
    engine: Engine


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: DateTime(timezone=True)}


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class FollowUpRow(Base):
    __tablename__ = "followups"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    uid: Mapped[str] = mapped_column(String(512), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(255), index=True, nullable=True)
    document: Mapped[dict[str, object]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: Which account's calendar a follow-up made in a calendar client came from.
    origin_account: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: The document lists participants (set on every write, ``_participants_flag``): the
    #: invitation step finds its follow-ups with this instead of loading every document.
    has_participants: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )


@event.listens_for(FollowUpRow, "before_insert")
@event.listens_for(FollowUpRow, "before_update")
def _participants_flag(_mapper: object, _connection: object, row: FollowUpRow) -> None:
    """Keep ``has_participants`` in step with the document, whoever writes it through the ORM."""
    row.has_participants = bool((row.document or {}).get("participants"))


class SyncItem(Base):
    __tablename__ = "sync_items"
    __table_args__ = (UniqueConstraint("account", "href", name="uq_sync_items_href"),)
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    followup_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    uid: Mapped[str] = mapped_column(String(512))
    href: Mapped[str] = mapped_column(String(1024))
    etag: Mapped[str] = mapped_column(String(255))
    synced_hash: Mapped[str] = mapped_column(String(64))
    synced_document: Mapped[dict[str, object]] = mapped_column(JSON)
    server_data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The calendar copy was deleted and ``on_server_delete = "detach"``: the follow-up
    #: stays in the CRM and is no longer synced to this account.
    detached: Mapped[bool] = mapped_column(Boolean, default=False)


class CollectionState(Base):
    __tablename__ = "collections"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    calendar_url: Mapped[str] = mapped_column(String(1024))
    sync_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    server_kind: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_full_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_result: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Written by the daemon: when it will next run this account (shown by ``status``).
    next_run_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    #: Written by the daemon: failed passes in a row; drives the back-off.
    consecutive_failures: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The collection's getlastmodified when ``sync_token`` was taken, on a server whose
    #: value covers every member (``Capabilities.lastmodified_covers_members``). Kept only
    #: if read at least two seconds after that time, so that any later change must move
    #: it; None makes the next pass ask with the token.
    last_modified_seen: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    #: ``change_counter`` read at the start of the last pass that found nothing to do, and
    #: the account settings it ran with (``crm_scope_seen``, a digest). While both are
    #: unchanged and the server lists no change, the next pass has nothing to do either
    #: and reads no row. None: the next pass reads everything.
    crm_revision_seen: Mapped[int | None] = mapped_column(Integer, nullable=True)
    crm_scope_seen: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ChangeCounter(Base):
    """A number that every committed write to ``followups``, ``sync_items`` or
    ``pending_writes`` moves, through the ORM or as a bulk statement on the session.

    Why a counter and not ``max(updated_at)``: a timestamp is taken at flush time, so on
    PostgreSQL a transaction that commits later with an earlier stamp (or a process whose
    clock lags) would not move the maximum, and a pass would miss its change. The counter
    is incremented as the last statement before COMMIT (``_bump_change_counter``), so its
    new value becomes visible exactly with the data; the row lock is taken last and held
    only for the commit, so writers queue briefly but never deadlock on it.
    """

    __tablename__ = "change_counter"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


_CRM_COUNTER = "crm"


@event.listens_for(Session, "before_flush")
def _note_watched_writes(session: Session, _context: object, _instances: object) -> None:
    """Remember that this transaction writes a follow-up or a sync record."""
    for row in (*session.new, *session.dirty, *session.deleted):
        if isinstance(row, FollowUpRow | SyncItem | PendingWrite):
            session.info["crm_changed"] = True
            return


#: The tables whose writes move the change counter (``followups``, ``sync_items``,
#: ``pending_writes``).
_WATCHED_TABLES = frozenset({"followups", "sync_items", "pending_writes"})


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_watched_writes(execute_state: ORMExecuteState) -> None:
    """Remember a bulk ``session.execute(insert/update/delete …)`` on a watched table too.

    These never reach ``before_flush``: without this, an intent recorded in bulk
    (``sync.state.intents.add_intents``) or a sync record deleted by a statement would
    not move the counter, and an idle pass elsewhere could skip a change it must see.
    """
    if not (execute_state.is_insert or execute_state.is_update or execute_state.is_delete):
        return
    table = getattr(execute_state.statement, "table", None)
    if getattr(table, "name", None) in _WATCHED_TABLES:
        execute_state.session.info["crm_changed"] = True


@event.listens_for(Session, "before_commit")
def _bump_change_counter(session: Session) -> None:
    """Move the change counter in the transaction that commits a watched write."""
    session.flush()  # the commit's own last flush may hold the first watched write
    if session.info.pop("crm_changed", False):
        bump_revision(session)


@event.listens_for(Session, "after_rollback")
def _forget_watched_writes(session: Session) -> None:
    session.info.pop("crm_changed", None)


def bump_revision(session: Session) -> None:
    """Add one to the change counter in the caller's transaction (creating it if absent)."""
    moved = session.execute(
        update(ChangeCounter)
        .where(ChangeCounter.name == _CRM_COUNTER)
        .values(value=ChangeCounter.value + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) == 0:
        session.execute(insert(ChangeCounter).values(name=_CRM_COUNTER, value=1))


def revision_of(session: Session) -> int | None:
    """The change counter now; None before the first watched write."""
    value = session.scalar(revision_query())
    return int(value) if value is not None else None


def revision_query() -> Select[int]:
    """The change counter's value, as a query another statement can carry as a column."""
    return select(ChangeCounter.value).where(ChangeCounter.name == _CRM_COUNTER)


class DaemonRun(Base):
    """One pass run by a daemon process: who ran it, from when to when, with what result.

    Written when the account lock is taken and again before it is released, so the rows
    prove (or disprove) that no two processes synced one account at once; ``status``
    and operators read it to see which process is doing what.
    """

    __tablename__ = "daemon_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(255), index=True)
    worker: Mapped[str] = mapped_column(String(255))  # host:pid
    mode: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)


class PendingHref(Base):
    """A resource that could not be read: retried on a back-off (``sync.engine.unreadable``)."""

    __tablename__ = "pending_hrefs"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    href: Mapped[str] = mapped_column(String(1024), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    last_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The ETag listed when it failed: a new ETag (the client fixed it) is read at once.
    etag: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: Not fetched again before this moment unless its ETag moves (None: next pass).
    retry_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class PendingWrite(Base):
    """A server write we are about to make, recorded before its PUT is sent.

    The state records a write only after the server took it (``sync.engine.apply``), in
    batches; a crash in between used to leave our own write looking like a calendar
    edit. With the intent recorded first, the next pass knows what the resource holds
    if the write landed and uses that as the merge base (``sync.engine.plan``, "Pending
    writes"). Removed in the transaction that records the write.
    """

    __tablename__ = "pending_writes"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    followup_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    href: Mapped[str] = mapped_column(String(1024))
    #: The ETag the write is conditional on (If-Match); None for a create (If-None-Match: *).
    if_match: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: The follow-up the write puts on the server (its hash is computed when it is read:
    #: rarely, and not in the push's hot path).
    document: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ConflictRecord(Base):
    __tablename__ = "conflicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(255), index=True)
    followup_id: Mapped[str] = mapped_column(String(255), index=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    part: Mapped[str] = mapped_column(String(255))
    policy: Mapped[str] = mapped_column(String(32))
    winner: Mapped[str] = mapped_column(String(16))
    kept_value: Mapped[object] = mapped_column(JSON, nullable=True)
    lost_value: Mapped[object] = mapped_column(JSON, nullable=True)
