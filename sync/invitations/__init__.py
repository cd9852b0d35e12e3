"""Invitations to participants outside the CRM: iTIP by email (iMIP, RFC 6047) and replies.

Three steps, each safe to repeat and to interrupt:

1. **Record** (``record_due``, called by the sync pass after it applied its changes):
   per follow-up with participants, compare the CRM document with the one the
   participants were last told about (``invitation_state``). When an invitation is due
   (created, significant change, occurrence cancelled, deleted, participant added or
   removed), the messages are rendered and stored as ``pending`` rows in
   ``invitations`` in the SAME transaction that moves ``invitation_state`` on. So
   either both happen or neither: a crash before the commit leaves the state behind
   and the next pass decides the same again; after it, the rows are there to be sent.
   Title and description edits send nothing (SuperOffice notifies invitees of time,
   date and location changes only), and neither do the participants' own answers.
   A reschedule (a REQUEST with a higher SEQUENCE) asks the participants again: their
   answers go back to needs-action, for the series or only for the occurrences that
   moved, on the follow-up (saved in the same transaction) and in the REQUEST.
2. **Send** (``send_pending``): one message per recipient, in a fixed order. Each row
   goes ``pending`` → ``sending`` (committed) → SMTP → ``sent`` (committed). The
   unique key (account, uid, sequence, method, recipient, recurrence_id) means an
   intent is recorded once however often step 1 runs, and a ``sent`` row is never sent
   again.

   The crash window is between the SMTP server accepting a message and the ``sent``
   commit. A row found in ``sending`` at start is in that window or just before it:
   nobody can tell which (SMTP has no "did you get Message-ID X?"). We choose
   at-most-once: such a row becomes ``uncertain`` and is not sent again by itself, so a
   crash never makes an attendee receive an invitation twice (the failure users of
   other sync tools complain about most). ``followup-sync invitations resend ID``
   sends an uncertain row again on purpose; because the message is stored whole at
   step 1, with a Message-ID derived from the key
   (``<itip-<sha256(key)>@followup-sync>``) and the same DTSTAMP, that resend is the
   identical message: mail systems that de-duplicate by Message-ID drop it, and
   calendar clients see the same UID/SEQUENCE/DTSTAMP and change nothing.
3. **Replies** (``fetch_replies``): iTIP REPLY messages read from an IMAP folder update
   the participant's status on the follow-up (the series, or one occurrence for a
   REPLY with RECURRENCE-ID). Unknown UID, an attendee who is not a participant, an
   occurrence the series does not have, or a SEQUENCE lower than the one last sent:
   reported and ignored. An answer the mail cannot be shown to come from (``From`` is
   not the attendee, or the receiving server's Authentication-Results fail it:
   ``sync.invitations.reply_trust``) is held until the operator accepts or rejects it. Handled
   messages are flagged \\Seen and skipped next time.

Who schedules (``Account.scheduling``): ``email`` records and sends as above, and our
resource marks every ATTENDEE ``SCHEDULE-AGENT=CLIENT`` so a scheduling server does not
send a second copy; ``server`` records nothing and leaves the ATTENDEEs unmarked, so an
RFC 6638 server delivers (and PARTSTAT changes come back with the normal pull);
``none`` sends nothing anywhere; ``auto`` asks the server once (schedule-outbox-URL
and a non-empty calendar-user-address-set on the principal) and picks ``server`` or
``email``. Never both. One refinement (``channel``): a server that schedules only whole
series (DAViCal, ``SERIES_ONLY_SCHEDULING``) gets no say over a follow-up with
something per occurrence; that follow-up is marked CLIENT and goes by email.

Who sends: ``followup-sync invitations send``, or the daemon right after each pass of
the account (``sync.service.daemon``), which also reads replies every ``poll_seconds``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
import hashlib
import imaplib
import logging
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, Literal

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

from mappings import describe, itip
from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp, Organizer, ParticipantStatus
from mappings.moments import Moment
from mappings.occurrences import occurrences
from sync.config import Account
from sync.errors import ConfigError, FollowupSyncError
from sync.invitations import reply_trust
from sync.mail_config import MailSettings
from sync.state import followups as crm_store
from sync.state.db import Base, Database, FollowUpRow, SyncItem, as_utc, utcnow

log = logging.getLogger(__name__)

Mode = Literal["server", "email", "none"]


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


_TABLES = [InvitationState.__table__, Invitation.__table__, ReplyRecord.__table__]


def ensure_tables(db: Database) -> None:
    """Create this module's tables if missing (they are new; older databases lack them)."""
    Base.metadata.create_all(db.engine, tables=_TABLES)  # type: ignore[arg-type]


# --- who schedules -------------------------------------------------------------------------------

_PROBED: dict[str, bool] = {}

#: Servers whose implicit scheduling carries only the series itself to an attendee who
#: already has the event. DAViCal 1.1.12 copies DTSTART, DTEND, DURATION, SUMMARY,
#: LOCATION, DESCRIPTION, STATUS, SEQUENCE and the ATTENDEEs of the first component into
#: the attendee's copy, and nothing of RRULE, EXDATE or the overrides; and a resource
#: whose override lists an attendee of the server that the master lists too is answered
#: with 500 (DAViCal inserts that attendee's inbox copy twice), pass after pass.
#: tests/integration/test_server_scheduling.py shows both.
SERIES_ONLY_SCHEDULING = frozenset({"davical"})


