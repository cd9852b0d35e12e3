"""Compact VTIMEZONE definitions, one per zone, made once.

icalendar's ``add_missing_timezones`` writes every transition as an RDATE list from 1970
(or a chosen year) to 2038: about 2 KB for Europe/Oslo, rebuilt for every resource. A
zone whose rules have not changed over the span is described exactly by two
observances with a yearly RRULE ("last Sunday of March at 02:00"), the way Outlook,
Apple Calendar and DAVx5 write it: a tenth of the size, and clients that trust the
embedded definition get future years right too.

Each compact definition is checked against zoneinfo's own transitions for every year it
claims to cover; a zone that does not fit (rules changed within the span, more than two
changes a year) gets icalendar's explicit form instead, so the output is never wrong.
"""

from __future__ import annotations

import calendar
import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

from icalendar import Timezone

LAST_YEAR = 2037
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@lru_cache(maxsize=256)
def vtimezone(tzid: str, first_year: int) -> Timezone:
    """The VTIMEZONE for ``tzid`` valid from 1 January ``first_year`` to 2037.

    The result is shared between calendars: treat it as read-only.
    """
    compact = _compact(tzid, first_year)
    if compact is not None:
        return compact
    return Timezone.from_tzid(
        tzid, first_date=dt.date(first_year, 1, 1), last_date=dt.date(LAST_YEAR + 1, 1, 1)
    )


def _compact(tzid: str, first_year: int) -> Timezone | None:
    zone = ZoneInfo(tzid)
    transitions = {year: _transitions(zone, year) for year in range(first_year, LAST_YEAR + 1)}
    first = transitions[first_year]
    if any(len(t) != len(first) for t in transitions.values()) or len(first) not in (0, 2):
        return None
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    if not first:
        offset = _offset(zone.utcoffset(dt.datetime(first_year, 1, 1)))
        name = dt.datetime(first_year, 1, 1, tzinfo=zone).tzname() or tzid
        lines += [
            "BEGIN:STANDARD",
            f"DTSTART:{first_year}0101T000000",
            f"TZOFFSETFROM:{offset}",
            f"TZOFFSETTO:{offset}",
            f"TZNAME:{name}",
            "END:STANDARD",
        ]
    else:
        rules = [_rule(moment) for moment, _, _ in first]
        for index, (moment, before, after) in enumerate(first):
            month, weekday, nth = rules[index]
            for year, changes in transitions.items():
                when, was, becomes = changes[index]
                expected = dt.datetime.combine(
                    _nth_weekday(year, month, weekday, nth), moment.time()
                )
                if (when, was, becomes) != (expected, before, after):
                    return None
        for (moment, before, after), (month, weekday, nth) in zip(first, rules, strict=True):
            is_dst = (zone.dst(moment + dt.timedelta(hours=12)) or dt.timedelta(0)) > dt.timedelta(
                0
            )
            kind = "DAYLIGHT" if is_dst else "STANDARD"
            name = (moment + dt.timedelta(hours=12)).replace(tzinfo=zone).tzname() or tzid
            lines += [
                f"BEGIN:{kind}",
                f"DTSTART:{moment:%Y%m%dT%H%M%S}",
                f"RRULE:FREQ=YEARLY;BYMONTH={month};BYDAY={nth}{WEEKDAYS[weekday]}",
                f"TZOFFSETFROM:{_offset(before)}",
                f"TZOFFSETTO:{_offset(after)}",
                f"TZNAME:{name}",
                f"END:{kind}",
            ]
    lines.append("END:VTIMEZONE")
    component = Timezone.from_ical("\r\n".join(lines) + "\r\n")
    assert isinstance(component, Timezone)
    return component


def _transitions(zone: ZoneInfo, year: int) -> list[tuple[dt.datetime, dt.timedelta, dt.timedelta]]:
    """(local wall time of the change in the old offset, old offset, new offset) per change."""
    result = []
    day = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    while day.year == year:
        nxt = day + dt.timedelta(days=1)
        offset = nxt.astimezone(zone).utcoffset()
        if offset != day.astimezone(zone).utcoffset():
            # Find the hour (in UTC) the offset changed, then express it in the old local time.
            moment = day
            while moment.astimezone(zone).utcoffset() == day.astimezone(zone).utcoffset():
                moment += dt.timedelta(minutes=15)
            before = day.astimezone(zone).utcoffset()
            assert before is not None and offset is not None
            result.append(((moment + before).replace(tzinfo=None), before, offset))
        day = nxt
    return result


def _rule(moment: dt.datetime) -> tuple[int, int, int]:
    """(month, weekday, nth) of a change; nth -1 when it is the month's last such weekday."""
    length = calendar.monthrange(moment.year, moment.month)[1]
    nth = -1 if moment.day + 7 > length else (moment.day - 1) // 7 + 1
    return moment.month, moment.weekday(), nth


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> dt.date:
    length = calendar.monthrange(year, month)[1]
    if nth == -1:
        last = dt.date(year, month, length)
        return last - dt.timedelta(days=(last.weekday() - weekday) % 7)
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))


def _offset(value: dt.timedelta | None) -> str:
    assert value is not None
    seconds = int(value.total_seconds())
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}{minutes:02d}" + (f"{secs:02d}" if secs else "")
