"""Step 3: participants' answers. iTIP REPLY mail read over IMAP, applied, held or ignored.

An answer updates the participant's status on the follow-up (the series, or one
occurrence); one that names nothing we sent is ignored, and one the mail cannot be shown
to come from (``sync.invitations.reply_trust``) is held for the operator. Every answer is
recorded (``sync.state.invitation_records``). Also the listings of ``followup-sync
invitations``: who answered what, the held answers, and the outbox.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
import imaplib
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from sqlalchemy.orm import Session

from mappings import itip
from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp, ParticipantStatus
from mappings.moments import Moment
from mappings.occurrences import occurrences
from sync.errors import ConfigError, FollowupSyncError
from sync.invitations import reply_trust
from sync.invitations.messages import naive_local, show_iso
from sync.mail_config import MailSettings
from sync.state import followups as crm_store
from sync.state import invitation_records as records
from sync.state.db import Database, as_utc
from sync.state.invitation_records import ReplyRecord

log = logging.getLogger(__name__)


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
    records.ensure_tables(db)
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
    records.ensure_tables(db)
    with db.sessions.begin() as session:
        followup = records.live_followup_by_uid(session, reply.uid)
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
        records.add_reply(
            session,
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
            ),
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
        return f"the series has no occurrence {show_iso(rid)}"
    sent_sequence = records.last_sent_sequence(session, followup.id)
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
    return any(naive_local(o.original_start) == key for o in found)


# --- held answers --------------------------------------------------------------------------------


def held(db: Database) -> list[dict[str, Any]]:
    """Answers waiting for the operator: who, what, the sender, and why they were held."""
    records.ensure_tables(db)
    with db.session() as session:
        return [_held_row(r) for r in records.held_records(session)]


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
    records.ensure_tables(db)
    with db.sessions.begin() as session:
        record = records.reply_record(session, record_id)
        if record is None or record.outcome != "held":
            raise FollowupSyncError(f"answer {record_id} is not held (see 'invitations held')")
        reason: str | None
        if accept:
            followup = records.live_followup_by_uid(session, record.uid)
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
        for followup_id, document in records.live_documents(session):
            participants: list[dict[str, Any]] = (document or {}).get("participants") or []  # type: ignore[assignment]
            for participant in participants:
                result.append(
                    {
                        "followup": followup_id,
                        "title": (document or {}).get("title", ""),
                        "email": participant.get("email"),
                        "name": participant.get("name"),
                        "status": participant.get("status", "needs-action"),
                        "occurrences": participant.get("occurrence_status") or {},
                        "held": waiting.get(
                            (followup_id, str(participant.get("email", "")).casefold()), []
                        ),
                    }
                )
    return result


def outbox(db: Database) -> list[dict[str, Any]]:
    """Every recorded message and its state, newest first."""
    records.ensure_tables(db)
    with db.session() as session:
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
            for r in records.outbox_rows(session)
        ]
