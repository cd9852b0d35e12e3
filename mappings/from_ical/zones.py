"""Time zones: which IANA zone a DTSTART is in.

A TZID that is an IANA or Windows name maps directly; a custom VTIMEZONE is matched by
its UTC offsets and the exact minutes of its transitions in every year the series uses;
floating times and dates take X-WR-TIMEZONE or the default zone.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Component
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from mappings.errors import MappingError
from mappings.from_ical.components import rules_of


def check_zone_name(name: str, *, item: str | None, field: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(f"unknown time zone {name!r}", item=item, field=field) from None


def zone_of(
    prop: Any,
    uid: str,
    default_timezone: str,
    calendar_timezone: str | None,
    master: Component,
    original: list[Component],
) -> str:
    """The IANA zone of DTSTART: TZID (Windows names mapped, custom VTIMEZONEs matched by
    their offsets), UTC for Z, X-WR-TIMEZONE or the default for floating and DATE values."""
    value = prop.dt
    tzid = prop.params.get("TZID")
    field_name = "DTSTART" if master.get("DTSTART") is not None else "DUE"
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        tz = value.tzinfo
        key = getattr(tz, "key", None)
        if isinstance(key, str):
            return "UTC" if key in ("UTC", "Etc/UTC", "Z") else key
        if tz is dt.UTC or (value.utcoffset() == dt.timedelta(0) and tzid is None):
            return "UTC"
        return _match_custom_zone(tz, str(tzid or ""), uid, field_name, value, original)
    if isinstance(value, dt.datetime) and tzid:
        raise MappingError(
            f"unknown TZID {tzid!r}: not an IANA or Windows name and no VTIMEZONE defines it",
            item=uid,
            field=field_name,
        )
    if calendar_timezone:
        check_zone_name(calendar_timezone, item=uid, field="X-WR-TIMEZONE")
        return calendar_timezone
    return default_timezone


def _match_custom_zone(
    tz: dt.tzinfo,
    tzid: str,
    uid: str,
    field_name: str,
    start: dt.datetime,
    original: list[Component],
) -> str:
    """The IANA zone whose UTC offsets agree with a custom VTIMEZONE in every year used.

    Offsets are compared every six hours, and every change of offset is located to the
    minute in both zones, so transitions must coincide exactly, not just the seasons.
    """
    years = _years_used(start, original)
    samples = [
        dt.datetime(year, month, day, 12, tzinfo=dt.UTC)
        for year in years
        for month in range(1, 13)
        for day in (1, 15)
    ]
    wanted = [s.astimezone(tz).utcoffset() for s in samples]
    for name in _zone_candidates(tzid):
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        pairs = zip(samples, wanted, strict=True)
        same = all(s.astimezone(zone).utcoffset() == w for s, w in pairs)
        if same and _transitions_agree(tz, zone, years):
            return name
    raise MappingError(
        f"the VTIMEZONE {tzid!r} matches no IANA time zone in {years[0]}–{years[-1]}",
        item=uid,
        field=field_name,
    )


def _years_used(start: dt.datetime, original: list[Component]) -> list[int]:
    years = {start.year}
    for component in original:
        for key in ("DTSTART", "RECURRENCE-ID", "DTEND"):
            value = component.get(key)
            if value is not None and isinstance(value.dt, dt.date):
                years.add(value.dt.year)
        for rule in rules_of(component, "RRULE"):
            for until in rule.get("UNTIL", []):
                if isinstance(until, dt.date):
                    years.add(until.year)
    first, last = min(years), max(years)
    last = min(max(last, first + 2), first + 30)
    return list(range(first, last + 1))


def _zone_candidates(tzid: str) -> list[str]:
    """Likely names first (an IANA suffix of the TZID, the Windows mapping), then all."""
    names: list[str] = []
    parts = [p for p in tzid.strip().strip('"').split("/") if p]
    for index in range(len(parts)):
        names.append("/".join(parts[index:]))
    if tzid in WINDOWS_TO_OLSON:
        names.append(WINDOWS_TO_OLSON[tzid])
    names.extend(dict.fromkeys(WINDOWS_TO_OLSON.values()))
    names.extend(sorted(zoneinfo.available_timezones()))
    return list(dict.fromkeys(names))


def _transitions_agree(custom: dt.tzinfo, zone: ZoneInfo, years: list[int]) -> bool:
    """Every offset change of ``zone`` in ``years`` happens at the same minute in ``custom``.

    The IANA zone is scanned (cheap); the custom one (dateutil evaluates its RRULEs from
    1601 on every call, which is slow) is only asked either side of each change.
    """
    step = dt.timedelta(hours=6)
    minute = dt.timedelta(minutes=1)
    moment = dt.datetime(years[0], 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(years[-1] + 1, 1, 1, tzinfo=dt.UTC)
    previous = moment.astimezone(zone).utcoffset()
    while moment < end:
        nxt = moment + step
        offset = nxt.astimezone(zone).utcoffset()
        if offset != previous:
            change = _change_at(zone, moment, nxt)
            for probe in (change - minute, change):
                if probe.astimezone(custom).utcoffset() != probe.astimezone(zone).utcoffset():
                    return False
        previous = offset
        moment = nxt
    return True


def _change_at(tz: dt.tzinfo, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
    """The first minute in (lo, hi] at which the offset differs from lo's."""
    before = lo.astimezone(tz).utcoffset()
    while hi - lo > dt.timedelta(minutes=1):
        mid = (lo + (hi - lo) / 2).replace(second=0, microsecond=0)
        if mid <= lo:
            break
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi
