"""CRM patterns as RRULEs, and rules kept verbatim (``ical_recurrence``).

The RRULE we write always generates exactly the pattern's dates from DTSTART on, and
DTSTART is always one of them. The table (also in the README):

=========================================  ==================================================
CRM pattern                                RRULE
=========================================  ==================================================
Daily, every workday (Mon–Fri)             FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR
Daily, every weekday (Mon–Sun)             FREQ=DAILY
Daily, every N days                        FREQ=DAILY;INTERVAL=N
Weekly, every N weeks on days              FREQ=WEEKLY;INTERVAL=N;BYDAY=…;WKST=MO
Monthly, day D (D ≤ 28)                    FREQ=MONTHLY;INTERVAL=N;BYMONTHDAY=D
Monthly, day 29 or 30                      FREQ=MONTHLY;INTERVAL=N;BYMONTHDAY=28,…,D;BYSETPOS=-1
Monthly, day 31                            FREQ=MONTHLY;INTERVAL=N;BYMONTHDAY=-1
Monthly, Nth / last weekday                FREQ=MONTHLY;INTERVAL=N;BYDAY=2TH / -1TH
Yearly, day D of month M                   FREQ=YEARLY;BYMONTH=M;BYMONTHDAY=D (clamped alike)
Yearly, Nth / last weekday of month M      FREQ=YEARLY;BYMONTH=M;BYDAY=4TH / -1TH
ends after n                               COUNT=n
ends on date E (inclusive)                 UNTIL=E 23:59:59 local, in UTC (a DATE for all-day)
=========================================  ==================================================

WKST=MO is written only when it matters (weekly with an interval above one), and
always then, because a client whose week starts on Sunday would otherwise group the
weeks differently.
"""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

import recurring_ical_events
from icalendar import Calendar, Component, Event, vDDDLists, vDDDTypes, vPeriod, vRecur

from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.moments import Moment, date_of
from mappings.patterns import (
    DEFAULT_OPEN_ENDED_YEARS,
    MAX_OCCURRENCES,
    _add_years,
    effective_end_type,
)
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

ICAL_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def rule_parts(info: RecurrenceInfo) -> list[tuple[str, str]]:
    """The RRULE of a CRM pattern without its end, as ordered (name, value) pairs."""
    pattern = info.Pattern
    if pattern == RecurrencePattern.Daily:
        assert info.DayPattern is not None
        sub = info.DayPattern.Pattern
        if sub == RecurrenceDailyPattern.EveryWorkday:
            return [("FREQ", "DAILY"), ("BYDAY", "MO,TU,WE,TH,FR")]
        if sub == RecurrenceDailyPattern.EveryWeekday:
            return [("FREQ", "DAILY")]
        return [("FREQ", "DAILY"), *_interval(info.DayPattern.Cycle)]
    if pattern == RecurrencePattern.Weekly:
        assert info.WeekPattern is not None
        days = ",".join(ICAL_DAYS[i] for i in weekday_indexes(info.WeekPattern.Weekdays))
        parts = [("FREQ", "WEEKLY"), *_interval(info.WeekPattern.Cycle), ("BYDAY", days)]
        if info.WeekPattern.Cycle > 1:
            parts.append(("WKST", "MO"))
        return parts
    if pattern == RecurrencePattern.Monthly:
        month = info.MonthPattern
        assert month is not None
        parts = [("FREQ", "MONTHLY"), *_interval(month.Cycle)]
        if month.Pattern == RecurrenceMonthlyPattern.DayOfMonth:
            return parts + _month_day(month.Day, shortest=28, longest=31)
        return [*parts, ("BYDAY", _nth_days(month.Weekday, month.WeekOfMonth))]
    if pattern == RecurrencePattern.Yearly:
        year = info.YearPattern
        assert year is not None
        parts = [("FREQ", "YEARLY"), ("BYMONTH", str(year.Cycle))]
        if year.Pattern == RecurrenceYearlyPattern.DayOfMonth:
            shortest = 28 if year.Cycle == 2 else calendar.monthrange(2001, year.Cycle)[1]
            longest = 29 if year.Cycle == 2 else shortest
            return parts + _month_day(year.Day, shortest=shortest, longest=longest)
        return [*parts, ("BYDAY", _nth_days(year.Weekday, year.WeekOfMonth))]
    raise MappingError(f"pattern {pattern.name} has no RRULE", field="recurrence.Pattern")