def server_schedules(calendar: Any) -> bool:
    """Whether the CalDAV server delivers invitations itself (RFC 6638), asked once per URL.

    The principal must have a schedule-outbox-URL and a calendar-user-address-set with a
    mailto: address: Xandikos advertises an outbox with an empty address set and
    delivers nothing, DAViCal has both and delivers (libraries-and-servers.md §2).
    """
    url = str(getattr(calendar, "url", ""))
    if url in _PROBED:
        return _PROBED[url]
    result = False
    logging.disable(logging.ERROR)  # caldav logs a failed principal lookup as an error
    try:
        client = calendar._client  # the caldav DAVClient DavCalendar wraps
        principal = client.principal()
        principal.schedule_outbox()
        addresses = principal.calendar_user_address_set()
        result = any(str(a).lower().startswith("mailto:") for a in addresses or [])
    except Exception as exc:
        log.debug("scheduling probe of %s: %s", url, exc)
    finally:
        logging.disable(logging.NOTSET)
    _PROBED[url] = result
    return result


def scheduling_mode(account: Account, calendar: Any | None) -> Mode:
    """Who sends this account's invitations; ``auto`` probes the server (once)."""
    configured = account.scheduling
    if configured == "auto":
        return "server" if calendar is not None and server_schedules(calendar) else "email"
    return configured


def _series_only(calendar: Any | None) -> bool:
    kind = getattr(getattr(calendar, "capabilities", None), "kind", None)
    return kind in SERIES_ONLY_SCHEDULING


def _per_occurrence(followup: FollowUp) -> bool:
    """Something about single occurrences: one moved, changed or cancelled, or answered alone."""
    return bool(followup.exceptions) or any(p.occurrence_status for p in followup.participants)


def channel(account: Account, calendar: Any | None, followup: FollowUp) -> Mode:
    """Who tells this follow-up's participants: the account's mode, with one exception.

    On a server that schedules only whole series (``SERIES_ONLY_SCHEDULING``), a series
    with something per occurrence goes by email: the server would not deliver it (or
    would refuse the write), so its ATTENDEEs are marked SCHEDULE-AGENT=CLIENT and we
    send. Each message still goes one way only: the server stays silent for a resource
    whose attendees say CLIENT, updates and its deletion included.
    """
    mode = scheduling_mode(account, calendar)
    if mode == "server" and _series_only(calendar) and _per_occurrence(followup):
        return "email"
    return mode


def schedule_agent_for(account: Account, calendar: Any | None) -> Callable[[FollowUp], str | None]:
    """What ``mappings.resource.render`` marks ATTENDEEs with for this account.

    Evaluated per document and only for follow-ups with participants, so an account
    without invitations never pays for the probe.
    """

    def agent(followup: FollowUp) -> str | None:
        if not followup.participants:
            return None
        return None if channel(account, calendar, followup) == "server" else "CLIENT"

    return agent


# --- step 1: record what is due ------------------------------------------------------------------


@dataclass
class RecordReport:
    messages: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # (followup, method, recipient, rid)
    mode: str = "email"
    #: Follow-ups whose participants' answers a reschedule set back to needs-action.
    reset: list[str] = field(default_factory=list)


def record_due(
    account: Account,
    db: Database,
    *,
    calendar: Any | None = None,
    stamp: dt.datetime | None = None,
    sender: Organizer | None = None,
) -> RecordReport:
    """Record the invitations the account's follow-ups are due, each with its state, atomically."""
    ensure_tables(db)
    report = RecordReport()
    with db.session() as session:
        candidates = _candidates(session, account.name)
    if not candidates:
        return report
    account_mode: Mode | None = None
    for followup_id in candidates:
        with db.sessions.begin() as session:
            current, state = _load(session, account.name, followup_id)
            if current is None and state is None:
                continue
            if account_mode is None:
                account_mode = scheduling_mode(account, calendar)
                report.mode = account_mode
            # What the last write marked the attendees with: the document now, or (once
            # deleted) the one the participants were last told about.
            basis = current if current is not None else _doc(state)
            mode = channel(account, calendar, basis) if basis is not None else account_mode
            if mode != "email":
                # The server schedules, or nobody does: keep the state current so that
                # switching to email later does not send a backlog of old news.
                _remember(
                    session,
                    account.name,
                    followup_id,
                    current,
                    state,
                    state.sequence if state else 0,
                )
                continue
            now = stamp or utcnow()
            try:
                planned = _plan(current, state, now, sender, account.invitation_address)
            except (MappingError, ValueError) as exc:
                log.warning("%s: %s: no invitation: %s", account.name, followup_id, exc)
                continue
            if planned is None:
                continue
            sequence, messages = planned.sequence, planned.messages
            if planned.reset is not None:
                # Same transaction as the messages and the state: the follow-up shows the
                # participants as asked again exactly when the REQUEST asking them is due.
                crm_store.save(session, planned.reset, origin="invitation")
                current = planned.reset
                report.reset.append(followup_id)
            for method, recipient, rid, message in messages:
                uid = (current or _doc(state)).effective_uid  # type: ignore[union-attr]
                if _exists(session, account.name, uid, sequence, method, recipient, rid):
                    continue
                session.add(
                    Invitation(
                        account=account.name,
                        followup_id=followup_id,
                        uid=uid,
                        sequence=sequence,
                        method=method,
                        recipient=recipient,
                        recurrence_id=rid,
                        status="pending",
                        message_id=message["Message-ID"],
                        message=bytes(message),
                    )
                )
                report.messages.append((followup_id, method, recipient, rid))
            _remember(session, account.name, followup_id, current, state, sequence)
    return report


