"""Whether a server's rewritten VTIMEZONE places one of a resource's date-times elsewhere.

Radicale stores the resources of a whole-calendar upload without the VTIMEZONEs sent:
it splits the upload into one VCALENDAR per UID and vobject writes each zone anew from
the tzinfo it parsed out of the upload (``TimezoneComponent.settzinfo``). That writer
assumes an ambiguous wall time is read in the later offset; zoneinfo and dateutil read it
in the earlier one, so the autumn change comes out one hour late (Europe/Oslo:
``DTSTART:…T040000`` with ``TZOFFSETFROM:+0200`` instead of 03:00). A client that trusts
the embedded definition (Outlook does; icalendar and recurring-ical-events use the IANA
zone of a known TZID) then reads 03:00-03:59 on that day as summer time: an occurrence
there moves by an hour. Nothing else moves: the events' properties are kept as sent.

``misplacing_zones`` compares each stored definition with the one we sent (or the IANA
zone of its TZID where we sent none), both read by the same reader (dateutil, through
icalendar) so that its own reading of a skipped hour cancels out, over the years the
resource uses (up to 2037, as ``mappings.timezones`` claims), and finds the wall times
they disagree on; a resource has a problem when one of its date-times could
fall on such a time. Recurrences are not expanded: an occurrence has the time of day of
its series' DTSTART/DTEND/DUE (or of an override's), so a disagreement at a time of day
none of those has cannot reach it. A rule that sets its own hours, a definition that
cannot be read, or a TZID the stored resource no longer defines counts as a problem.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Timezone

from mappings.timezones import LAST_YEAR

__all__ = ["misplacing_zones"]

#: Width of the wall-time slots compared; every zone in the IANA database changes offset
#: on a quarter hour (bar historical local mean times, before any CRM follow-up).
SLOT = dt.timedelta(minutes=15)
_SLOTS_PER_DAY = 96
_ZONE = re.compile(r"^BEGIN:VTIMEZONE\n(.*?)^END:VTIMEZONE$", re.MULTILINE | re.DOTALL)
_TZID = re.compile(r"^TZID(?:;[^:\n]*)?:(.*)$", re.MULTILINE)
_LOCAL = re.compile(
    r"^(?:DTSTART|DTEND|DUE|RECURRENCE-ID|EXDATE|RDATE)[^:\n]*;TZID=\"?([^;:\"\n]+)\"?[^:\n]*:(.*)$",
    re.MULTILINE,
)
_OWN_HOURS = re.compile(
    r"^(?:RRULE|EXRULE)[^:\n]*:.*(?:BYHOUR|BYMINUTE|BYSECOND|FREQ=(?:HOURLY|MINUTELY|SECONDLY))",
    re.MULTILINE,
)
_LOCAL_VALUE = re.compile(r"\d{8}T\d{6}")


def _unfolded(data: bytes) -> str:
    return re.sub(r"\n[ \t]", "", data.decode("utf-8", errors="replace").replace("\r\n", "\n"))


def _zones(text: str) -> dict[str, str]:
    """TZID -> the VTIMEZONE's text, as written."""
    zones: dict[str, str] = {}
    for match in _ZONE.finditer(text):
        body = match.group(1)
        tzid = _TZID.search(body)
        if tzid:
            zones[tzid.group(1).strip()] = body
    return zones


def _local_times(text: str) -> dict[str, list[dt.datetime]]:
    """TZID -> every wall-clock date-time the resource names in it."""
    found: dict[str, list[dt.datetime]] = {}
    for match in _LOCAL.finditer(text):
        values = found.setdefault(match.group(1).strip(), [])
        for value in _LOCAL_VALUE.findall(match.group(2)):
            values.append(dt.datetime.strptime(value, "%Y%m%dT%H%M%S"))
    return found


def misplacing_zones(rendered: bytes, stored: bytes) -> list[str]:
    """The TZIDs whose definition in ``stored`` could move a date-time of ``rendered``.

    ``rendered`` is what we sent (its own VTIMEZONEs, exact for the IANA zone), ``stored``
    what the server keeps of it. Empty when every occurrence names the same instant in
    both.
    """
    text = _unfolded(rendered)
    ours = _zones(text)
    theirs = _zones(_unfolded(stored))
    own_hours = bool(_OWN_HOURS.search(text))
    problems = []
    for tzid, times in _local_times(text).items():
        definition = theirs.get(tzid)
        if definition is not None and definition == ours.get(tzid):
            continue
        if definition is None or _reaches(
            _wrong_slots(definition, ours.get(tzid), tzid, min(times).year),
            times,
            own_hours=own_hours,
        ):
            problems.append(tzid)
    return problems


def _reaches(
    wrong: tuple[tuple[dt.datetime, int], ...] | None,
    times: Iterable[dt.datetime],
    *,
    own_hours: bool,
) -> bool:
    """Whether an occurrence with one of ``times``' times of day can fall in a wrong slot."""
    if wrong is None:
        return True
    first = min(times)
    slots = {slot for start, slot in wrong if start + SLOT > first}
    if not slots:
        return False
    if own_hours:
        return True
    return any((t.hour * 60 + t.minute) // 15 in slots for t in times)


@lru_cache(maxsize=64)
def _wrong_slots(
    definition: str, sent: str | None, tzid: str, first_year: int
) -> tuple[tuple[dt.datetime, int], ...] | None:
    """(slot start, slot of the day) where ``definition`` and ``sent`` disagree.

    ``sent`` None: the IANA zone ``tzid``. From 1 January ``first_year`` to the end of
    2037; None when a definition cannot be read or ``tzid`` is no IANA name (everything
    counts as wrong then).
    """
    try:
        written = _tzinfo(definition)
        truth = _tzinfo(sent) if sent is not None else ZoneInfo(tzid)
    except (ZoneInfoNotFoundError, ValueError, KeyError, AssertionError):
        return None

    def differs(moment: dt.datetime) -> bool:
        return (
            moment.replace(tzinfo=written).utcoffset() != moment.replace(tzinfo=truth).utcoffset()
        )

    def changes(tz: dt.tzinfo, day: dt.datetime) -> bool:
        return (
            day.replace(tzinfo=tz).utcoffset()
            != (day + dt.timedelta(days=1)).replace(tzinfo=tz).utcoffset()
        )

    wrong = []
    day = dt.datetime(first_year, 1, 1)
    while day.year <= LAST_YEAR:
        if differs(day) or changes(truth, day) or changes(written, day):
            for slot in range(_SLOTS_PER_DAY):
                start = day + slot * SLOT
                if differs(start) or differs(start + SLOT - dt.timedelta(seconds=1)):
                    wrong.append((start, slot))
        day += dt.timedelta(days=1)
    return tuple(wrong)


def _tzinfo(definition: str) -> dt.tzinfo:
    """The tzinfo a VTIMEZONE's text describes (not the IANA zone of its TZID)."""
    component = Timezone.from_ical(f"BEGIN:VTIMEZONE\n{definition}END:VTIMEZONE\n")
    assert isinstance(component, Timezone)
    zone: dt.tzinfo = component.to_tz(lookup_tzid=False)
    return zone