def _interval(cycle: int) -> list[tuple[str, str]]:
    return [("INTERVAL", str(cycle))] if cycle > 1 else []


def _month_day(day: int, *, shortest: int, longest: int) -> list[tuple[str, str]]:
    """Day D of a month, falling back to the month's last day when the month is shorter."""
    if day <= shortest:
        return [("BYMONTHDAY", str(day))]
    if day >= longest:
        return [("BYMONTHDAY", "-1")]
    candidates = ",".join(str(d) for d in range(shortest, day + 1))
    return [("BYMONTHDAY", candidates), ("BYSETPOS", "-1")]


def _nth_days(weekdays: int, week: WeekOfMonth) -> str:
    ordinal = "-1" if week == WeekOfMonth.Last else str(int(week))
    return ",".join(f"{ordinal}{ICAL_DAYS[i]}" for i in weekday_indexes(weekdays))  # type: ignore[arg-type]


def rrule_for(info: RecurrenceInfo, *, zone: ZoneInfo, all_day: bool, count: int | None) -> vRecur:
    """The full RRULE, with COUNT (already adjusted by the caller) or UNTIL."""
    parts = rule_parts(info)
    end_type = effective_end_type(info)
    text = ";".join(f"{k}={v}" for k, v in parts)
    if end_type == RecurrenceEndType.Counter and count is not None:
        text += f";COUNT={count}"
    elif end_type == RecurrenceEndType.EndDate and info.EndDate is not None:
        text += f";UNTIL={until_value(info.EndDate, zone=zone, all_day=all_day)}"
    rule: vRecur = vRecur.from_ical(text)  # from_ical has no return annotation
    return rule