def record_after_pass(account: Account, db: Database, calendar: Any | None) -> RecordReport | None:
    """The sync pass's hook: record what is due; a failure here never fails the pass.

    Nothing is lost by swallowing the error: the state did not move, so the next pass
    decides the same invitations again.
    """
    try:
        return record_due(account, db, calendar=calendar)
    except (FollowupSyncError, MappingError, ValueError, OSError) as exc:
        log.warning("%s: invitations not recorded this pass: %s", account.name, exc)
        return None


def _candidates(session: Session, account: str) -> list[str]:
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


def _load(
    session: Session, account: str, followup_id: str
) -> tuple[FollowUp | None, InvitationState | None]:
    """The follow-up as it is now (None: deleted, or no longer on this calendar) and its state."""
    state = session.get(InvitationState, (account, followup_id))
    row = session.get(FollowUpRow, followup_id)
    item = session.get(SyncItem, (account, followup_id))
    current = None
    if row is not None and not row.deleted:
        if item is None or item.detached:
            return None, None  # not on this calendar (yet, or any more): nothing to say
        current = load_followup(row.document)
    if current is not None and not current.participants and state is None:
        return None, None
    return current, state


def _doc(state: InvitationState | None) -> FollowUp | None:
    if state is None or state.document is None:
        return None
    return load_followup(state.document)


def _remember(
    session: Session,
    account: str,
    followup_id: str,
    current: FollowUp | None,
    state: InvitationState | None,
    sequence: int,
) -> None:
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


@dataclass
class Planned:
    """What one follow-up is due: SEQUENCE, messages, and the document with answers reset."""

    sequence: int
    messages: list[tuple[str, str, str, EmailMessage]]
    #: The follow-up with its participants asked again (PARTSTAT back to needs-action),
    #: when a significant change sends a new REQUEST; None when the answers stand.
    reset: FollowUp | None = None


def _plan(
    current: FollowUp | None,
    state: InvitationState | None,
    stamp: dt.datetime,
    sender: Organizer | None,
    reply: str | None = None,
) -> Planned | None:
    """The SEQUENCE and messages due between what participants know and the follow-up now."""
    old = _doc(state)
    sequence = state.sequence if state is not None else 0
    messages: list[tuple[str, str, str, EmailMessage]] = []
    if old is None:
        if current is None or not current.participants:
            return None
        reset = None
        if state is not None:
            sequence += 1  # invited again after a cancellation: a newer message than the CANCEL
            reset = _asked_again(current, None)  # answers to the cancelled series are void
            current = reset or current
        cal = itip.request(_addressed(current, reply), sequence, stamp=stamp, organizer=sender)
        for participant in current.participants:
            messages.append(
                _message(current, itip.REQUEST, participant.email, "", sequence, cal, sender, reply)
            )
        return Planned(sequence, messages, reset)
    if current is None or not current.participants:
        sequence += 1
        cal = itip.cancel(_addressed(old, reply), sequence, stamp=stamp, organizer=sender)
        for participant in old.participants:
            messages.append(
                _message(old, itip.CANCEL, participant.email, "", sequence, cal, sender, reply)
            )
        return Planned(sequence, messages)
    removed = itip.removed_occurrences(old, current)
    gone = [p for p in old.participants if current.participant(p.email) is None]
    added = [p for p in current.participants if old.participant(p.email) is None]
    rescheduled = itip.rescheduled(old, current, ignoring=removed)
    if not (removed or gone or added or rescheduled):
        return Planned(sequence, [])
    if removed or gone or rescheduled:
        sequence += 1
    reset = None
    if rescheduled:
        # A moved meeting needs confirming again (RFC 5546 §2.1.4; what calendar clients
        # do): the series, or just the occurrences that moved, back to needs-action, on
        # the follow-up and in the REQUEST below.
        reset = _asked_again(current, itip.changed_occurrences(old, current, ignoring=removed))
        current = reset or current
    for occurrence in removed:
        cal = itip.cancel(
            _addressed(current, reply),
            sequence,
            stamp=stamp,
            occurrence=occurrence,
            organizer=sender,
        )
        for participant in current.participants:
            if participant in added:
                continue
            messages.append(
                _message(
                    current,
                    itip.CANCEL,
                    participant.email,
                    occurrence.isoformat(),
                    sequence,
                    cal,
                    sender,
                    reply,
                    told=_told(old, occurrence),
                )
            )
    if gone:
        cal = itip.cancel(
            _addressed(old, reply),
            sequence,
            stamp=stamp,
            organizer=sender,
            recipients=[p.email for p in gone],
        )
        for participant in gone:
            messages.append(
                _message(old, itip.CANCEL, participant.email, "", sequence, cal, sender, reply)
            )
    to_request = current.participants if rescheduled else added
    if to_request:
        cal = itip.request(_addressed(current, reply), sequence, stamp=stamp, organizer=sender)
        changes = _changes(old, current) if rescheduled else []
        for participant in to_request:
            news = [] if participant in added else changes
            messages.append(
                _message(
                    current,
                    itip.REQUEST,
                    participant.email,
                    "",
                    sequence,
                    cal,
                    sender,
                    reply,
                    changes=news,
                )
            )
    return Planned(sequence, messages, reset)


