"""The invitation tables and every query on them: what participants were told, outbox, replies.

``invitation_state``    per account and follow-up, the SEQUENCE and the document as the
                        participants last heard of it (``sync.invitations.record``).
``invitations``         one iTIP message per recipient: the intent, the whole message, and
                        where it stands (pending → sending → sent, or failed / uncertain;
                        ``sync.invitations.send``).
``invitation_replies``  every REPLY read, applied or not (``sync.invitations.replies``).

The SQL lives here, below the invitations wing, so changing one of these tables touches this
module and its migration only. Functions take the caller's ``Session``: the caller owns the
transaction, because the invitations' crash safety is in where each commit falls (the
messages and the state in one; ``sending`` committed before SMTP, ``sent`` after).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

from sqlalchemy import (
    JSON,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.state.rows import Base, DatabaseLike, FollowUpRow, SyncItem, utcnow

# --- tables --------------------------------------------------------------------------------------


class InvitationState(Base):
    """What the participants of one follow-up were last told, per account."""

    __tablename__ = "invitation_state"
    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    followup_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    uid: Mapped[str] = mapped_column(String(512), index=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    #: The document as the participants know it; None once the series is cancelled.
    document: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Invitation(Base):
    """One iTIP message to one recipient: the intent, the bytes, and whether it went out."""

    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint(
            "account",
            "uid",
            "sequence",
            "method",
            "recipient",
            "recurrence_id",
            name="uq_invitation",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(255), index=True)
    followup_id: Mapped[str] = mapped_column(String(255), index=True)
    uid: Mapped[str] = mapped_column(String(512))
    sequence: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    #: "" for the whole series, else the occurrence's original start (ISO, local time).
    recurrence_id: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    message_id: Mapped[str] = mapped_column(String(255))
    message: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReplyRecord(Base):
    """Every REPLY read, applied or not, for ``followup-sync invitations`` and the audit."""

    __tablename__ = "invitation_replies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_key: Mapped[str] = mapped_column(String(512), index=True)
    uid: Mapped[str] = mapped_column(String(512))
    followup_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attendee: Mapped[str] = mapped_column(String(320))
    partstat: Mapped[str] = mapped_column(String(32))
    recurrence_id: Mapped[str] = mapped_column(String(64), default="")
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(32))  # applied | ignored | held | rejected
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The mail's From address, and the authentication results the verdict rested on.
    sender: Mapped[str | None] = mapped_column(String(320), nullable=True)
    evidence: Mapped[str | None] = mapped_column(Text, nullable=True)


TABLES = [InvitationState.__table__, Invitation.__table__, ReplyRecord.__table__]


def ensure_tables(db: DatabaseLike) -> None:
    """Create this module's tables if missing (they are new; older databases lack them)."""
    Base.metadata.create_all(db.engine, tables=TABLES)  # type: ignore[arg-type]


# --- what participants were told (recording) -----------------------------------------------------


def candidates(session: Session, account: str) -> list[str]:
    """Follow-ups of this account that have participants, or whose participants were told.

    One indexed query on ``followups.has_participants`` (kept by an ORM hook whenever a
    document is written): no document is loaded to find out.
    """
    ids = set(
        session.scalars(
            select(SyncItem.followup_id)
            .join(FollowUpRow, FollowUpRow.id == SyncItem.followup_id)
            .where(
                SyncItem.account == account,
                SyncItem.detached.is_(False),
                FollowUpRow.has_participants.is_(True),
            )
        )
    )
    ids |= set(
        session.scalars(
            select(InvitationState.followup_id).where(
                InvitationState.account == account, InvitationState.document.is_not(None)
            )
        )
    )
    return sorted(ids)


def current_and_state(
    session: Session, account: str, followup_id: str
) -> tuple[FollowUp | None, InvitationState | None]:
    """The follow-up as it is now (None: deleted) and what its participants were last told.

    (None, None) when it lives but is not on this account's calendar (not synced yet, or
    detached): there is nothing to tell its participants from here.
    """
    state = session.get(InvitationState, (account, followup_id))
    row = session.get(FollowUpRow, followup_id)
    item = session.get(SyncItem, (account, followup_id))
    current = None
    if row is not None and not row.deleted:
        if item is None or item.detached:
            return None, None
        current = load_followup(row.document)
    return current, state


def remember(
    session: Session,
    account: str,
    followup_id: str,
    current: FollowUp | None,
    state: InvitationState | None,
    sequence: int,
) -> None:
    """Move the state on to what the participants now know (in the messages' transaction)."""
    if state is None:
        if current is None:
            return
        state = InvitationState(account=account, followup_id=followup_id, uid=current.effective_uid)
        session.add(state)
    state.sequence = sequence
    state.document = (
        current.to_json_dict() if current is not None and current.participants else None
    )
    state.updated_at = utcnow()


