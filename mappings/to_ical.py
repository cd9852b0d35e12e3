"""Follow-up → iCalendar.

One follow-up is one calendar object: a master VEVENT (appointments, calls) or VTODO
(tasks) plus one override per edited occurrence, all with the UID derived from the
follow-up's id. What goes where:

* DTSTART is the first occurrence of the rule, so the rule never starts off-pattern.
  When the first pattern dates were deleted by hand, DTSTART moves to the first one
  left and COUNT shrinks by as many.
* RRULE is exactly the pattern (``mappings.rrule``); deleted pattern dates and
  cancelled exceptions are EXDATE; added dates are RDATE; a Custom pattern is DTSTART
  plus RDATE.
* An edited occurrence is a component with RECURRENCE-ID of the master's value type and
  TZID, and no RRULE/RDATE/EXDATE inside (Radicale answers 400 to EXDATE in an override).
* A call carries ``CATEGORIES:Phone call`` so a client shows what it is; the kind also
  travels as ``X-FOLLOWUP-KIND`` so ``parse`` can bring it back.
* ``organizer`` is ORGANIZER;CN=…:mailto:…; each participant is an ATTENDEE with CN,
  ROLE (REQ-/OPT-PARTICIPANT), PARTSTAT and RSVP=TRUE. An answer for one occurrence
  (``occurrence_status``) is that ATTENDEE's PARTSTAT in the occurrence's override; an
  occurrence answered differently but not otherwise edited gets an override of its own
  (as Apple Calendar and Outlook write it). ``language`` other than English travels as
  ``X-FOLLOWUP-LANGUAGE``.
* ``status`` (and an exception's own ``status``): on a task, STATUS (NEEDS-ACTION,
  IN-PROCESS, COMPLETED) with PERCENT-COMPLETE 0/100 and COMPLETED (``completed_at``, else
  the DTSTAMP: the time it is written) as Thunderbird and Apple write a ticked-off task;
  on an appointment or a call, which no client can mark done, ``X-FOLLOWUP-STATUS``
  only, so it round-trips (``mappings.task_status``).
* A series whose every occurrence is deleted is not emitted at all: servers refuse a
  rule with no instances (SabreDAV: "recurrence rule does not generate any valid
  instances"), and for the sync worker it means "delete the resource".

The mapper reads no clock: DTSTAMP is passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Component, Event, Todo, vCalAddress

from mappings.model import FollowUp, FollowUpKind, Language, ParticipantRole
from mappings.moments import Moment, naive, wall_clock_key
from mappings.occurrences import is_recurring, occurrences, series_dates
from mappings.patterns import effective_end_type
from mappings.rrule import apply_kept_rule, ical_moment, rrule_for
from mappings.superoffice import RecurrenceEndType
from mappings.task_status import add_status
from mappings.timezones import vtimezone

PRODID = "-//followup-sync//followup-sync 0.1//EN"
CALL_CATEGORY = "Phone call"
KIND_PROPERTY = "X-FOLLOWUP-KIND"
ID_PROPERTY = "X-FOLLOWUP-ID"
LANGUAGE_PROPERTY = "X-FOLLOWUP-LANGUAGE"
ROLES = {ParticipantRole.required: "REQ-PARTICIPANT", ParticipantRole.optional: "OPT-PARTICIPANT"}


@dataclass(frozen=True)
class MappedSeries:
    """The components of one follow-up; ``components`` is empty when nothing is left."""

    followup_id: str
    uid: str
    components: list[Component]

    @property
    def emitted(self) -> bool:
        return bool(self.components)


def followup_components(followup: FollowUp, *, stamp: dt.datetime) -> MappedSeries:
    """Master plus overrides for one follow-up."""
    zone = followup.zone
    uid = followup.effective_uid
    master = _new_component(followup)
    _common(master, followup, uid, stamp)
    cancelled = {e.original_start for e in followup.exceptions if e.cancelled}
    exdates: list[Moment] = []
    first_start: Moment = followup.start

    if followup.ical_recurrence is not None:
        apply_kept_rule(master, followup)
    elif is_recurring(followup):
        dates = series_dates(followup)
        assert followup.recurrence is not None
        remaining_pattern = [d for d in dates.pattern if d not in set(dates.deleted)]
        if dates.has_rule and remaining_pattern:
            first = remaining_pattern[0]
            skipped = dates.pattern.index(first)
            count = None
            if effective_end_type(followup.recurrence) == RecurrenceEndType.Counter:
                count = len(dates.pattern) - skipped
            master.add(
                "rrule",
                rrule_for(followup.recurrence, zone=zone, all_day=followup.all_day, count=count),
            )
            exdates.extend(_at_time(d, followup) for d in dates.deleted if d > first)
            added = list(dates.added)
        else:
            # No rule left (Custom, or every pattern date deleted): a date list.
            if not dates.final:
                return MappedSeries(followup.id, uid, [])
            first = dates.final[0]
            added = dates.final[1:]
        first_start = _at_time(first, followup)
        if added:
            master.add("rdate", [ical_moment(_at_time(d, followup), zone) for d in added])
        # Nothing left once the cancelled exceptions are taken away: emit nothing.
        if dates.bounded and all(_at_time(d, followup) in cancelled for d in dates.final):
            return MappedSeries(followup.id, uid, [])

    _times(master, followup, first_start, zone)
    exdates.extend(sorted(cancelled, key=wall_clock_key))
    if exdates:
        master.add("exdate", [ical_moment(value, zone) for value in exdates])

    add_participants(master, followup, None)
    components: list[Component] = [master]
    answered = _answered_occurrences(followup)
    for exception in sorted(followup.exceptions, key=lambda e: wall_clock_key(e.original_start)):
        answered.discard(exception.original_start)
        if exception.cancelled:
            continue
        override = _new_component(followup)
        _common(
            override,
            followup,
            uid,
            stamp,
            title=exception.title,
            description=exception.description,
            location=exception.location,
        )
        if exception.status is not None:
            add_status(override, followup.kind, exception.status, exception.completed_at, stamp)
        override.add("recurrence-id", ical_moment(exception.original_start, zone))
        start = exception.start if exception.start is not None else exception.original_start
        end = exception.end if exception.end is not None else start + followup.duration
        _times(override, followup, start, zone, end=end)
        add_participants(override, followup, exception.original_start)
        components.append(override)
    for key in sorted(answered, key=wall_clock_key):
        # An occurrence answered on its own but otherwise as the series has it.
        components.append(unedited_override(followup, key, stamp=stamp))
    if len(components) > 1:
        components[1:] = sorted(components[1:], key=lambda c: wall_clock_key(_local_key(c, zone)))
    return MappedSeries(followup.id, uid, components)


def unedited_override(followup: FollowUp, key: Moment, *, stamp: dt.datetime) -> Component:
    """An override of occurrence ``key`` that says what the series says about it.

    It is the frame for what is the occurrence's own but not the mapper's: one
    participant's answer, or what a client added to it (``mappings.resource``).
    """
    zone = followup.zone
    override = _new_component(followup)
    _common(override, followup, followup.effective_uid, stamp)
    override.add("recurrence-id", ical_moment(key, zone))
    _times(override, followup, key, zone)
    add_participants(override, followup, key)
    return override


def add_participants(component: Component, followup: FollowUp, occurrence: Moment | None) -> None:
    """ORGANIZER and one ATTENDEE per participant.

    Each carries the answer for ``occurrence`` (None: the series as a whole).
    """
    if followup.organizer is not None:
        organizer = vCalAddress(f"mailto:{followup.organizer.email}")
        if followup.organizer.name:
            organizer.params["CN"] = followup.organizer.name
        component.add("organizer", organizer)
    key = occurrence.isoformat() if occurrence is not None else None
    for participant in followup.participants:
        status = participant.status
        if key is not None:
            status = participant.occurrence_status.get(key, status)
        attendee = vCalAddress(f"mailto:{participant.email}")
        if participant.name:
            attendee.params["CN"] = participant.name
        attendee.params["ROLE"] = ROLES[participant.role]
        attendee.params["PARTSTAT"] = status.value.upper()
        attendee.params["RSVP"] = "TRUE"
        component.add("attendee", attendee)


def _answered_occurrences(followup: FollowUp) -> set[Moment]:
    """Occurrences some participant answered on their own, that the series really has."""
    keys = {key for p in followup.participants for key in p.occurrence_status}
    if not keys:
        return set()
    moments = {naive(o.original_start) for o in occurrences(followup, include_cancelled=False)}
    return {m for m in moments if m.isoformat() in keys}


def _local_key(component: Component, zone: ZoneInfo) -> Moment:
    value: Moment = getattr(component["RECURRENCE-ID"], "dt")  # noqa: B009 - the union type has no .dt
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(zone).replace(tzinfo=None)
    return value


def to_calendar(
    followups: Iterable[FollowUp], *, stamp: dt.datetime
) -> tuple[Calendar, list[MappedSeries]]:
    """One VCALENDAR for many follow-ups, with a VTIMEZONE for every TZID used."""
    cal = new_calendar()
    mapped = []
    for followup in followups:
        series = followup_components(followup, stamp=stamp)
        mapped.append(series)
        for component in series.components:
            cal.add_component(component)
    add_timezones(cal)
    return cal, mapped


def new_calendar() -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    return cal


def calendar_bytes(components: Sequence[Component], defined: Sequence[Component] = ()) -> bytes:
    """One VCALENDAR: our header, the ``defined`` VTIMEZONEs, one for every other TZID used
    by ``components``, then the components themselves.

    Why by hand and not ``Calendar.to_ical()``: a zone definition's bytes never change,
    yet icalendar would fold and escape the same VTIMEZONE again for every resource (40 %
    of a render in the push profile). Here each (zone, first year) is serialised once.
    The result is what ``to_ical()`` of the same calendar gives, with the VTIMEZONEs first.
    """
    holder = Calendar()
    for component in (*defined, *components):
        holder.add_component(component)
    parts = [_calendar_head()]
    parts += [bytes(tz.to_ical()) for tz in defined]
    missing = holder.get_missing_tzids()
    if missing:
        first_year = _first_year(holder)
        parts += [
            tz for tzid in sorted(missing) if (tz := _vtimezone_bytes(tzid, first_year)) is not None
        ]
    parts += [bytes(component.to_ical()) for component in components]
    parts.append(b"END:VCALENDAR\r\n")
    return b"".join(parts)


@lru_cache(maxsize=1)
def _calendar_head() -> bytes:
    """``BEGIN:VCALENDAR`` and our calendar properties, as icalendar serialises them."""
    empty = bytes(new_calendar().to_ical())
    assert empty.endswith(b"END:VCALENDAR\r\n")
    return empty[: -len(b"END:VCALENDAR\r\n")]


@lru_cache(maxsize=256)
def _vtimezone_bytes(tzid: str, first_year: int) -> bytes | None:
    try:
        return bytes(vtimezone(tzid, first_year).to_ical())
    except (ZoneInfoNotFoundError, ValueError):
        return None  # not an IANA name we can describe; the TZID stays as the client wrote it


def _first_year(cal: Calendar) -> int:
    """The year before the earliest date-time used: where a zone definition must start."""
    years = [
        value.dt.year
        for component in cal.walk()
        for key in ("DTSTART", "DUE", "RECURRENCE-ID")
        if (value := component.get(key)) is not None and isinstance(value.dt, dt.datetime)
    ]
    return max(min(years) - 1, 1970) if years else 1970


def add_timezones(cal: Calendar) -> None:
    """A VTIMEZONE for every TZID the calendar uses and does not define yet.

    The definitions cover the earliest year used (less one) to 2037, compact where the
    zone's rules allow (``mappings.timezones``), so clients that trust the embedded
    definition (Outlook) get the offsets right for the whole series.
    """
    missing = cal.get_missing_tzids()
    if not missing:
        return
    first_year = _first_year(cal)
    for tzid in sorted(missing):
        try:
            cal.add_component(vtimezone(tzid, first_year))
        except (ZoneInfoNotFoundError, ValueError):
            continue  # not an IANA name we can describe; the TZID stays as the client wrote it


def to_ical_bytes(followups: Iterable[FollowUp], *, stamp: dt.datetime) -> bytes:
    cal, _ = to_calendar(followups, stamp=stamp)
    return bytes(cal.to_ical())


def _new_component(followup: FollowUp) -> Component:
    return Todo() if followup.kind == FollowUpKind.task else Event()


def _common(
    component: Component,
    followup: FollowUp,
    uid: str,
    stamp: dt.datetime,
    *,
    title: str | None = None,
    description: str | None = None,
    location: str | None = None,
) -> None:
    component.add("uid", uid)
    component.add("dtstamp", stamp.astimezone(dt.UTC))
    component.add("summary", title if title is not None else followup.title)
    desc = description if description is not None else followup.description
    if desc:
        component.add("description", desc)
    loc = location if location is not None else followup.location
    if loc:
        component.add("location", loc)
    if followup.kind == FollowUpKind.call:
        component.add("categories", [CALL_CATEGORY])
    component.add(KIND_PROPERTY, followup.kind.value)
    if followup.language != Language.en:
        component.add(LANGUAGE_PROPERTY, followup.language.value)
    if followup.status is not None:  # an exception's own status replaces it
        add_status(component, followup.kind, followup.status, followup.completed_at, stamp)


def _times(
    component: Component,
    followup: FollowUp,
    start: Moment,
    zone: ZoneInfo,
    *,
    end: Moment | None = None,
) -> None:
    if end is None:
        end = start + followup.duration
    component.add("dtstart", ical_moment(start, zone))
    component.add("due" if followup.kind == FollowUpKind.task else "dtend", ical_moment(end, zone))


def _at_time(day: dt.date, followup: FollowUp) -> Moment:
    if followup.all_day:
        return day
    return dt.datetime.combine(day, followup.start.time())  # type: ignore[attr-defined]