def _addressed(followup: FollowUp, reply: str | None) -> FollowUp:
    """The follow-up as the iTIP data names its organizer: at ``reply`` when one is set.

    Calendar programs send their answer to ORGANIZER's address (Outlook, Gmail and Apple
    Calendar alike; Reply-To and SENT-BY do not change where). With ``reply`` the
    service's own mailbox, answers come where ``[mail.imap]`` reads; the organizer's
    name stays, so participants still see who invites them (docs/invitations.md).
    """
    if reply is None or followup.organizer is None:
        return followup
    organizer = followup.organizer.model_copy(update={"email": reply})
    return followup.model_copy(update={"organizer": organizer})


def _asked_again(followup: FollowUp, occurrences: list[Moment] | None) -> FollowUp | None:
    """``followup`` with the answers a reschedule voids set back to needs-action.

    ``occurrences`` None: the whole series moved, every answer goes (series and
    per-occurrence). Otherwise only those occurrences: a participant who answered the
    series gets needs-action for each of them, one whose series answer is needs-action
    anyway just loses any answer recorded for them. None when no answer changes.
    """
    waiting = ParticipantStatus.needs_action
    participants = []
    for participant in followup.participants:
        if occurrences is None:
            update: dict[str, Any] = {"status": waiting, "occurrence_status": {}}
        else:
            statuses = dict(participant.occurrence_status)
            for moment in occurrences:
                key = moment.isoformat()
                if participant.status == waiting:
                    statuses.pop(key, None)
                else:
                    statuses[key] = waiting
            update = {"occurrence_status": statuses}
        participants.append(participant.model_copy(update=update).model_dump(mode="json"))
    before = [p.model_dump(mode="json") for p in followup.participants]
    if participants == before:
        return None
    return load_followup({**followup.to_json_dict(), "participants": participants})


def _exists(
    session: Session, account: str, uid: str, sequence: int, method: str, recipient: str, rid: str
) -> bool:
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


# --- the message ---------------------------------------------------------------------------------


def message_id(account: str, uid: str, sequence: int, method: str, recipient: str, rid: str) -> str:
    """Deterministic: the same intent always has the same Message-ID (see the module docstring)."""
    key = "\x1f".join([account, uid, str(sequence), method, recipient.casefold(), rid])
    return f"<itip-{hashlib.sha256(key.encode()).hexdigest()[:40]}@followup-sync>"


_TEXTS: dict[str, dict[str, Any]] = {
    "en": {
        itip.REQUEST: ("Invitation", "You are invited to"),
        itip.CANCEL: ("Cancelled", "This has been cancelled:"),
        "update": ("Updated", "This has changed:"),
        "title": "Title",
        "moved": "Moved",
        "description": "The description has changed (below).",
        "when": "When",
        "where": "Where",
        "organizer": "Organizer",
        "occurrence": "Only the occurrence on",
        "repeats": "Repeats",
        "answer": "Your calendar program can answer this invitation; "
        "the answer goes back to the organizer.",
    },
    "nb": {
        itip.REQUEST: ("Invitasjon", "Du er invitert til"),
        itip.CANCEL: ("Avlyst", "Dette er avlyst:"),
        "update": ("Endret", "Dette er endret:"),
        "title": "Tittel",
        "moved": "Flyttet",
        "description": "Beskrivelsen er endret (se under).",
        "when": "Når",
        "where": "Hvor",
        "organizer": "Arrangør",
        "occurrence": "Bare forekomsten",
        "repeats": "Gjentas",
        "answer": "Kalenderprogrammet ditt kan svare på invitasjonen; "
        "svaret går tilbake til arrangøren.",
    },
}


def _message(
    followup: FollowUp,
    method: str,
    recipient: str,
    rid: str,
    sequence: int,
    cal: Any,
    sender: Organizer | None,
    reply: str | None = None,
    *,
    told: Moment | None = None,
    changes: list[_Change] | None = None,
) -> tuple[str, str, str, EmailMessage]:
    """An iMIP message (RFC 6047): text in the follow-up's language, the iTIP part, and the .ics.

    ``told``: for the CANCEL of one occurrence, where the participants were told it is
    (a moved occurrence's new start), which the text names rather than the RECURRENCE-ID.
    ``changes``: for an update, what changed since the last REQUEST, listed first.
    """
    lang = followup.language.value
    texts = _TEXTS[lang]
    subject_word, intro = texts["update" if changes else method]
    organizer = followup.organizer or sender
    assert organizer is not None
    participant = followup.participant(recipient)
    if changes:
        lines = [f"{subject_word}: {followup.title or '-'}", "", str(intro)]
        lines += [f"  {change.text(texts)}" for change in changes] + [""]
    else:
        lines = [f"{intro} {followup.title or '-'}", ""]
    when = _moment_text(told) if told is not None else _when(followup, rid, lang)
    lines.append(f"{texts['when']}: {when}")
    if rid:
        lines.append(f"{texts['occurrence']} {when}")
    location = followup.location
    if location:
        lines.append(f"{texts['where']}: {location}")
    who = f"{organizer.name} <{organizer.email}>" if organizer.name else organizer.email
    lines.append(f"{texts['organizer']}: {who}")
    if method == itip.REQUEST:
        if followup.description:
            lines += ["", followup.description.strip()]
        lines += ["", str(texts["answer"])]
    body = "\n".join(lines) + "\n"
    ics = bytes(cal.to_ical())

    msg = EmailMessage(policy=email.policy.SMTP)
    if reply is not None:
        # From the service's address (which its mail server lets it send as, and which
        # SPF/DKIM/DMARC vouch for); a person replying by hand reaches the organizer.
        from_address = Organizer(name=organizer.name, email=reply)
    else:
        from_address = sender or organizer
    msg["From"] = formataddr((from_address.name or organizer.name or "", from_address.email))
    if from_address.email.casefold() != organizer.email.casefold():
        msg["Reply-To"] = formataddr((organizer.name or "", organizer.email))
    msg["To"] = formataddr(((participant.name if participant else None) or "", recipient))
    msg["Subject"] = f"{subject_word}: {followup.title or '-'} ({when})"
    msg["Message-ID"] = message_id("", followup.effective_uid, sequence, method, recipient, rid)
    stamp = cal.walk("VEVENT") or cal.walk("VTODO")
    sent = stamp[0]["DTSTAMP"].dt if stamp else dt.datetime.now(dt.UTC)
    msg["Date"] = format_datetime(sent)
    msg.set_content(body, subtype="plain", charset="utf-8")
    msg.add_alternative(
        ics.decode("utf-8"), subtype="calendar", charset="utf-8", params={"method": method}
    )
    msg.make_mixed()
    msg.add_attachment(ics, maintype="application", subtype="ics", filename="invite.ics")
    return method, recipient, rid, msg


