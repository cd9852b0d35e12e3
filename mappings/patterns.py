"""The dates a SuperOffice recurrence pattern produces.

Semantics (each is tested in ``tests/mappings/test_patterns.py``):

* Occurrences are exactly the pattern's dates on or after ``StartDate`` (default: the
  date of the follow-up's ``start``). A start that is not on the pattern is not an
  occurrence: weekly Monday+Friday starting on a Thursday begins on the Friday.
* ``EndDate`` is inclusive. ``RecurrenceCounter`` counts occurrences. With neither, the
  series is open-ended (our extension: calendar clients make such series all the time);
  open-ended expansions are always bounded by a window and by ``MAX_OCCURRENCES``.
* Daily: EveryWorkday = Monday to Friday (holidays are not skipped, as in SuperOffice),
  EveryWeekday = every day, EveryCyclicDay = every ``Cycle`` days from the start date.
* Weekly: every ``Cycle`` weeks on the weekday set; weeks start on Monday and are
  counted from the week that holds the start date.
* Monthly: day ``Day``, or the first…fourth/last ``Weekday``, every ``Cycle`` months,
  counted from the month of the start date.
* Yearly: ``YearPattern.Cycle`` is the month; day ``Day`` or the Nth/last ``Weekday``
  of that month, every year.
* Day 29–31 in a month that is shorter (SuperOffice does not document it): the
  occurrence falls on the month's last day. A "day 31" series meets every month, the
  way Outlook does it, rather than silently skipping seven months a year as a bare
  BYMONTHDAY=31 would. iCalendar expresses this exactly with BYSETPOS (see
  ``mappings.rrule``). Yearly 29 February falls on 28 February in other years.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator

from mappings.errors import MappingError
from mappings.superoffice import (
    RecurrenceDailyPattern,
    RecurrenceEndType,
    RecurrenceInfo,
    RecurrenceMonthlyPattern,
    RecurrencePattern,
    RecurrenceYearlyPattern,
    WeekOfMonth,
    weekday_indexes,
)

#: Hard bound on any expansion: a series of more occurrences than this is refused,
#: and an open-ended one is cut there. Four years of workdays fit easily.
MAX_OCCURRENCES = 10_000

#: How far an open-ended series is expanded when nobody gives a window.
DEFAULT_OPEN_ENDED_YEARS = 2


def validate_pattern(info: RecurrenceInfo, item: str | None, start_date: dt.date) -> None:
    """Refuse patterns SuperOffice itself could not have made, naming the field."""

    def fail(field: str, message: str) -> MappingError:
        return MappingError(message, item=item, field=f"recurrence.{field}")

    pattern = info.Pattern
    if pattern == RecurrencePattern.Unknown:
        if info.IsRecurrence:
            raise fail("Pattern", "IsRecurrence is true but Pattern is Unknown")
        return
    if pattern == RecurrencePattern.Daily:
        day = info.DayPattern
        if day is None or day.Pattern == RecurrenceDailyPattern.Unknown:
            raise fail(
                "DayPattern.Pattern",
                "a daily pattern needs EveryWorkday, EveryWeekday or EveryCyclicDay",
            )
        if day.Pattern == RecurrenceDailyPattern.EveryCyclicDay and day.Cycle < 1:
            raise fail("DayPattern.Cycle", f"must be at least 1, got {day.Cycle}")
    elif pattern == RecurrencePattern.Weekly:
        week = info.WeekPattern
        if week is None or not weekday_indexes(week.Weekdays):
            raise fail("WeekPattern.Weekdays", "a weekly pattern needs at least one weekday")
        if week.Cycle < 1:
            raise fail("WeekPattern.Cycle", f"must be at least 1, got {week.Cycle}")
    elif pattern == RecurrencePattern.Monthly:
        month = info.MonthPattern
        if month is None or month.Pattern == RecurrenceMonthlyPattern.Unknown:
            raise fail(
                "MonthPattern.Pattern", "a monthly pattern needs DayOfMonth or WeekdayOfMonth"
            )
        if month.Cycle < 1:
            raise fail("MonthPattern.Cycle", f"must be at least 1, got {month.Cycle}")
        if month.Pattern == RecurrenceMonthlyPattern.DayOfMonth and not 1 <= month.Day <= 31:
            raise fail("MonthPattern.Day", f"must be 1 to 31, got {month.Day}")
        if month.Pattern == RecurrenceMonthlyPattern.WeekdayOfMonth:
            if not weekday_indexes(month.Weekday):
                raise fail("MonthPattern.Weekday", "a weekday-of-month pattern needs a weekday")
            if month.WeekOfMonth == WeekOfMonth.Unknown:
                raise fail(
                    "MonthPattern.WeekOfMonth", "must be First, Second, Third, Fourth or Last"
                )
    elif pattern == RecurrencePattern.Yearly:
        year = info.YearPattern
        if year is None or year.Pattern == RecurrenceYearlyPattern.Unknown:
            raise fail("YearPattern.Pattern", "a yearly pattern needs DayOfMonth or WeekdayOfMonth")
        if not 1 <= year.Cycle <= 12:
            raise fail("YearPattern.Cycle", f"is the month and must be 1 to 12, got {year.Cycle}")
        if year.Pattern == RecurrenceYearlyPattern.DayOfMonth and not 1 <= year.Day <= 31:
            raise fail("YearPattern.Day", f"must be 1 to 31, got {year.Day}")
        if year.Pattern == RecurrenceYearlyPattern.WeekdayOfMonth:
            if not weekday_indexes(year.Weekday):
                raise fail("YearPattern.Weekday", "a weekday-of-month pattern needs a weekday")
            if year.WeekOfMonth == WeekOfMonth.Unknown:
                raise fail(
                    "YearPattern.WeekOfMonth", "must be First, Second, Third, Fourth or Last"
                )
    elif pattern == RecurrencePattern.Custom:
        if not info.Dates:
            raise fail("Dates", "a custom pattern needs at least one date")
        return

    end_type = effective_end_type(info)
    if end_type == RecurrenceEndType.Counter:
        if info.RecurrenceCounter is None or info.RecurrenceCounter < 1:
            raise fail("RecurrenceCounter", f"must be at least 1, got {info.RecurrenceCounter}")
        if info.RecurrenceCounter > MAX_OCCURRENCES:
            raise fail(
                "RecurrenceCounter",
                f"at most {MAX_OCCURRENCES} occurrences, got {info.RecurrenceCounter}",
            )
    elif end_type == RecurrenceEndType.EndDate:
        first = info.StartDate or start_date
        if info.EndDate is None:
            raise fail("EndDate", "RecurrenceEndType is EndDate but no EndDate is given")
        if info.EndDate < first:
            raise fail("EndDate", f"{info.EndDate} is before the start date {first}")


def effective_end_type(info: RecurrenceInfo) -> RecurrenceEndType:
    """The end rule actually in force; Unknown means open-ended.

    SuperOffice always sets the type, but payloads written by hand often give only
    ``EndDate`` or only ``RecurrenceCounter``; read those the obvious way.
    """
    if info.RecurrenceEndType != RecurrenceEndType.Unknown:
        return info.RecurrenceEndType
    if info.EndDate is not None:
        return RecurrenceEndType.EndDate
    if info.RecurrenceCounter:
        return RecurrenceEndType.Counter
    return RecurrenceEndType.Unknown


def is_bounded(info: RecurrenceInfo) -> bool:
    return (
        info.Pattern == RecurrencePattern.Custom
        or effective_end_type(info) != RecurrenceEndType.Unknown
    )


def pattern_dates(
    info: RecurrenceInfo,
    default_start: dt.date,
    *,
    until: dt.date | None = None,
    limit: int = MAX_OCCURRENCES,
) -> list[dt.date]:
    """Every date of the pattern, in order, honouring its end and ``until`` (inclusive).

    Custom patterns have no rule: their dates are ``Dates``. ``until`` only narrows an
    expansion (open-ended series need it); it never extends a bounded one.
    """
    if info.Pattern == RecurrencePattern.Custom:
        dates = sorted({d.Date for d in info.Dates or [] if d.Date is not None})
        return [d for d in dates if until is None or d <= until][:limit]
    first = info.StartDate or default_start
    end_type = effective_end_type(info)
    last = until
    if end_type == RecurrenceEndType.EndDate and info.EndDate is not None:
        last = info.EndDate if last is None else min(last, info.EndDate)
    count = limit
    if end_type == RecurrenceEndType.Counter and info.RecurrenceCounter:
        count = min(count, info.RecurrenceCounter)
    if last is None and end_type == RecurrenceEndType.Unknown:
        last = _add_years(first, DEFAULT_OPEN_ENDED_YEARS)
    result: list[dt.date] = []
    for day in _generate(info, first):
        if last is not None and day > last:
            break
        result.append(day)
        if len(result) >= count:
            break
    return result


def _generate(info: RecurrenceInfo, first: dt.date) -> Iterator[dt.date]:
    """All pattern dates from ``first`` on, forever; callers stop it."""
    pattern = info.Pattern
    if pattern == RecurrencePattern.Daily:
        assert info.DayPattern is not None
        sub = info.DayPattern.Pattern
        step = info.DayPattern.Cycle if sub == RecurrenceDailyPattern.EveryCyclicDay else 1
        day = first
        while True:
            if sub != RecurrenceDailyPattern.EveryWorkday or day.weekday() < 5:
                yield day
            day += dt.timedelta(days=step)
    elif pattern == RecurrencePattern.Weekly:
        assert info.WeekPattern is not None
        days = weekday_indexes(info.WeekPattern.Weekdays)
        monday = first - dt.timedelta(days=first.weekday())
        while True:
            for index in days:
                day = monday + dt.timedelta(days=index)
                if day >= first:
                    yield day
            monday += dt.timedelta(weeks=info.WeekPattern.Cycle)
    elif pattern == RecurrencePattern.Monthly:
        month_info = info.MonthPattern
        assert month_info is not None
        year, month = first.year, first.month
        while True:
            for day in _days_in_month(
                year,
                month,
                month_info.Pattern == RecurrenceMonthlyPattern.DayOfMonth,
                month_info.Day,
                month_info.Weekday,
                month_info.WeekOfMonth,
            ):
                if day >= first:
                    yield day
            year, month = _add_months(year, month, month_info.Cycle)
    elif pattern == RecurrencePattern.Yearly:
        year_info = info.YearPattern
        assert year_info is not None
        year = first.year
        while True:
            for day in _days_in_month(
                year,
                year_info.Cycle,
                year_info.Pattern == RecurrenceYearlyPattern.DayOfMonth,
                year_info.Day,
                year_info.Weekday,
                year_info.WeekOfMonth,
            ):
                if day >= first:
                    yield day
            year += 1
    else:  # pragma: no cover - validate_pattern refuses the rest
        raise MappingError(f"pattern {pattern.name} has no rule", field="recurrence.Pattern")


def _days_in_month(
    year: int, month: int, by_day_number: bool, day: int, weekdays: int, week: WeekOfMonth
) -> list[dt.date]:
    length = calendar.monthrange(year, month)[1]
    if by_day_number:
        return [dt.date(year, month, min(day, length))]
    result = []
    for index in weekday_indexes(weekdays):  # type: ignore[arg-type]
        result.append(nth_weekday(year, month, index, week))
    return sorted(result)


def nth_weekday(year: int, month: int, weekday: int, week: WeekOfMonth) -> dt.date:
    """The first…fourth or last given weekday (Mon=0) of a month."""
    length = calendar.monthrange(year, month)[1]
    if week == WeekOfMonth.Last:
        last = dt.date(year, month, length)
        return last - dt.timedelta(days=(last.weekday() - weekday) % 7)
    first = dt.date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 7 * (int(week) - 1))


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)
