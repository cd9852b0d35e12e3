"""Step 1: record the invitations that are due, each with its state, in one transaction.

Per follow-up with participants, the CRM document is compared with the one the
participants were last told about; ``_plan`` (pure: no I/O) decides the SEQUENCE, the
messages and any answers a reschedule voids, and ``record_due`` stores them as
``pending`` rows together with the new state (``sync.state.invitation_records``). See
the package docstring for why that single commit makes the step safe to repeat.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from sqlalchemy.orm import Session

from mappings import itip
from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp, Organizer, ParticipantStatus
from mappings.moments import Moment
from sync.config import Account
from sync.errors import FollowupSyncError
from sync.invitations import scheduling
from sync.invitations.messages import changes_between, itip_message, told_start
from sync.state import followups as crm_store
from sync.state import invitation_records as records
from sync.state.db import Database, utcnow
from sync.state.invitation_records import InvitationState

log = logging.getLogger(__name__)


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
    records.ensure_tables(db)
    report = RecordReport()
    with db.session() as session:
        candidates = records.candidates(session, account.name)
    if not candidates:
        return report
    account_mode: scheduling.Mode | None = None
    for followup_id in candidates:
        with db.sessions.begin() as session:
            current, state = _load(session, account.name, followup_id)
            if current is None and state is None:
                continue
            if account_mode is None:
                account_mode = scheduling.scheduling_mode(account, calendar)
                report.mode = account_mode
            # What the last write marked the attendees with: the document now, or (once
            # deleted) the one the participants were last told about.
            basis = current if current is not None else _doc(state)
            mode = (
                scheduling.channel(account, calendar, basis) if basis is not None else account_mode
            )
            if mode != "email":
                # The server schedules, or nobody does: keep the state current so that
                # switching to email later does not send a backlog of old news.
                records.remember(
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
                if records.is_recorded(
                    session, account.name, uid, sequence, method, recipient, rid
                ):
                    continue
                records.add_pending(
                    session,
                    account=account.name,
                    followup_id=followup_id,
                    uid=uid,
                    sequence=sequence,
                    method=method,
                    recipient=recipient,
                    recurrence_id=rid,
                    message_id=message["Message-ID"],
                    message=bytes(message),
                )
                report.messages.append((followup_id, method, recipient, rid))
            records.remember(session, account.name, followup_id, current, state, sequence)
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


def _load(
    session: Session, account: str, followup_id: str
) -> tuple[FollowUp | None, InvitationState | None]:
    """The follow-up as it is now (None: deleted, or no longer on this calendar) and its state.

    (None, None): nothing to say, also for a follow-up that has no participants and never had.
    """
    current, state = records.current_and_state(session, account, followup_id)
    if current is not None and not current.participants and state is None:
        return None, None
    return current, state


def _doc(state: InvitationState | None) -> FollowUp | None:
    if state is None or state.document is None:
        return None
    return load_followup(state.document)


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
                itip_message(
                    current, itip.REQUEST, participant.email, "", sequence, cal, sender, reply
                )
            )
        return Planned(sequence, messages, reset)
    if current is None or not current.participants:
        sequence += 1
        cal = itip.cancel(_addressed(old, reply), sequence, stamp=stamp, organizer=sender)
        for participant in old.participants:
            messages.append(
                itip_message(old, itip.CANCEL, participant.email, "", sequence, cal, sender, reply)
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
                itip_message(
                    current,
                    itip.CANCEL,
                    participant.email,
                    occurrence.isoformat(),
                    sequence,
                    cal,
                    sender,
                    reply,
                    told=told_start(old, occurrence),
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
                itip_message(old, itip.CANCEL, participant.email, "", sequence, cal, sender, reply)
            )
    to_request = current.participants if rescheduled else added
    if to_request:
        cal = itip.request(_addressed(current, reply), sequence, stamp=stamp, organizer=sender)
        changes = changes_between(old, current) if rescheduled else []
        for participant in to_request:
            news = [] if participant in added else changes
            messages.append(
                itip_message(
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
    name stays, so participants still see who invites them (docs/how-to/invitations.md).
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