@dataclass(frozen=True)
class _Change:
    """One line of "what changed" in an update: which field, from what, to what."""

    field: str  # a key of _TEXTS: "title", "when", "where", "moved", "description"
    before: str = ""
    after: str = ""

    def text(self, texts: dict[str, Any]) -> str:
        if self.field == "description":
            return str(texts["description"])
        return f"{texts[self.field]}: {self.before or '-'} → {self.after or '-'}"


#: An update lists at most this many moved occurrences, then how many more there are.
_MOVED_LISTED = 10


def _changes(old: FollowUp, new: FollowUp) -> list[_Change]:
    """What participants notice between the last REQUEST (``old``) and this one (``new``)."""
    lang = new.language.value
    found: list[_Change] = []
    if (old.title or "") != (new.title or ""):
        found.append(_Change("title", old.title or "", new.title or ""))
    # The series as its rule makes it: single moved or cancelled dates are listed apart.
    before = _when(old.model_copy(update={"exceptions": []}), "", lang)
    after = _when(new.model_copy(update={"exceptions": []}), "", lang)
    if before != after:
        found.append(_Change("when", before, after))
    if (old.location or "") != (new.location or ""):
        found.append(_Change("where", old.location or "", new.location or ""))
    if before == after:
        found += _moved(old, new)
    if (old.description or "") != (new.description or ""):
        found.append(_Change("description"))
    return found


def _moved(old: FollowUp, new: FollowUp) -> list[_Change]:
    """Occurrences whose time or place changed while the series stayed where it was."""
    try:
        was = {_naive_local(o.original_start): o for o in occurrences(old) if not o.cancelled}
        now = {_naive_local(o.original_start): o for o in occurrences(new) if not o.cancelled}
    except (MappingError, ValueError):
        return []
    moved: list[_Change] = []
    for key in sorted(was.keys() & now.keys(), key=lambda k: k.isoformat()):
        a, b = was[key], now[key]
        if (_naive_local(a.start), _naive_local(a.end)) != (
            _naive_local(b.start),
            _naive_local(b.end),
        ):
            moved.append(_Change("moved", _moment_text(a.start), _moment_text(b.start)))
        if (a.location or "") != (b.location or ""):
            moved.append(
                _Change("where", f"{_moment_text(b.start)} {a.location or '-'}", b.location or "")
            )
    if len(moved) > _MOVED_LISTED:
        rest = len(moved) - _MOVED_LISTED
        moved = [*moved[:_MOVED_LISTED], _Change("moved", "…", f"+{rest}")]
    return moved


def _told(old: FollowUp | None, original: Moment) -> Moment | None:
    """Where the participants were told the occurrence ``original`` is: its start in ``old``."""
    if old is None:
        return None
    try:
        for occurrence in occurrences(old):
            if _naive_local(occurrence.original_start) == original:
                return _naive_local(occurrence.start)
    except (MappingError, ValueError):
        return None
    return None


def _moment_text(value: Moment) -> str:
    value = _naive_local(value)
    return _show(value.isoformat())


def _when(followup: FollowUp, rid: str, lang: str) -> str:
    """ "02.03.2026 10:00–11:00", or for a series "Weekly (…): Every …, 10:00–11:00"."""
    if rid:
        return _show(rid)
    hours = ""
    if isinstance(followup.start, dt.datetime) and isinstance(followup.end, dt.datetime):
        hours = f"{followup.start:%H:%M}–{followup.end:%H:%M}"
    if followup.recurrence is not None or followup.ical_recurrence is not None:
        try:
            text = f"{describe.summary(followup, lang)}: {describe.sentence(followup, lang)}"  # type: ignore[arg-type]
            return f"{text}, {hours}" if hours else text
        except (MappingError, ValueError):
            pass
    day = f"{followup.start:%d.%m.%Y}"
    return f"{day} {hours}" if hours else day


