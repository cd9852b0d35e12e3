"""Moments: the dates and date-times a follow-up document holds, and how to handle them.

A document's moments are dates (all-day follow-ups) or naive local date-times in the
follow-up's zone; ``occurrences`` hands them back aware, and a calendar may give them in
any zone. These helpers were copied into seven modules before; here is their one home.
Nothing in this module knows a follow-up, so every other mapper module may import it.

Two orders are on offer, and they are not the same:

* ``wall_clock_key`` sorts by local date and time of day, ignoring any zone: the order
  of the keys of one document, which are all in the same zone;
* ``instant_key`` sorts by the instant (a naive value read as UTC), for aware moments
  that may straddle a change of offset.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

Moment = dt.datetime | dt.date


def date_of(value: Moment) -> dt.date:
    """The calendar date of a moment (a date is its own)."""
    return value.date() if isinstance(value, dt.datetime) else value


def naive(value: Moment) -> Moment:
    """The wall time without its zone: documents key occurrences by naive local time,
    while ``occurrences`` gives aware local times."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def aware(value: Moment, zone: ZoneInfo) -> Moment:
    """A naive date-time placed in ``zone``; aware values and dates are left alone."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    return value


def to_local(value: object, zone: ZoneInfo, all_day: bool) -> Moment:
    """A calendar value as the document holds it: a date, or naive wall time in ``zone``."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(zone).replace(tzinfo=None)
        return value.date() if all_day else value
    if isinstance(value, dt.date):
        return value if all_day else dt.datetime.combine(value, dt.time())
    raise TypeError(f"not a date or date-time: {value!r}")


def time_of(value: Moment) -> dt.time | None:
    """The time of day of a date-time; None for a date."""
    return value.time() if isinstance(value, dt.datetime) else None


def instant(value: Moment) -> Moment:
    """For comparing equal: an aware moment as its UTC instant; naive ones and dates as given."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value


def wall_clock_key(value: Moment) -> tuple[dt.date, dt.time]:
    """Sort by local date, then time of day (a date sorts at midnight); the zone is ignored."""
    if isinstance(value, dt.datetime):
        return (value.date(), value.time())
    return (value, dt.time())


def instant_key(value: Moment) -> dt.datetime:
    """Sort by instant: aware values in UTC, naive ones and dates read as UTC."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)


def show(value: Moment) -> str:
    """A moment in a message or a document key: ISO 8601, as the document writes it."""
    return value.isoformat()


def show_to_minute(value: Moment) -> str:
    """A moment in a message for people: ``2025-01-06 09:00`` (no seconds, no ``T``)."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()