def is_recorded(
    session: Session, account: str, uid: str, sequence: int, method: str, recipient: str, rid: str
) -> bool:
    """Whether this intent (the unique key) already has its message: recorded once, ever."""
    return (
        session.scalar(
            select(Invitation.id).where(
                Invitation.account == account,
                Invitation.uid == uid,
                Invitation.sequence == sequence,
                Invitation.method == method,
                Invitation.recipient == recipient,
                Invitation.recurrence_id == rid,
            )
        )
        is not None
    )


def add_pending(
    session: Session,
    *,
    account: str,
    followup_id: str,
    uid: str,
    sequence: int,
    method: str,
    recipient: str,
    recurrence_id: str,
    message_id: str,
    message: bytes,
) -> None:
    """Store one rendered message as ``pending``: the outbox sends it later."""
    session.add(
        Invitation(
            account=account,
            followup_id=followup_id,
            uid=uid,
            sequence=sequence,
            method=method,
            recipient=recipient,
            recurrence_id=recurrence_id,
            status="pending",
            message_id=message_id,
            message=message,
        )
    )


# --- the outbox (sending) ------------------------------------------------------------------------


def mark_interrupted(session: Session, account: str | None) -> list[int]:
    """Rows left in ``sending`` become ``uncertain``: at most once, never sent again by itself."""
    query = select(Invitation).where(Invitation.status == "sending")
    if account is not None:
        query = query.where(Invitation.account == account)
    marked: list[int] = []
    for stuck in session.scalars(query):
        stuck.status = "uncertain"
        stuck.last_error = (
            "the process stopped while this message was being sent; not sent again by itself"
        )
        marked.append(stuck.id)
    return marked


def ids_to_send(session: Session, account: str | None, only: Iterable[int] | None) -> list[int]:
    """Pending and failed rows in order; ``only`` takes uncertain ones too (a resend on purpose)."""
    id_query = select(Invitation.id).order_by(Invitation.id)
    if only is not None:
        id_query = id_query.where(
            Invitation.id.in_(list(only)),
            Invitation.status.in_(["pending", "failed", "uncertain"]),
        )
    else:
        id_query = id_query.where(Invitation.status.in_(["pending", "failed"]))
    if account is not None:
        id_query = id_query.where(Invitation.account == account)
    return list(session.scalars(id_query))


def start_sending(session: Session, row_id: int) -> tuple[bytes, str]:
    """Mark one row ``sending`` (the caller commits before SMTP); its bytes and recipient."""
    row = session.get(Invitation, row_id)
    assert row is not None
    row.status = "sending"
    row.attempts += 1
    return row.message, row.recipient


def mark_failed(session: Session, row_id: int, error: str) -> None:
    """The SMTP server refused, or could not be reached: tried again next time."""
    row = session.get(Invitation, row_id)
    assert row is not None
    row.status = "failed"
    row.last_error = error


def mark_sent(session: Session, row_id: int) -> None:
    """The SMTP server accepted it: never sent again."""
    row = session.get(Invitation, row_id)
    assert row is not None
    row.status = "sent"
    row.sent_at = utcnow()
    row.last_error = None


def count_unsent(session: Session, account: str) -> int:
    """This account's rows that still need a send: pending, failed, or caught mid-send."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Invitation)
            .where(
                Invitation.account == account,
                Invitation.status.in_(["pending", "failed", "sending"]),
            )
        )
        or 0
    )


def outbox_rows(session: Session) -> Iterator[Invitation]:
    """Every recorded message, newest first."""
    yield from session.scalars(select(Invitation).order_by(Invitation.id.desc()))


# --- replies -------------------------------------------------------------------------------------


def live_followup_by_uid(session: Session, uid: str) -> FollowUp | None:
    """The follow-up a REPLY's UID names, unless it is deleted."""
    row = session.scalar(
        select(FollowUpRow).where(FollowUpRow.uid == uid, FollowUpRow.deleted.is_(False))
    )
    return load_followup(row.document) if row is not None else None


def last_sent_sequence(session: Session, followup_id: str) -> int | None:
    """The highest SEQUENCE the participants were sent (any account), None before the first."""
    return session.scalar(
        select(InvitationState.sequence)
        .where(InvitationState.followup_id == followup_id)
        .order_by(InvitationState.sequence.desc())
    )


def add_reply(session: Session, record: ReplyRecord) -> None:
    """Keep one answer read, whatever became of it (the audit and ``invitations held``)."""
    session.add(record)


def reply_record(session: Session, record_id: int) -> ReplyRecord | None:
    return session.get(ReplyRecord, record_id)


def held_records(session: Session) -> Iterator[ReplyRecord]:
    """Answers waiting for the operator, oldest first."""
    yield from session.scalars(
        select(ReplyRecord).where(ReplyRecord.outcome == "held").order_by(ReplyRecord.id)
    )


def live_documents(session: Session) -> Iterator[tuple[str, dict[str, object]]]:
    """Every follow-up that is not deleted, by id: (id, document) for the answers listing."""
    for row in session.scalars(
        select(FollowUpRow).where(FollowUpRow.deleted.is_(False)).order_by(FollowUpRow.id)
    ):
        yield row.id, row.document