def _show(iso: str) -> str:
    if "T" in iso:
        moment = dt.datetime.fromisoformat(iso)
        return moment.strftime("%d.%m.%Y %H:%M")
    return dt.date.fromisoformat(iso).strftime("%d.%m.%Y")


# --- step 2: send --------------------------------------------------------------------------------


@dataclass
class SendReport:
    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)


def send_pending(
    mail: MailSettings,
    db: Database,
    *,
    account: str | None = None,
    only: Iterable[int] | None = None,
    after_smtp: Callable[[int, int], None] | None = None,
) -> SendReport:
    """Send every pending message (or the ``only`` ids, uncertain ones included) once.

    ``after_smtp(row_id, position)`` is called right after the SMTP server accepted a
    message and before it is recorded as sent: the crash window the module docstring
    describes, which a caller (the crash test) can step into.
    """
    ensure_tables(db)
    report = SendReport()
    with db.sessions.begin() as session:
        query = select(Invitation).where(Invitation.status == "sending")
        if account is not None:
            query = query.where(Invitation.account == account)
        for stuck in session.scalars(query):
            stuck.status = "uncertain"
            stuck.last_error = (
                "the process stopped while this message was being sent; not sent again by itself"
            )
            report.uncertain.append(stuck.id)
    with db.session() as session:
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
        ids = list(session.scalars(id_query))
    if not ids:
        return report
    with _smtp(mail) as smtp:
        for position, row_id in enumerate(ids, 1):
            with db.sessions.begin() as session:
                row = session.get(Invitation, row_id)
                assert row is not None
                row.status = "sending"
                row.attempts += 1
                data, recipient = row.message, row.recipient
            try:
                smtp.sendmail(mail.sender_address, [recipient], data)
            except (smtplib.SMTPException, OSError) as exc:
                with db.sessions.begin() as session:
                    row = session.get(Invitation, row_id)
                    assert row is not None
                    row.status = "failed"
                    row.last_error = str(exc)
                report.failed.append((row_id, str(exc)))
                log.warning("invitation %s to %s failed: %s", row_id, recipient, exc)
                continue
            if after_smtp is not None:
                after_smtp(row_id, position)
            with db.sessions.begin() as session:
                row = session.get(Invitation, row_id)
                assert row is not None
                row.status = "sent"
                row.sent_at = utcnow()
                row.last_error = None
            report.sent.append(row_id)
    return report


def unsent(db: Database, account: str) -> int:
    """This account's messages that still need a send: pending, failed, or caught mid-send.

    One cheap query, so the daemon asks after every pass and opens no SMTP connection
    when there is nothing to send (the daemon runs on a current schema: no table check).
    """
    with db.session() as session:
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


