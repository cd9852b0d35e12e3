"""iTIP messages (RFC 5546) for follow-ups with participants: REQUEST, CANCEL, and reading REPLY.

Pure: no I/O and no clock (DTSTAMP is passed in), so the same intent always renders the
same bytes. ``sync.invitations`` relies on that: a message recorded as pending and sent
again after a crash is byte-identical, Message-ID and DTSTAMP included.

What each message holds, and why:

* ``request`` is the whole series, master plus every override, as the calendar object
  ``mappings.to_ical`` makes, with METHOD:REQUEST, ORGANIZER, the ATTENDEEs, SEQUENCE
  and a VTIMEZONE per TZID. Sending the whole series (rather than a per-occurrence
  REQUEST) after an occurrence moves is what RFC 5546 §3.2.2 calls a "rescheduled"
  request and what every client understands; a lone override would create a
  master-less instance in clients that never saw the series.
* ``cancel`` without ``occurrence`` cancels the series (STATUS:CANCELLED, all
  attendees); with one, it cancels that instance only: RECURRENCE-ID with the
  master's value type and TZID, as §3.2.5 requires, so the client removes one date.
* ``significant_change`` says when SEQUENCE must go up (§2.1.4): anything that moves
  an occurrence in time or place, or removes one. Title and description edits are
  sent with the same SEQUENCE, so clients update silently instead of asking every
  attendee to answer again. ``changed_occurrences`` says whom a reschedule asks
  again about what: the whole series, or only the occurrences that moved.
* ``parse_reply`` reads the shapes real clients send: Outlook (METHOD before PRODID,
  Windows TZIDs, no ORGANIZER), Gmail (UTC times, CUTYPE/X-NUM-GUESTS), Apple (no
  SEQUENCE), Thunderbird (the organizer's properties echoed back); see
  tests/data/itip/README.md.

``problems`` checks a message against §3.2's table for its method; the sender refuses
to send a message it flags, and the tests use it on what went over SMTP.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from icalendar import Calendar, Component, Event, Todo, vCalAddress

from mappings.errors import MappingError
from mappings.model import FollowUp, FollowUpKind, Organizer, ParticipantStatus
from mappings.moments import Moment, aware, instant, naive, wall_clock_key
from mappings.occurrences import occurrences
from mappings.rrule import ical_moment
from mappings.to_ical import (
    KIND_PROPERTY,
    PRODID,
    add_participants,
    add_timezones,
    followup_components,
)

REQUEST = "REQUEST"
CANCEL = "CANCEL"
REPLY = "REPLY"

_PARTSTATS = {s.value.upper(): s for s in ParticipantStatus}


class ItipError(MappingError):
    """A message that is not a usable iTIP message (wrong method, no UID, no attendee …)."""


@dataclass(frozen=True)
class Reply:
    """One attendee's answer, for the series (``recurrence_id`` None) or one occurrence."""

    uid: str
    attendee_email: str
    partstat: ParticipantStatus
    recurrence_id: Moment | None
    sequence: int
    attendee_name: str | None = None
    prodid: str | None = None
    #: The delegate the attendee names as answering for them (SENT-BY), if any.
    sent_by: str | None = None


def request(
    followup: FollowUp,
    sequence: int,
    *,
    stamp: dt.datetime,
    organizer: Organizer | None = None,
    recipients: list[str] | None = None,
) -> Calendar:
    """METHOD:REQUEST with the whole series; ``organizer`` stands in when the follow-up has none.

    ``recipients`` narrows the ATTENDEE list (an update sent only to a newly added
    participant still lists… only what that participant needs: RFC 5546 lets the
    organizer send a subset). None lists every participant.
    """
    followup = _with_organizer(followup, organizer)
    series = followup_components(followup, stamp=stamp)
    if not series.emitted:
        raise ItipError("the follow-up has no occurrence left to invite to", item=followup.id)
    cal = _calendar(REQUEST)
    for component in series.components:
        _strip_ours(component)
        component.add("sequence", sequence)
        component.add(
            "status", "CONFIRMED" if followup.kind != FollowUpKind.task else "NEEDS-ACTION"
        )
        if recipients is not None:
            _keep_attendees(component, recipients)
        cal.add_component(component)
    add_timezones(cal)
    return cal


