"""Helpers for the iCalendar round-trip tests: expand a calendar the way clients do.

Occurrences are compared as (start, end, summary) with date-times reduced to UTC
instants, so that a floating time, a TZID and a Z time for the same moment compare
equal; all-day occurrences stay dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events

from mappings.documents import dump_followups_json, load_followups_json
from mappings.from_ical import ParseResult, parse_calendar
from mappings.to_ical import to_ical_bytes

STAMP = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
WIDE = (dt.datetime(1990, 1, 1, tzinfo=dt.UTC), dt.datetime(2032, 1, 1, tzinfo=dt.UTC))

Occurrence = tuple[str, str, str]


def _key(value: dt.date | dt.datetime, floating: ZoneInfo) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=floating)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


def expand(
    data: bytes | str,
    *,
    lo: dt.datetime = WIDE[0],
    hi: dt.datetime = WIDE[1],
    floating: str = "UTC",
) -> list[Occurrence]:
    """Sorted (start, end, summary) of every VEVENT/VTODO occurrence starting in [lo, hi)."""
    zone = ZoneInfo(floating)
    cal = icalendar.Calendar.from_ical(data)
    result = []
    for occurrence in recurring_ical_events.of(cal, components=["VEVENT", "VTODO"]).between(lo, hi):
        if str(occurrence.get("STATUS", "")).upper() == "CANCELLED":
            continue
        start = occurrence.get("DTSTART") or occurrence.get("DUE")
        end = occurrence.get("DTEND") or occurrence.get("DUE") or start
        start_key = _key(start.dt, zone)
        if start_key < _key(lo, zone) and not start_key[:1].isdigit():
            continue
        result.append((start_key, _key(end.dt, zone), str(occurrence.get("SUMMARY", ""))))
    return sorted(result)


def round_trip(data: bytes | str, *, default_timezone: str = "UTC") -> tuple[ParseResult, bytes]:
    """parse → JSON → load (what ``map`` accepts) → iCalendar."""
    parsed = parse_calendar(data, default_timezone=default_timezone)
    documents = load_followups_json(dump_followups_json(parsed.followups))
    return parsed, to_ical_bytes(documents, stamp=STAMP)


@pytest.fixture
def expand_calendar() -> Callable[..., list[Occurrence]]:
    return expand