class _smtp:
    """An SMTP connection as the config asks for it (plain, STARTTLS or SSL), logged in."""

    def __init__(self, mail: MailSettings) -> None:
        self.mail = mail
        self.conn: smtplib.SMTP | None = None

    def __enter__(self) -> smtplib.SMTP:
        mail = self.mail
        try:
            if mail.security == "ssl":
                self.conn = smtplib.SMTP_SSL(
                    mail.host,
                    mail.smtp_port,
                    timeout=mail.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                self.conn = smtplib.SMTP(mail.host, mail.smtp_port, timeout=mail.timeout)
                if mail.security == "starttls":
                    self.conn.starttls(context=ssl.create_default_context())
            password = mail.password()
            if mail.username and password is not None:
                self.conn.login(mail.username, password)
        except (smtplib.SMTPException, OSError) as exc:
            raise FollowupSyncError(
                f"cannot reach the SMTP server {mail.host}:{mail.smtp_port}: {exc}"
            ) from None
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                self.conn.close()


# --- step 3: replies -----------------------------------------------------------------------------


@dataclass
class ReplyOutcome:
    message: str
    uid: str
    attendee: str
    partstat: str
    recurrence_id: str
    outcome: str  # applied | ignored | held (| rejected, by the operator)
    reason: str | None = None


def fetch_replies(mail: MailSettings, db: Database) -> list[ReplyOutcome]:
    """Read unseen iTIP REPLY messages from ``[mail.imap]`` and apply them."""
    if mail.imap is None:
        raise ConfigError("[mail.imap] is not configured: there is no mailbox to read replies from")
    ensure_tables(db)
    imap = mail.imap
    outcomes: list[ReplyOutcome] = []
    try:
        if imap.security == "ssl":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(imap.host, imap.imap_port, timeout=imap.timeout)
        else:
            conn = imaplib.IMAP4(imap.host, imap.imap_port, timeout=imap.timeout)
            if imap.security == "starttls":
                conn.starttls(ssl.create_default_context())
        conn.login(imap.username, imap.password() or "")
    except (imaplib.IMAP4.error, OSError) as exc:
        raise FollowupSyncError(f"cannot log in to the IMAP server {imap.host}: {exc}") from None
    try:
        status, _ = conn.select(imap.folder)
        if status != "OK":
            raise FollowupSyncError(f"IMAP folder {imap.folder!r} cannot be opened")
        status, data = conn.uid("SEARCH", "UNSEEN")
        uids = data[0].split() if status == "OK" and data and data[0] else []
        for imap_uid in uids:
            status, fetched = conn.uid("FETCH", imap_uid, "(BODY.PEEK[])")
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
            if raw is None:
                continue
            key = f"{imap.folder}:{imap_uid.decode()}"
            outcomes.extend(
                apply_reply_message(raw, db, message_key=key, authserv_ids=imap.authserv_ids)
            )
            conn.uid("STORE", imap_uid, "+FLAGS", "(\\Seen)")
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.logout()
    return outcomes


def calendar_parts(raw: bytes) -> list[bytes]:
    """A mail's iTIP payloads: text/calendar parts (method=REPLY) first, then .ics attachments."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    announced: list[bytes] = []
    attached: list[bytes] = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        name = (part.get_filename() or "").lower()
        if ctype == "text/calendar" or (
            ctype in ("application/ics", "application/octet-stream") and name.endswith(".ics")
        ):
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            if ctype == "text/calendar" and str(part.get_param("method", "")).upper() == itip.REPLY:
                announced.append(payload)
            else:
                attached.append(payload)
    return announced + attached


def apply_reply_message(
    raw: bytes,
    db: Database,
    *,
    message_key: str,
    authserv_ids: Iterable[str] = (),
) -> list[ReplyOutcome]:
    """Apply the first REPLY payload of one mail; every answer in it is recorded.

    Each answer is first judged (``sync.invitations.reply_trust``): one the mail cannot be shown to
    come from is held for the operator (``invitations held``, ``accept``, ``reject``).
    """
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    for payload in calendar_parts(raw):
        try:
            replies = itip.parse_replies(payload)
        except MappingError:
            continue  # a PUBLISH invite.ics beside the real reply (Gmail), or not iTIP at all
        return [
            apply_reply(
                reply,
                db,
                message_key=message_key,
                verdict=reply_trust.judge(
                    message,
                    reply.attendee_email,
                    sent_by=reply.sent_by,
                    authserv_ids=list(authserv_ids),
                ),
            )
            for reply in replies
        ]
    return [ReplyOutcome(message_key, "", "", "", "", "ignored", "no iTIP REPLY in this message")]


def apply_reply(
    reply: itip.Reply,
    db: Database,
    *,
    verdict: reply_trust.Verdict,
    message_key: str = "",
) -> ReplyOutcome:
    """Set one participant's answer on the follow-up, unless it must be ignored or held.

    Ignored: nothing to apply it to (unknown UID, not a participant, an occurrence the
    series does not have, an older SEQUENCE). Held: it could apply, but the mail does not
    show it comes from that participant (``verdict``); it waits for the operator.
    """
    ensure_tables(db)
    with db.sessions.begin() as session:
        row = session.scalar(
            select(FollowUpRow).where(FollowUpRow.uid == reply.uid, FollowUpRow.deleted.is_(False))
        )
        followup = load_followup(row.document) if row is not None else None
        rid = ""
        if followup is not None and reply.recurrence_id is not None:
            rid = _local_key(reply.recurrence_id, followup).isoformat()
        reason = _why_not(session, followup, reply.uid, reply.attendee_email, reply.sequence, rid)
        outcome = "ignored" if reason else "applied"
        if reason is None and not verdict.trusted:
            outcome, reason = "held", verdict.reason
        if outcome == "applied":
            assert followup is not None
            crm_store.save(
                session,
                _with_answer(followup, reply.attendee_email, reply.partstat, rid),
                origin="invitation",
            )
        session.add(
            ReplyRecord(
                message_key=message_key,
                uid=reply.uid,
                followup_id=followup.id if followup else None,
                attendee=reply.attendee_email,
                partstat=reply.partstat.value,
                recurrence_id=rid,
                sequence=reply.sequence,
                outcome=outcome,
                reason=reason,
                sender=verdict.sender or None,
                evidence=verdict.evidence,
            )
        )
    if reason:
        log.warning(
            "reply %s for %s from %s %s: %s",
            message_key,
            reply.attendee_email,
            verdict.sender or "?",
            outcome,
            reason,
        )
    return ReplyOutcome(
        message_key,
        reply.uid,
        reply.attendee_email,
        reply.partstat.value,
        rid,
        outcome,
        reason,
    )


def _why_not(
    session: Session,
    followup: FollowUp | None,
    uid: str,
    attendee: str,
    sequence: int,
    rid: str,
) -> str | None:
    """Why an answer cannot apply to what the CRM holds now; None when it can."""
    if followup is None:
        return f"unknown UID {uid}"
    if followup.participant(attendee) is None:
        return f"{attendee} is not a participant"
    if rid and not _has_occurrence(followup, rid):
        return f"the series has no occurrence {_show(rid)}"
    sent_sequence = session.scalar(
        select(InvitationState.sequence)
        .where(InvitationState.followup_id == followup.id)
        .order_by(InvitationState.sequence.desc())
    )
    if sent_sequence is not None and sequence < sent_sequence:
        return f"SEQUENCE {sequence} is older than the current {sent_sequence}"
    return None


def _has_occurrence(followup: FollowUp, rid: str) -> bool:
    """Whether ``rid`` (a local original start) is one of the series' live occurrences.

    A RECURRENCE-ID the series never made (a Thursday on a Monday series), or one that
    was cancelled, names nothing an answer could be about.
    """
    key: Moment = dt.datetime.fromisoformat(rid) if "T" in rid else dt.date.fromisoformat(rid)
    day = key.date() if isinstance(key, dt.datetime) else key
    # The window bounds an open-ended series; a moved occurrence is found by its original
    # start as long as it moved less than a year away.
    window_end = day + dt.timedelta(days=366)
    try:
        found = occurrences(followup, window_end=window_end, include_cancelled=False)
    except (MappingError, ValueError):
        return False
    return any(_naive_local(o.original_start) == key for o in found)


def _naive_local(value: Moment) -> Moment:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


# --- held answers --------------------------------------------------------------------------------


def held(db: Database) -> list[dict[str, Any]]:
    """Answers waiting for the operator: who, what, the sender, and why they were held."""
    ensure_tables(db)
    with db.session() as session:
        rows = session.scalars(
            select(ReplyRecord).where(ReplyRecord.outcome == "held").order_by(ReplyRecord.id)
        )
        return [_held_row(r) for r in rows]


def _held_row(record: ReplyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "followup": record.followup_id,
        "attendee": record.attendee,
        "answer": record.partstat,
        "occurrence": record.recurrence_id or None,
        "sender": record.sender,
        "reason": record.reason,
        "authentication": record.evidence,
        "received_at": as_utc(record.received_at).isoformat(),
    }


def decide_held(db: Database, record_id: int, *, accept: bool) -> ReplyOutcome:
    """The operator's decision on a held answer: apply it (if it still can) or drop it."""
    ensure_tables(db)
    with db.sessions.begin() as session:
        record = session.get(ReplyRecord, record_id)
        if record is None or record.outcome != "held":
            raise FollowupSyncError(f"answer {record_id} is not held (see 'invitations held')")
        reason: str | None
        if accept:
            row = session.scalar(
                select(FollowUpRow).where(
                    FollowUpRow.uid == record.uid, FollowUpRow.deleted.is_(False)
                )
            )
            followup = load_followup(row.document) if row is not None else None
            reason = _why_not(
                session,
                followup,
                record.uid,
                record.attendee,
                record.sequence,
                record.recurrence_id,
            )
            if reason is None:
                assert followup is not None
                partstat = ParticipantStatus(record.partstat)
                crm_store.save(
                    session,
                    _with_answer(followup, record.attendee, partstat, record.recurrence_id),
                    origin="invitation",
                )
                record.outcome, record.reason = "applied", "accepted by the operator"
            else:
                record.outcome, record.reason = "ignored", f"accepted too late: {reason}"
        else:
            record.outcome, record.reason = "rejected", "rejected by the operator"
        return ReplyOutcome(
            record.message_key,
            record.uid,
            record.attendee,
            record.partstat,
            record.recurrence_id,
            record.outcome,
            record.reason,
        )


def _with_answer(
    followup: FollowUp, email_address: str, partstat: ParticipantStatus, rid: str
) -> FollowUp:
    participants = []
    for participant in followup.participants:
        if participant.email.casefold() == email_address.casefold():
            if rid:
                statuses = dict(participant.occurrence_status)
                statuses[rid] = partstat
                participant = participant.model_copy(update={"occurrence_status": statuses})
            else:
                # An answer for the series replaces the per-occurrence ones (as clients do).
                participant = participant.model_copy(
                    update={"status": partstat, "occurrence_status": {}}
                )
        participants.append(participant.model_dump(mode="json"))
    return load_followup({**followup.to_json_dict(), "participants": participants})


def _local_key(value: Moment, followup: FollowUp) -> Moment:
    """A RECURRENCE-ID as the follow-up keys occurrences: naive local time (or a date)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(followup.zone).replace(tzinfo=None)
        return value.date() if followup.all_day else value
    if followup.all_day or not isinstance(followup.start, dt.datetime):
        return value
    return dt.datetime.combine(value, followup.start.time())


# --- listing -------------------------------------------------------------------------------------


def answers(db: Database) -> list[dict[str, Any]]:
    """Who answered what, per follow-up with participants (series and occurrence answers).

    ``held`` lists the answers for that participant that wait for the operator.
    """
    result: list[dict[str, Any]] = []
    waiting: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
    for pending in held(db):
        key = (pending["followup"], str(pending["attendee"]).casefold())
        waiting.setdefault(key, []).append(pending)
    with db.session() as session:
        for row in session.scalars(
            select(FollowUpRow).where(FollowUpRow.deleted.is_(False)).order_by(FollowUpRow.id)
        ):
            participants: list[dict[str, Any]] = (row.document or {}).get("participants") or []  # type: ignore[assignment]
            for participant in participants:
                result.append(
                    {
                        "followup": row.id,
                        "title": (row.document or {}).get("title", ""),
                        "email": participant.get("email"),
                        "name": participant.get("name"),
                        "status": participant.get("status", "needs-action"),
                        "occurrences": participant.get("occurrence_status") or {},
                        "held": waiting.get(
                            (row.id, str(participant.get("email", "")).casefold()), []
                        ),
                    }
                )
    return result


def outbox(db: Database) -> list[dict[str, Any]]:
    """Every recorded message and its state, newest first."""
    ensure_tables(db)
    with db.session() as session:
        rows = session.scalars(select(Invitation).order_by(Invitation.id.desc()))
        return [
            {
                "id": r.id,
                "account": r.account,
                "followup": r.followup_id,
                "method": r.method,
                "sequence": r.sequence,
                "recipient": r.recipient,
                "occurrence": r.recurrence_id or None,
                "status": r.status,
                "sent_at": as_utc(r.sent_at).isoformat() if r.sent_at else None,
                "error": r.last_error,
            }
            for r in rows
        ]
