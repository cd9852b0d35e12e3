"""The change feed: every change to a follow-up, in commit order, for CRM integrations.

A CRM that pushes follow-ups also has to learn what came back from the calendars, and
from invitation answers, without downloading everything and diffing. Every write of
``sync.state.followups`` (``save``, ``tombstone``) calls ``record`` in the caller's
transaction, so a change is in the feed exactly when it is in the store: a crash
cannot commit one without the other.

Order. Entries are numbered from one counter row (``change_feed_head``) that every
recording transaction updates. The row lock (PostgreSQL) or the database write lock
(SQLite) is held until commit, so numbers are handed out in commit order: a reader that
has seen entry N never later finds an entry below N appear (which a plain sequence or
autoincrement would allow under concurrent transactions). The same lock makes
conditional writes (``If-Match``) safe: ``lock_writes`` takes it before the version
is compared, so no calendar pull can slip in between the check and the write.

Retention. ``prune`` drops entries older than the retention and remembers the highest
number dropped (``pruned_through``); a cursor below it answers 410 (``CursorExpired``):
the client lost changes and must list the follow-ups again.

Cursors are opaque to clients (base64 of the entry number and a version tag), so the
numbering may change later without breaking anyone who follows the contract.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    DDL,
    JSON,
    DateTime,
    Integer,
    String,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp, FollowUpStatus
from mappings.occurrences import Occurrence, occurrences
from sync.state.rows import Base, as_utc, utcnow

Origin = Literal["calendar", "crm", "invitation"]
ORIGINS: tuple[str, ...] = ("calendar", "crm", "invitation")
Action = Literal["created", "updated", "deleted"]

HEAD = "changes"
#: Occurrence lists in one entry are cut here (an open-ended series rewritten whole).
MAX_LISTED_OCCURRENCES = 200
_CURSOR_PREFIX = "c1:"


class ChangeRow(Base):
    """One change to one follow-up, as the feed serves it."""

    __tablename__ = "change_feed"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    origin: Mapped[str] = mapped_column(String(16))
    followup_id: Mapped[str] = mapped_column(String(255), index=True)
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    action: Mapped[str] = mapped_column(String(16))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    etag: Mapped[str | None] = mapped_column(String(80), nullable=True)


class FeedHead(Base):
    """The feed's counter and how far retention has removed entries (one row)."""

    __tablename__ = "change_feed_head"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    pruned_through: Mapped[int] = mapped_column(Integer, default=0)


# The counter row exists from the moment the table does (create_all or the migration), so
# two first writers never race to insert it.
event.listen(
    FeedHead.__table__,
    "after_create",
    DDL(f"INSERT INTO change_feed_head (name, last_seq, pruned_through) VALUES ('{HEAD}', 0, 0)"),  # type: ignore[no-untyped-call]
)


class CursorInvalid(ValueError):
    """Not a cursor this service handed out."""


class CursorExpired(Exception):
    """The cursor points before what retention kept: the client must resync."""

    def __init__(self, pruned_through: int) -> None:
        super().__init__("the cursor is older than the feed's retention; list the follow-ups again")
        self.pruned_through = pruned_through


def etag_of(content_hash: str) -> str:
    """A strong HTTP entity tag (quoted) for a follow-up's content hash."""
    return f'"{content_hash}"'


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorInvalid(f"{cursor!r} is not a cursor of this feed") from None
    if not text.startswith(_CURSOR_PREFIX) or not text[len(_CURSOR_PREFIX) :].isdigit():
        raise CursorInvalid(f"{cursor!r} is not a cursor of this feed")
    return int(text[len(_CURSOR_PREFIX) :])


# --- writing ------------------------------------------------------------------------------------


def lock_writes(session: Session) -> int:
    """Take the feed's write lock in this transaction; returns the last entry number.

    Held until commit: follow-up writers queue behind it, so a version read after it
    stays current until this transaction ends.
    """
    last = session.execute(
        update(FeedHead)
        .where(FeedHead.name == HEAD)
        .values(last_seq=FeedHead.last_seq)
        .returning(FeedHead.last_seq)
    ).scalar()
    if last is None:
        session.add(FeedHead(name=HEAD, last_seq=0, pruned_through=0))
        session.flush()
        return 0
    return int(last)


def _next_seq(session: Session) -> int:
    seq = session.execute(
        update(FeedHead)
        .where(FeedHead.name == HEAD)
        .values(last_seq=FeedHead.last_seq + 1)
        .returning(FeedHead.last_seq)
    ).scalar()
    if seq is None:
        session.add(FeedHead(name=HEAD, last_seq=1, pruned_through=0))
        session.flush()
        return 1
    return int(seq)


def record(
    session: Session,
    *,
    followup_id: str,
    owner: str | None,
    action: Action,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    content_hash: str | None,
    origin: str,
    extra: Mapping[str, Any] | None = None,
) -> ChangeRow:
    """Append one entry in the caller's transaction (``sync.state.followups`` calls this)."""
    if origin not in ORIGINS:
        raise ValueError(f"unknown change origin {origin!r}")
    described = describe(before, after)
    if extra:
        described.update(extra)
    row = ChangeRow(
        seq=_next_seq(session),
        at=utcnow(),
        origin=origin,
        followup_id=followup_id,
        owner=owner,
        action=action,
        changes=described,
        etag=etag_of(content_hash) if content_hash is not None else None,
    )
    session.add(row)
    return row


