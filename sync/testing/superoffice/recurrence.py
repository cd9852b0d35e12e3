"""SuperOffice's recurrence rule (`RecurrenceInfo`) expanded into the dates it books.

SuperOffice stores a series as a rule plus one appointment row per date; the rows are what users
see and edit. The stand-in needs the same expansion SuperOffice runs when a series is saved, and
`CalculateDays` answers with it. The patterns and sub-patterns are those of
shared/reference/superoffice-recurrence.md §1.2 and §2.2; where the documentation is silent the
choice made here is marked *inferred* (see docs/reference/superoffice-standin.md).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEK_OF_MONTH = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
# Every SuperOffice rule ends (EndDate or Counter), but a typo in a test must not hang it.
MAX_OCCURRENCES = 1000


class RecurrenceError(ValueError):
    """The rule cannot be expanded (unknown pattern, no end, a sub-pattern of another pattern)."""


def parse_weekdays(value: Any) -> set[int]:
    """Weekday flags as Python weekday numbers (Monday 0).

    The description types the field as one day name; a .NET [Flags] enum with several days
    serialises as "Tuesday, Thursday", and the database holds a bitmask (Monday=1 … Sunday=64),
    so all three forms are read (*inferred*: the JSON form of several days is undocumented).
    """
    if isinstance(value, int):
        return {day for day in range(7) if value & (1 << day)}
    names = [name.strip() for name in str(value or "").split(",") if name.strip()]
    return {WEEKDAYS.index(name) for name in names if name in WEEKDAYS}


def format_weekdays(days: set[int]) -> str:
    return ", ".join(WEEKDAYS[day] for day in sorted(days)) or "Unknown"


def parse_time(value: str) -> datetime:
    """SuperOffice timestamps: ISO 8601, local time without an offset (an offset is dropped)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)


def _nth_weekday(year: int, month: int, weekday: int, week_of_month: str) -> date | None:
    days = [
        date(year, month, day)
        for day in range(1, calendar.monthrange(year, month)[1] + 1)
        if date(year, month, day).weekday() == weekday
    ]
    index = WEEK_OF_MONTH.get(week_of_month)
    if index is None:
        raise RecurrenceError(f"WeekOfMonth {week_of_month!r}")
    if index == -1:
        return days[-1]
    return days[index - 1] if index <= len(days) else None


def _day_of_month(year: int, month: int, day: int) -> date:
    """Day 29-31 in a shorter month falls on its last day (*inferred*: undocumented)."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _months_from(start: date, cycle: int) -> Iterator[tuple[int, int]]:
    year, month = start.year, start.month
    while True:
        yield year, month
        month += cycle
        year, month = year + (month - 1) // 12, (month - 1) % 12 + 1


def _candidates(info: Mapping[str, Any], start: date) -> Iterator[date]:
    pattern = info.get("Pattern")
    if pattern == "Daily":
        daily = info.get("DayPattern") or {}
        sub = daily.get("Pattern")
        step = max(1, int(daily.get("Cycle") or 1)) if sub == "EveryCyclicDay" else 1
        if sub not in ("EveryWorkday", "EveryWeekday", "EveryCyclicDay"):
            raise RecurrenceError(f"DayPattern {sub!r}")
        day = start
        while True:
            if sub != "EveryWorkday" or day.weekday() < 5:
                yield day
            day += timedelta(days=step)
    elif pattern == "Weekly":
        weekly = info.get("WeekPattern") or {}
        days = parse_weekdays(weekly.get("Weekdays")) or {start.weekday()}
        cycle = max(1, int(weekly.get("Cycle") or 1))
        monday = start - timedelta(days=start.weekday())
        while True:
            yield from (monday + timedelta(days=day) for day in sorted(days))
            monday += timedelta(weeks=cycle)
    elif pattern == "Monthly":
        monthly = info.get("MonthPattern") or {}
        cycle = max(1, int(monthly.get("Cycle") or 1))
        for year, month in _months_from(start, cycle):
            found = _month_day(monthly, year, month)
            if found is not None:
                yield found
    elif pattern == "Yearly":
        yearly = info.get("YearPattern") or {}
        month = int(yearly.get("Cycle") or start.month)  # YearPattern.Cycle is the month
        for year in range(start.year, start.year + MAX_OCCURRENCES):
            found = _month_day(yearly, year, month)
            if found is not None:
                yield found
    else:
        raise RecurrenceError(f"Pattern {pattern!r}")


def _month_day(sub: Mapping[str, Any], year: int, month: int) -> date | None:
    if sub.get("Pattern") == "DayOfMonth":
        return _day_of_month(year, month, int(sub.get("Day") or 1))
    if sub.get("Pattern") == "WeekdayOfMonth":
        weekday = WEEKDAYS.index(str(sub.get("Weekday")))
        return _nth_weekday(year, month, weekday, str(sub.get("WeekOfMonth")))
    raise RecurrenceError(f"sub-pattern {sub.get('Pattern')!r}")


def expand(info: Mapping[str, Any]) -> list[date]:
    """The dates a rule books, in order, from its StartDate to its EndDate or Counter.

    The end date is inclusive (*inferred*). Custom series are their `Dates` list.
    """
    if info.get("Pattern") == "Custom":
        return sorted({parse_time(entry["Date"]).date() for entry in info.get("Dates") or []})
    start = parse_time(str(info["StartDate"])).date()
    end_type = info.get("RecurrenceEndType")
    if end_type == "EndDate":
        last = parse_time(str(info["EndDate"])).date()
        limit = MAX_OCCURRENCES
    elif end_type == "Counter":
        last = date.max
        limit = min(int(info.get("RecurrenceCounter") or 0), MAX_OCCURRENCES)
    else:
        raise RecurrenceError("a SuperOffice series ends by EndDate or Counter")
    dates: list[date] = []
    for day in _candidates(info, start):
        if day > last or len(dates) >= limit:
            break
        if day >= start:
            dates.append(day)
    return dates