def cancel(
    followup: FollowUp,
    sequence: int,
    *,
    stamp: dt.datetime,
    occurrence: Moment | None = None,
    organizer: Organizer | None = None,
    recipients: list[str] | None = None,
) -> Calendar:
    """METHOD:CANCEL for the series, or the occurrence whose original start is ``occurrence``."""
    followup = _with_organizer(followup, organizer)
    zone = followup.zone
    component: Component = Todo() if followup.kind == FollowUpKind.task else Event()
    component.add("uid", followup.effective_uid)
    component.add("dtstamp", stamp.astimezone(dt.UTC))
    component.add("sequence", sequence)
    component.add("summary", followup.title)
    if occurrence is None:
        component.add("dtstart", ical_moment(followup.start, zone))
    else:
        component.add("recurrence-id", ical_moment(occurrence, zone))
        component.add("dtstart", ical_moment(occurrence, zone))
    component.add("status", "CANCELLED")
    add_participants(component, followup, occurrence)
    if recipients is not None:
        _keep_attendees(component, recipients)
    cal = _calendar(CANCEL)
    cal.add_component(component)
    add_timezones(cal)
    return cal


def significant_change(old: FollowUp, new: FollowUp) -> bool:
    """True when attendees must be asked again (SEQUENCE goes up): time, date, place, recurrence.

    Compares what each occurrence *is* (start, end, location, cancelled) rather than the
    documents, so a pattern rewritten to an equivalent one ("every workday" = weekly on
    Monday-Friday) is not a change, and a moved or cancelled occurrence is.
    """
    if (old.all_day, old.timezone, old.kind) != (new.all_day, new.timezone, new.kind):
        return True
    if (old.location or None) != (new.location or None):
        return True
    return _schedule(old) != _schedule(new)


def removed_occurrences(old: FollowUp, new: FollowUp) -> list[Moment]:
    """Original starts (naive local, as exceptions key them) of occurrences ``old`` had and
    ``new`` cancelled or no longer produces.

    Only while the rest of the series stays where it was: when ``new`` produces original
    starts ``old`` did not (the series moved, or its rule now makes other dates), the
    change is a reschedule, sent as one REQUEST with the whole new series, and only the
    occurrences explicitly cancelled at their old original start count as removed.
    Otherwise moving a series by two hours would also CANCEL each of its old occurrences.
    """
    before = {naive(o.original_start) for o in occurrences(old) if not o.cancelled}
    produced = occurrences(new)
    after = {naive(o.original_start) for o in produced if not o.cancelled}
    if after <= before:
        return sorted(before - after, key=wall_clock_key)
    cancelled = {naive(o.original_start) for o in produced if o.cancelled}
    return sorted(before & cancelled, key=wall_clock_key)


def rescheduled(old: FollowUp, new: FollowUp, *, ignoring: list[Moment]) -> bool:
    """``significant_change`` apart from the occurrences in ``ignoring`` (sent as CANCELs)."""
    if (old.all_day, old.timezone, old.kind) != (new.all_day, new.timezone, new.kind):
        return True
    if (old.location or None) != (new.location or None):
        return True
    skip = {instant(aware(m, old.zone)) for m in ignoring}
    return [e for e in _schedule(old) if e[0] not in skip] != [
        e for e in _schedule(new) if e[0] not in skip
    ]


def changed_occurrences(
    old: FollowUp, new: FollowUp, *, ignoring: list[Moment]
) -> list[Moment] | None:
    """Which occurrences a significant change concerns, for asking the attendees again.

    None when the series as a whole changed: kind, time zone, all-day, the series'
    location, or which occurrences exist (a new rule, a moved series, an occurrence
    reinstated or added), or when every occurrence moved. Otherwise the original
    starts (naive local time or dates, the keys of ``occurrence_status``) of the
    occurrences whose time or place changed; ``ignoring`` (the cancelled ones, which get
    a CANCEL instead) are left out. An empty list: nothing attendees care about changed.
    """
    if (old.all_day, old.timezone, old.kind) != (new.all_day, new.timezone, new.kind):
        return None
    if (old.location or None) != (new.location or None):
        return None
    skip = {instant(aware(m, old.zone)) for m in ignoring}
    before = {k: v for k, v in _by_original(old).items() if k not in skip}
    after = {k: v for k, v in _by_original(new).items() if k not in skip}
    if before.keys() != after.keys():
        return None
    changed = [after[k][0] for k in after if after[k][1] != before[k][1]]
    live = [k for k in after if not after[k][1][2]]
    if changed and len(changed) >= len(live):
        return None
    return sorted(changed, key=wall_clock_key)