def describe(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    """What changed between two documents: top-level fields and occurrences.

    ``exceptions`` is not listed as a field: its meaning is in the occurrences (moved,
    cancelled, completed, added, changed), keyed by where the series put each one.
    ``completed: true``: the follow-up itself became completed (a task, or a whole series).
    """
    old, new = dict(before or {}), dict(after or {})
    fields = sorted(
        key for key in set(old) | set(new) if key != "exceptions" and old.get(key) != new.get(key)
    )
    result: dict[str, Any] = {"fields": fields}
    if before is None or after is None:
        return result
    if new.get("status") == FollowUpStatus.completed != old.get("status"):
        result["completed"] = True  # the whole follow-up: a task, or every occurrence
    timing = {"start", "end", "timezone", "all_day", "recurrence", "ical_recurrence"}
    if old.get("exceptions") != new.get("exceptions") or timing & set(fields):
        moved_etc = _occurrence_changes(old, new)
        if moved_etc:
            result["occurrences"] = moved_etc
    return result


def _occurrence_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    try:
        old_followup, new_followup = load_followup(old), load_followup(new)
        before, after = _by_original(old_followup), _by_original(new_followup)
    except (MappingError, ValueError, OverflowError):
        return {}
    # A series completed as a whole is ``changes.completed``, not a list of every date.
    series_done = old_followup.status == FollowUpStatus.completed
    done_before = set(before) if series_done else _completed_by_themselves(old_followup)
    done_after = _completed_by_themselves(new_followup)
    out: dict[str, list[str]] = {
        "moved": [],
        "cancelled": [],
        "completed": [],
        "added": [],
        "changed": [],
    }
    for key, occ in after.items():
        if key in done_after and key not in done_before and not occ.cancelled:
            out["completed"].append(key)
        was = before.get(key)
        if was is None or was.cancelled:
            if not occ.cancelled:
                out["added"].append(key)
        elif occ.cancelled:
            out["cancelled"].append(key)
        elif (occ.start, occ.end) != (was.start, was.end):
            out["moved"].append(key)
        elif (occ.title, occ.description, occ.location) != (
            was.title,
            was.description,
            was.location,
        ):
            out["changed"].append(key)
    for key, was in before.items():
        if key not in after and not was.cancelled:
            out["cancelled"].append(key)
    return {k: sorted(v)[:MAX_LISTED_OCCURRENCES] for k, v in out.items() if v}


def _completed_by_themselves(followup: FollowUp) -> set[str]:
    """Keys of the occurrences with their own status ``completed``.

    A task occurrence ticked off in a client is an exception with its own ``status``
    (STATUS:COMPLETED on the VTODO's override); one without it has the series' status.
    """
    return {
        _moment_key(_aware(e.original_start, followup.zone))
        for e in followup.exceptions
        if e.status == FollowUpStatus.completed
    }


def _aware(value: Any, zone: Any) -> Any:
    """An exception's key as ``occurrences`` gives it: local time with the series' zone."""
    return value.replace(tzinfo=zone) if isinstance(value, dt.datetime) else value


def _by_original(followup: FollowUp) -> dict[str, Occurrence]:
    return {_moment_key(o.original_start): o for o in occurrences(followup)}


def _moment_key(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedPage:
    entries: list[ChangeRow]
    #: Where to continue from: the last entry's number, or the cursor given if none.
    next_seq: int
    more: bool


def head(session: Session) -> FeedHead:
    row = session.get(FeedHead, HEAD)
    return row if row is not None else FeedHead(name=HEAD, last_seq=0, pruned_through=0)


def read(
    session: Session, since: int | None, *, limit: int, followup_id: str | None = None
) -> FeedPage:
    """Entries after ``since`` (None: from the oldest kept), at most ``limit``."""
    state = head(session)
    start = state.pruned_through if since is None else since
    if since is not None and since < state.pruned_through:
        raise CursorExpired(state.pruned_through)
    query = select(ChangeRow).where(ChangeRow.seq > start).order_by(ChangeRow.seq)
    if followup_id is not None:
        query = query.where(ChangeRow.followup_id == followup_id)
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return FeedPage(rows, rows[-1].seq if rows else start, more)


def entry_json(row: ChangeRow) -> dict[str, Any]:
    """The wire form of one entry (the feed and webhook bodies share it)."""
    return {
        "cursor": encode_cursor(row.seq),
        "at": as_utc(row.at).isoformat(),
        "origin": row.origin,
        "followup_id": row.followup_id,
        "owner": row.owner,
        "action": row.action,
        "changes": row.changes,
        "etag": row.etag,
    }


def prune(session: Session, retention: dt.timedelta, *, keep_after: int | None = None) -> int:
    """Drop entries older than ``retention`` (and, if given, not after ``keep_after``).

    ``keep_after``: entries above it are still owed to a webhook subscription and stay.
    Returns how many were dropped.
    """
    lock_writes(session)
    cutoff = utcnow() - retention
    query = select(func.max(ChangeRow.seq)).where(ChangeRow.at < cutoff)
    if keep_after is not None:
        query = query.where(ChangeRow.seq <= keep_after)
    through = session.scalar(query)
    if through is None:
        return 0
    result = session.execute(delete(ChangeRow).where(ChangeRow.seq <= through))
    state = session.get(FeedHead, HEAD)
    if state is not None and through > state.pruned_through:
        state.pruned_through = through
    return int(getattr(result, "rowcount", 0) or 0)
