"""Zero-length events on servers that refuse them (Cyrus): written one second long, read back.

RFC 5545 (3.6.1) lets a VEVENT at a date-time end when it starts: with ``DTEND`` equal to
``DTSTART``, ``DURATION:PT0S`` or no end at all. A CRM call logged without a length is
exactly that. Cyrus 3.6.1 refuses all three with 403 "DTEND must occur after DTSTART"
(iCloud too, per python-caldav's measurements), so such a follow-up could never be stored.

Where ``Capabilities.zero_length_events`` is False, ``DavCalendar`` passes what it writes
through ``lengthen`` and what it reads through ``shorten``: each zero-length timed VEVENT
(master or override) goes out as ``DURATION:PT1S`` with ``X-FOLLOWUP-SYNC-ZERO-LENGTH``,
and a VEVENT carrying that mark and still one second long comes back with
``DTEND = DTSTART``, as the mapper wrote it. Calendar clients show a one-second event (a
point in time, as intended); one that a client lengthens keeps its new end. No library
does this; it is a property-level rewrite with icalendar, on those servers only.
"""

from __future__ import annotations

import datetime as dt

from icalendar import Calendar, Component

__all__ = ["MARK", "lengthen", "shorten"]

MARK = "X-FOLLOWUP-SYNC-ZERO-LENGTH"
_PADDING = dt.timedelta(seconds=1)


def lengthen(data: bytes) -> bytes:
    """``data`` with every zero-length timed VEVENT made one second long and marked."""
    if b"VEVENT" not in data:
        return data
    cal = Calendar.from_ical(data)
    changed = False
    for event in cal.walk("VEVENT"):
        if _span(event) == dt.timedelta(0):
            event.pop("DTEND", None)
            event.pop("DURATION", None)
            event.pop(MARK, None)
            event.add("duration", _PADDING)
            event.add(MARK, "TRUE")
            changed = True
    return bytes(cal.to_ical()) if changed else data


def shorten(data: bytes) -> bytes:
    """``data`` with every marked VEVENT that is still one second long made zero-length again."""
    if MARK.encode() not in data:
        return data
    cal = Calendar.from_ical(data)
    for event in cal.walk("VEVENT"):
        if MARK not in event:
            continue
        event.pop(MARK)
        if _span(event) == _PADDING:
            event.pop("DURATION", None)
            event.pop("DTEND", None)
            event.add("dtend", _value(event, "DTSTART"))
    return bytes(cal.to_ical())


def _span(event: Component) -> dt.timedelta | None:
    """How long a timed VEVENT lasts; None for a date (all-day) event or one without a start."""
    start = _value(event, "DTSTART")
    if not isinstance(start, dt.datetime):
        return None
    end = _value(event, "DTEND")
    if end is not None:
        if not isinstance(end, dt.datetime):
            return None
        try:
            return end - start
        except TypeError:  # one floating, one with a zone: not ours to judge
            return None
    duration = _value(event, "DURATION")
    return duration if isinstance(duration, dt.timedelta) else dt.timedelta(0)


def _value(event: Component, name: str) -> object:
    """The decoded value of a date/time property, or None when it is absent or unreadable."""
    return getattr(event[name], "dt", None) if name in event else None