def parse_reply(data: bytes | str) -> Reply:
    """The answer in an iTIP REPLY; the first one when it answers several occurrences."""
    return parse_replies(data)[0]


def parse_replies(data: bytes | str) -> list[Reply]:
    """Every answer in an iTIP REPLY: one per component (series, or occurrences)."""
    try:
        cal = Calendar.from_ical(data)
    except (ValueError, IndexError, KeyError) as exc:
        raise ItipError(f"not valid iCalendar: {exc}") from None
    method = str(cal.get("METHOD", "")).strip().upper()
    if method != REPLY:
        raise ItipError(f"not an iTIP REPLY (METHOD is {method or 'missing'})", field="METHOD")
    prodid = str(cal.get("PRODID")) if cal.get("PRODID") is not None else None
    replies = []
    for component in cal.walk():
        if component.name not in ("VEVENT", "VTODO"):
            continue
        uid = str(component.get("UID", "")).strip()
        if not uid:
            raise ItipError("a REPLY component has no UID", field="UID")
        organizer = (
            _email(component.get("ORGANIZER")) if component.get("ORGANIZER") is not None else None
        )
        attendees = [a for a in _as_list(component.get("ATTENDEE")) if _email(a)]
        # A REPLY names one attendee (§3.2.3); Thunderbird also echoes the organizer as one.
        answering = [a for a in attendees if _email(a) != organizer] or attendees
        if not answering:
            raise ItipError("a REPLY without ATTENDEE", item=uid, field="ATTENDEE")
        attendee = answering[0]
        partstat_text = str(attendee.params.get("PARTSTAT", "NEEDS-ACTION")).upper()
        partstat = _PARTSTATS.get(partstat_text)
        if partstat is None:
            raise ItipError(
                f"PARTSTAT {partstat_text} is not an answer the CRM knows",
                item=uid,
                field="PARTSTAT",
            )
        rid = component.get("RECURRENCE-ID")
        sequence = component.get("SEQUENCE")
        name = attendee.params.get("CN")
        sent_by = _email(attendee.params.get("SENT-BY"))
        replies.append(
            Reply(
                uid=uid,
                attendee_email=_email(attendee),
                partstat=partstat,
                recurrence_id=rid.dt if rid is not None else None,
                sequence=int(sequence) if sequence is not None else 0,
                attendee_name=str(name) if name else None,
                prodid=prodid,
                sent_by=sent_by or None,
            )
        )
    if not replies:
        raise ItipError("the REPLY holds no VEVENT or VTODO")
    return replies


