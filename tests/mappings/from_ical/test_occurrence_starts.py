"""The fast way of reading occurrence starts gives what the library's public API gives.

``occurrence_starts`` uses a private method of recurring-ical-events and falls back to the
public ``between`` where a release lacks it: both must yield the same starts, or a library
upgrade would silently change what a calendar means.
"""

from __future__ import annotations

import datetime as dt

import pytest
import recurring_ical_events
from icalendar import Calendar

from mappings.from_ical.expand import Window, occurrence_starts

SERIES = {
    "timed across DST": """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:a
DTSTART;TZID=Europe/Oslo:20260301T090000
DTEND;TZID=Europe/Oslo:20260301T100000
RRULE:FREQ=WEEKLY;BYDAY=MO,TH;COUNT=20
EXDATE;TZID=Europe/Oslo:20260305T090000
END:VEVENT
END:VCALENDAR
""",
    "all day monthly": """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:b
DTSTART;VALUE=DATE:20260131
RRULE:FREQ=MONTHLY;BYMONTHDAY=-1;UNTIL=20261231
RDATE;VALUE=DATE:20260615
END:VEVENT
END:VCALENDAR
""",
}


@pytest.mark.parametrize("name", sorted(SERIES))
def test_fast_and_public_starts_agree(name: str) -> None:
    calendar = Calendar.from_ical(SERIES[name])
    window = Window(dt.datetime(2026, 1, 1), dt.datetime(2027, 1, 1))
    query = recurring_ical_events.of(calendar)
    fast = list(occurrence_starts(query, window))
    public = list(occurrence_starts(recurring_ical_events.of(calendar), window, fast=False))
    assert fast == public
    assert len(fast) >= 10
