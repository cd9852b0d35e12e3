"""The iMIP message (RFC 6047) to one recipient: a text in their language, the iTIP part, the .ics.

Rendered once, when the invitation is recorded (``sync.invitations.record``), and stored
whole, so a resend is the identical message: the Message-ID is derived from the intent's
key (``message_id``) and DTSTAMP comes from the iTIP data.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from mappings import describe, itip
from mappings.errors import MappingError
from mappings.model import FollowUp, Organizer
from mappings.moments import Moment
from mappings.occurrences import occurrences


def message_id(account: str, uid: str, sequence: int, method: str, recipient: str, rid: str) -> str:
    """Deterministic: the same intent always has the same Message-ID (see ``sync.invitations``)."""
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


def itip_message(
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
    changes: list[Change] | None = None,
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
class Change:
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


def changes_between(old: FollowUp, new: FollowUp) -> list[Change]:
    """What participants notice between the last REQUEST (``old``) and this one (``new``)."""
    lang = new.language.value
    found: list[Change] = []
    if (old.title or "") != (new.title or ""):
        found.append(Change("title", old.title or "", new.title or ""))
    # The series as its rule makes it: single moved or cancelled dates are listed apart.
    before = _when(old.model_copy(update={"exceptions": []}), "", lang)
    after = _when(new.model_copy(update={"exceptions": []}), "", lang)
    if before != after:
        found.append(Change("when", before, after))
    if (old.location or "") != (new.location or ""):
        found.append(Change("where", old.location or "", new.location or ""))
    if before == after:
        found += _moved(old, new)
    if (old.description or "") != (new.description or ""):
        found.append(Change("description"))
    return found


def _moved(old: FollowUp, new: FollowUp) -> list[Change]:
    """Occurrences whose time or place changed while the series stayed where it was."""
    try:
        was = {naive_local(o.original_start): o for o in occurrences(old) if not o.cancelled}
        now = {naive_local(o.original_start): o for o in occurrences(new) if not o.cancelled}
    except (MappingError, ValueError):
        return []
    moved: list[Change] = []
    for key in sorted(was.keys() & now.keys(), key=lambda k: k.isoformat()):
        a, b = was[key], now[key]
        if (naive_local(a.start), naive_local(a.end)) != (
            naive_local(b.start),
            naive_local(b.end),
        ):
            moved.append(Change("moved", _moment_text(a.start), _moment_text(b.start)))
        if (a.location or "") != (b.location or ""):
            moved.append(
                Change("where", f"{_moment_text(b.start)} {a.location or '-'}", b.location or "")
            )
    if len(moved) > _MOVED_LISTED:
        rest = len(moved) - _MOVED_LISTED
        moved = [*moved[:_MOVED_LISTED], Change("moved", "…", f"+{rest}")]
    return moved


def told_start(old: FollowUp | None, original: Moment) -> Moment | None:
    """Where the participants were told the occurrence ``original`` is: its start in ``old``."""
    if old is None:
        return None
    try:
        for occurrence in occurrences(old):
            if naive_local(occurrence.original_start) == original:
                return naive_local(occurrence.start)
    except (MappingError, ValueError):
        return None
    return None


def _moment_text(value: Moment) -> str:
    value = naive_local(value)
    return show_iso(value.isoformat())


def _when(followup: FollowUp, rid: str, lang: str) -> str:
    """ "02.03.2026 10:00–11:00", or for a series "Weekly (…): Every …, 10:00–11:00"."""
    if rid:
        return show_iso(rid)
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


def show_iso(iso: str) -> str:
    """An ISO date or local date-time as the messages show it: 02.03.2026 (10:00)."""
    if "T" in iso:
        moment = dt.datetime.fromisoformat(iso)
        return moment.strftime("%d.%m.%Y %H:%M")
    return dt.date.fromisoformat(iso).strftime("%d.%m.%Y")


def naive_local(value: Moment) -> Moment:
    """A moment without its zone (the wall-clock time it carries); a date as it is."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value