def until_value(end_date: dt.date, *, zone: ZoneInfo, all_day: bool) -> str:
    if all_day:
        return end_date.strftime("%Y%m%d")
    last_moment = dt.datetime.combine(end_date, dt.time(23, 59, 59), tzinfo=zone)
    return last_moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def ical_moment(value: Moment, zone: ZoneInfo) -> Moment:
    """A local document moment as the value icalendar writes (DATE, or DATE-TIME with TZID)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value
    return value


# --- rules kept verbatim ---------------------------------------------------------------
#
# Writing a kept rule (``apply_kept_rule``) lives here, not in ``mappings.to_ical``:
# expanding the rule (``ical_recurrence_starts``, which ``mappings.occurrences`` calls)
# needs it, and to_ical sits above occurrences.


def apply_kept_rule(component: Component, followup: FollowUp) -> None:
    """Write an ``ical_recurrence`` back as the RRULE/EXRULE/RDATE lines it came from."""
    kept = followup.ical_recurrence
    assert kept is not None
    zone = followup.zone
    for value in kept.rrule:
        component.add("rrule", vRecur.from_ical(value))
    for value in kept.exrule:
        component.add("exrule", vRecur.from_ical(value))
    for value in kept.rdate:
        parsed = parse_rdate(value, zone)
        if isinstance(parsed, tuple):
            # A bare vPeriod serialises right (TZID, VALUE=PERIOD) but recurring-ical-events
            # reads RDATE values through ``.dts``; a one-value list with vPeriod's
            # parameters serves both.
            line = vDDDLists([parsed])
            line.params = vPeriod(parsed).params
            component.add("rdate", line)
        else:
            component.add("rdate", [parsed])


def validate_ical_recurrence(followup: FollowUp) -> None:
    kept = followup.ical_recurrence
    assert kept is not None
    if not kept.rrule and not kept.rdate:
        raise MappingError(
            "needs at least one rrule or rdate", item=followup.id, field="ical_recurrence"
        )
    for key, values in (("rrule", kept.rrule), ("exrule", kept.exrule)):
        for index, value in enumerate(values):
            try:
                recur = vRecur.from_ical(value)
            except (ValueError, TypeError) as exc:
                raise MappingError(
                    f"{value!r} is not an RRULE value ({exc})",
                    item=followup.id,
                    field=f"ical_recurrence.{key}.{index}",
                ) from None
            if "FREQ" not in recur:
                raise MappingError(
                    "FREQ is missing", item=followup.id, field=f"ical_recurrence.{key}.{index}"
                )
    for index, value in enumerate(kept.rdate):
        try:
            parse_rdate(value, followup.zone)
        except ValueError as exc:
            raise MappingError(
                str(exc), item=followup.id, field=f"ical_recurrence.rdate.{index}"
            ) from None


def parse_rdate(
    value: str, zone: ZoneInfo
) -> Moment | tuple[dt.datetime, dt.datetime | dt.timedelta]:
    """One kept RDATE value: a local date-time, a date, a UTC time or a period."""
    text = value.strip()
    try:
        if "/" in text:
            # icalendar leaves vPeriod.from_ical and vDDDTypes.from_ical unannotated.
            period = vPeriod.from_ical(  # type: ignore[no-untyped-call]
                text, timezone=str(zone.key) if not text.endswith("Z") else None
            )
            start, end_or_duration = period
            if isinstance(start, dt.datetime) and start.tzinfo is None:
                start = start.replace(tzinfo=zone)
            if isinstance(end_or_duration, dt.datetime) and end_or_duration.tzinfo is None:
                end_or_duration = end_or_duration.replace(tzinfo=zone)
            return (start, end_or_duration)
        parsed = vDDDTypes.from_ical(text)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        raise ValueError(f"{value!r} is not an RDATE value (date, date-time or period)") from None
    if isinstance(parsed, dt.datetime) and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    if not isinstance(parsed, (dt.datetime, dt.date)):
        raise ValueError(f"{value!r} is not an RDATE value (date, date-time or period)")
    return parsed


def ical_recurrence_starts(followup: FollowUp, *, until: dt.date | None) -> list[Moment]:
    """The unedited occurrence starts of a kept rule, as naive local times (or dates).

    The rule's meaning is iCalendar's, so it is expanded the way calendar clients do,
    with recurring-ical-events, on a bare master event.
    """
    zone = followup.zone
    event = Event()
    event.add("uid", "expand")
    event.add("dtstart", ical_moment(followup.start, zone))
    event.add("dtend", ical_moment(followup.end, zone))
    apply_kept_rule(event, followup)
    cal = Calendar()
    cal.add_component(event)
    start = followup.start
    horizon = until or _add_years(date_of(start), DEFAULT_OPEN_ENDED_YEARS)
    query = recurring_ical_events.of(cal)
    result: list[Moment] = []
    lo: Moment = start if followup.all_day else start.replace(tzinfo=zone)  # type: ignore[call-arg]
    earliest = _earliest_rdate(followup, zone)
    if earliest is not None and _key(earliest) < _key(lo):
        lo = earliest
    # ``between`` with the horizon, not ``after``: after the last instance of a bounded
    # rule, ``after`` keeps widening its search window towards year 9999 (minutes of CPU).
    first = lo if not isinstance(lo, dt.datetime) else lo - dt.timedelta(seconds=1)
    for component in query.between(first, horizon + dt.timedelta(days=2)):
        value = component["DTSTART"].dt
        local = _to_local(value, zone, followup.all_day)
        if date_of(local) > horizon:
            continue
        result.append(local)
        if len(result) >= MAX_OCCURRENCES:
            break
    return sorted(set(result), key=_key)


def _earliest_rdate(followup: FollowUp, zone: ZoneInfo) -> Moment | None:
    assert followup.ical_recurrence is not None
    values: list[Moment] = []
    for text in followup.ical_recurrence.rdate:
        parsed = parse_rdate(text, zone)
        values.append(parsed[0] if isinstance(parsed, tuple) else parsed)
    if not values:
        return None
    return min(values, key=_key)


def _to_local(value: Moment, zone: ZoneInfo, all_day: bool) -> Moment:
    """An expanded start in the document's terms. Unlike ``mappings.moments.to_local``, an
    all-day series takes the date as recurring-ical-events gives it, without a zone change."""
    if isinstance(value, dt.datetime):
        if all_day:
            return value.date()
        if value.tzinfo is not None:
            return value.astimezone(zone).replace(tzinfo=None)
        return value
    if not all_day:
        return dt.datetime.combine(value, dt.time())
    return value


def _key(value: Moment) -> dt.datetime:
    """Sort key for expanded starts; unlike ``mappings.moments.instant_key``, aware values
    stay in their zone (two in the same zone compare by wall time, as before the move)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