def problems(cal: Calendar) -> list[str]:
    """Where ``cal`` breaks RFC 5546 §3.2's rules for its METHOD (REQUEST, CANCEL, REPLY)."""
    found: list[str] = []
    method = str(cal.get("METHOD", "")).upper()
    if method not in (REQUEST, CANCEL, REPLY):
        return [f"METHOD {method or 'missing'} is not REQUEST, CANCEL or REPLY"]
    for name in ("PRODID", "VERSION"):
        if cal.get(name) is None:
            found.append(f"VCALENDAR has no {name}")
    components = [c for c in cal.walk() if c.name in ("VEVENT", "VTODO")]
    if not components:
        found.append("no VEVENT or VTODO")
    uids = {str(c.get("UID", "")) for c in components}
    if len(uids) > 1:
        found.append(f"one message, one UID: found {sorted(uids)}")
    masters = [c for c in components if c.get("RECURRENCE-ID") is None]
    for component in components:
        rid = component.get("RECURRENCE-ID")
        where = f"{component.name} {rid.to_ical().decode() if rid is not None else 'master'}"
        for name in ("UID", "DTSTAMP"):
            if component.get(name) is None:
                found.append(f"{where}: {name} is required")
        if method != REPLY and component.get("ORGANIZER") is None:
            found.append(f"{where}: ORGANIZER is required in {method}")
        attendees = _as_list(component.get("ATTENDEE"))
        if method == REQUEST:
            if not attendees:
                found.append(f"{where}: REQUEST needs at least one ATTENDEE")
            if component.get("DTSTART") is None:
                found.append(f"{where}: DTSTART is required in REQUEST")
            if component.get("SUMMARY") is None:
                found.append(f"{where}: SUMMARY is required in REQUEST")
        if method in (REQUEST, CANCEL) and component.get("SEQUENCE") is None:
            found.append(f"{where}: SEQUENCE must be sent by the organizer")
        if method == CANCEL and str(component.get("STATUS", "CANCELLED")).upper() != "CANCELLED":
            found.append(f"{where}: STATUS in CANCEL must be CANCELLED")
        if method == REPLY and len([a for a in attendees if a.params.get("PARTSTAT")]) < 1:
            found.append(f"{where}: REPLY needs the answering ATTENDEE with PARTSTAT")
        for attendee in attendees:
            if "SCHEDULE-AGENT" in attendee.params or "SCHEDULE-STATUS" in attendee.params:
                found.append(
                    f"{where}: SCHEDULE-* parameters must not travel in iTIP (RFC 6638 §7.1)"
                )
        if method in (REQUEST, CANCEL) and masters and component is not masters[0]:
            for name in ("RRULE", "RDATE", "EXDATE"):
                if component.get(name) is not None:
                    found.append(f"{where}: an override carries no {name}")
    tzids = {
        str(prop.params["TZID"])
        for c in components
        for value in c.values()
        for prop in _as_list(value)
        if hasattr(prop, "params") and "TZID" in prop.params
    }
    defined = {str(tz.get("TZID")) for tz in cal.walk("VTIMEZONE")}
    for tzid in sorted(tzids - defined):
        found.append(f"TZID {tzid} has no VTIMEZONE")
    return found


# --- helpers ---------------------------------------------------------------------------------


def _calendar(method: str) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", method)
    return cal


def _with_organizer(followup: FollowUp, organizer: Organizer | None) -> FollowUp:
    if followup.organizer is None and organizer is not None:
        followup = followup.model_copy(update={"organizer": organizer})
    if followup.organizer is None:
        raise ItipError(
            "an invitation needs an organizer (the follow-up has none)",
            item=followup.id,
            field="organizer",
        )
    if not followup.participants:
        raise ItipError("an invitation needs participants", item=followup.id, field="participants")
    return followup


def _strip_ours(component: Component) -> None:
    """Our private X- properties mean nothing to an attendee's calendar."""
    for name in (KIND_PROPERTY, "X-FOLLOWUP-LANGUAGE", "X-FOLLOWUP-ID", "X-FOLLOWUP-STATUS"):
        component.pop(name, None)


def _keep_attendees(component: Component, recipients: list[str]) -> None:
    wanted = {r.casefold() for r in recipients}
    attendees = _as_list(component.pop("ATTENDEE", None))
    for attendee in attendees:
        if _email(attendee).casefold() in wanted:
            component.add("attendee", attendee)


def _email(value: object) -> str:
    text = str(value or "").strip()
    return text[7:] if text.lower().startswith("mailto:") else ""


def _as_list(value: object) -> list[vCalAddress]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]  # type: ignore[list-item]


def _schedule(followup: FollowUp) -> list[tuple[object, ...]]:
    result: list[tuple[object, ...]] = []
    for occurrence in occurrences(followup):
        result.append(
            (
                instant(occurrence.original_start),
                instant(occurrence.start),
                instant(occurrence.end),
                occurrence.cancelled,
                occurrence.location or None,
            )
        )
    return result


def _by_original(followup: FollowUp) -> dict[object, tuple[Moment, tuple[object, ...]]]:
    """Instant of each original start -> (its naive local key, (start, end, cancelled, place))."""
    return {
        instant(o.original_start): (
            naive(o.original_start),
            (instant(o.start), instant(o.end), o.cancelled, o.location or None),
        )
        for o in occurrences(followup)
    }
