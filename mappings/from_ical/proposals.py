"""Rule → candidate representations, best first.

The CRM pattern the follow-up last used, the patterns an RRULE may mean when read for its
shape (``_structural``: Daily every workday = Weekly Mon–Fri …), the same with the complete
``Dates`` list, a Custom date list, and last the rule kept verbatim. Only the shape is read
here; whether a candidate really means the rule is proved by ``represent``.
"""

from __future__ import annotations

import calendar as calendar_module
import datetime as dt
from collections.abc import Iterable
from typing import Any

from icalendar import vDDDTypes, vDuration, vRecur

from mappings.from_ical.build import Edits, build_followup, series_duration
from mappings.from_ical.components import (
    ALL_DAYS,
    ICAL_DAYS,
    WORKDAYS,
    Series,
    ical_text,
    rules_of,
    values_of,
)
from mappings.from_ical.expand import BaseRule, Window, aware_utc
from mappings.model import FollowUp, IcalRecurrence
from mappings.moments import Moment, date_of, naive, time_of, to_local, wall_clock_key
from mappings.occurrences import occurrences
from mappings.patterns import effective_end_type
from mappings.superoffice import (
    DayPatternInfo,
    MonthPatternInfo,
    RecurrenceDailyPattern,
    RecurrenceDate,
    RecurrenceEndType,
    RecurrenceInfo,
    RecurrenceMonthlyPattern,
    RecurrencePattern,
    RecurrenceYearlyPattern,
    Weekday,
    WeekOfMonth,
    WeekPatternInfo,
    YearPatternInfo,
    weekday_flags,
)

#: RRULE parts a CRM pattern can express; any other part means "keep the rule".
_CRM_RULE_PARTS = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
)


def _parse_byday(values: list[Any]) -> list[tuple[int | None, int]]:
    result = []
    for value in values:
        text = str(value).upper().strip()
        day = ICAL_DAYS.index(text[-2:])
        ordinal = int(text[:-2]) if text[:-2] not in ("", "+") else None
        result.append((ordinal, day))
    return result


def _week_of(ordinal: int) -> WeekOfMonth | None:
    return {
        1: WeekOfMonth.First,
        2: WeekOfMonth.Second,
        3: WeekOfMonth.Third,
        4: WeekOfMonth.Fourth,
        -1: WeekOfMonth.Last,
    }.get(ordinal)


def _structural(rule: vRecur, start: Moment) -> list[RecurrenceInfo]:
    """CRM patterns that may mean this RRULE (without its end), most natural first.

    Only the shape is read here; whether a pattern really means the rule is decided by
    comparing occurrences, so a guess that is wrong for this DTSTART is harmless.
    """
    parts = {k.upper() for k in rule}
    if not parts <= _CRM_RULE_PARTS:
        return []
    freq = str(rule["FREQ"][0]).upper()
    interval = int(rule.get("INTERVAL", [1])[0])
    byday = _parse_byday(rule.get("BYDAY", []))
    bymonthday = [int(v) for v in rule.get("BYMONTHDAY", [])]
    bymonth = [int(v) for v in rule.get("BYMONTH", [])]
    bysetpos = [int(v) for v in rule.get("BYSETPOS", [])]
    day0 = date_of(start)
    plain_days = {d for o, d in byday if o is None}
    has_ordinals = any(o is not None for o, _ in byday)

    def daily(sub: RecurrenceDailyPattern, cycle: int = 0) -> RecurrenceInfo:
        return RecurrenceInfo(
            Pattern=RecurrencePattern.Daily, DayPattern=DayPatternInfo(Pattern=sub, Cycle=cycle)
        )

    def weekly(days: set[int], cycle: int) -> RecurrenceInfo:
        return RecurrenceInfo(
            Pattern=RecurrencePattern.Weekly,
            WeekPattern=WeekPatternInfo(Weekdays=weekday_flags(days), Cycle=cycle),
        )

    def same_week_forms(days: frozenset[int] | set[int]) -> list[RecurrenceInfo]:
        if days == WORKDAYS:
            return [daily(RecurrenceDailyPattern.EveryWorkday), weekly(set(days), 1)]
        if days == ALL_DAYS:
            return [
                daily(RecurrenceDailyPattern.EveryWeekday),
                daily(RecurrenceDailyPattern.EveryCyclicDay, 1),
                weekly(set(days), 1),
            ]
        return [weekly(set(days), 1)]

    if freq == "DAILY":
        if bymonth or bymonthday or bysetpos or has_ordinals:
            return []
        if not byday:
            if interval == 1:
                return same_week_forms(ALL_DAYS)
            return [daily(RecurrenceDailyPattern.EveryCyclicDay, interval)]
        return same_week_forms(plain_days) if interval == 1 else []
    if freq == "WEEKLY":
        if bymonth or bymonthday or bysetpos or has_ordinals:
            return []
        days = plain_days or {day0.weekday()}
        if interval == 1:
            forms = same_week_forms(days)
            return [forms[-1], *forms[:-1]]  # Weekly first: that is what the client wrote
        return [weekly(days, interval)]
    if freq in ("MONTHLY", "YEARLY"):
        if freq == "YEARLY" and interval != 1:
            return []  # SuperOffice's yearly pattern has no interval
        if freq == "MONTHLY" and bymonth:
            return []
        if freq == "YEARLY":
            if (
                len(bymonth) > 1
                or (byday and not bymonth)
                or (bymonthday and not bymonth and len(bymonthday) > 1)
            ):
                return []
            month = bymonth[0] if bymonth else day0.month
            month_length = 29 if month == 2 else calendar_module.monthrange(2001, month)[1]
        else:
            month = 0
            month_length = 31
        # (kind, day, weekday flags, week)
        day_forms: list[tuple[str, int, Weekday, WeekOfMonth]] = []
        if byday:
            if bymonthday:
                return []
            ordinals = {o for o, _ in byday}
            days = {d for _, d in byday}
            if len(ordinals) == 1 and None not in ordinals and not bysetpos:
                week = _week_of(next(iter(ordinals)))  # type: ignore[arg-type]
                if week is None:
                    return []
                day_forms.append(("weekday", 0, weekday_flags(days), week))
            elif ordinals == {None} and len(days) == 1 and len(bysetpos) == 1:
                week = _week_of(bysetpos[0])
                if week is None:
                    return []
                day_forms.append(("weekday", 0, weekday_flags(days), week))
            else:
                return []
        elif bymonthday:
            if bysetpos:
                wanted = sorted(bymonthday)
                if (
                    bysetpos == [-1]
                    and wanted == list(range(wanted[0], wanted[-1] + 1))
                    and wanted[0] >= 28
                ):
                    day_forms.append(("day", wanted[-1], Weekday.Unknown, WeekOfMonth.Unknown))
                else:
                    return []
            elif len(bymonthday) == 1:
                value = bymonthday[0]
                if value == -1:
                    day_forms.append(("day", month_length, Weekday.Unknown, WeekOfMonth.Unknown))
                elif 1 <= value <= 31:
                    day_forms.append(("day", value, Weekday.Unknown, WeekOfMonth.Unknown))
                else:
                    return []
            else:
                return []
        else:
            if bysetpos:
                return []
            day_forms.append(("day", day0.day, Weekday.Unknown, WeekOfMonth.Unknown))
        kind, day, flags, week = day_forms[0]
        results: list[RecurrenceInfo] = []
        if freq == "MONTHLY":
            results.append(_monthly(kind, day, flags, week, interval))
            if interval == 12:
                results.append(_yearly(kind, day, flags, week, day0.month))
        else:
            results.append(_yearly(kind, day, flags, week, month))
            results.append(_monthly(kind, day, flags, week, 12))
        return results
    return []


def _monthly(kind: str, day: int, flags: Weekday, week: WeekOfMonth, cycle: int) -> RecurrenceInfo:
    if kind == "day":
        info = MonthPatternInfo(Pattern=RecurrenceMonthlyPattern.DayOfMonth, Cycle=cycle, Day=day)
    else:
        info = MonthPatternInfo(
            Pattern=RecurrenceMonthlyPattern.WeekdayOfMonth,
            Cycle=cycle,
            Weekday=flags,
            WeekOfMonth=week,
        )
    return RecurrenceInfo(Pattern=RecurrencePattern.Monthly, MonthPattern=info)


def _yearly(kind: str, day: int, flags: Weekday, week: WeekOfMonth, month: int) -> RecurrenceInfo:
    if kind == "day":
        info = YearPatternInfo(Pattern=RecurrenceYearlyPattern.DayOfMonth, Cycle=month, Day=day)
    else:
        info = YearPatternInfo(
            Pattern=RecurrenceYearlyPattern.WeekdayOfMonth,
            Cycle=month,
            Weekday=flags,
            WeekOfMonth=week,
        )
    return RecurrenceInfo(Pattern=RecurrencePattern.Yearly, YearPattern=info)


def _form(info: RecurrenceInfo) -> tuple[Any, ...]:
    """The shape of a pattern (Pattern and sub-pattern), for preferring ``known``'s form."""
    sub: Any = None
    if info.DayPattern is not None and info.Pattern == RecurrencePattern.Daily:
        sub = info.DayPattern.Pattern
    elif info.MonthPattern is not None and info.Pattern == RecurrencePattern.Monthly:
        sub = info.MonthPattern.Pattern
    elif info.YearPattern is not None and info.Pattern == RecurrencePattern.Yearly:
        sub = info.YearPattern.Pattern
    return (info.Pattern, sub)


def _with_end(info: RecurrenceInfo, rule: vRecur, series: Series) -> RecurrenceInfo:
    """Add COUNT → Counter or UNTIL → inclusive local EndDate to a pattern."""
    update: dict[str, Any] = {"StartDate": date_of(series.start), "IsRecurrence": True}
    if "COUNT" in rule:
        update.update(
            RecurrenceEndType=RecurrenceEndType.Counter, RecurrenceCounter=int(rule["COUNT"][0])
        )
    elif "UNTIL" in rule:
        update.update(
            RecurrenceEndType=RecurrenceEndType.EndDate,
            EndDate=_until_date(rule["UNTIL"][0], series),
        )
    return info.model_copy(update=update)


def _until_date(until: Any, series: Series) -> dt.date:
    """The last local date UNTIL still admits: the day before when UNTIL is earlier in
    the day than the series' time of day."""
    if not isinstance(until, dt.datetime):
        return until  # type: ignore[no-any-return]
    local = until.astimezone(series.zone).replace(tzinfo=None) if until.tzinfo else until
    if isinstance(series.start, dt.datetime) and local.time() < series.start.time():
        return local.date() - dt.timedelta(days=1)
    return local.date()


Proposal = tuple[RecurrenceInfo | None, IcalRecurrence | None, str]


def proposals(
    series: Series,
    rule: BaseRule,
    edits: Edits,
    known: FollowUp | None,
    window: Window,
    reasons: list[str],
    synthetic: bool,
) -> Iterable[Proposal]:
    """Representations to try, best first (see the module docstring)."""
    master = series.master
    rrules = rules_of(master, "RRULE")
    exrules = rules_of(master, "EXRULE")
    rdates = values_of(master, "RDATE")
    keys = sorted(set(rule.base) | set(edits.extra), key=wall_clock_key)
    if not rrules and not rdates and not exrules and not edits.extra and not synthetic:
        yield (None, None, "")
        if not edits.overrides and not edits.cancelled:
            return
        # A single event with an override of its one occurrence: a one-date Custom series.
    times_align = all(time_of(k) == time_of(series.start) for k in keys)
    periods_align = all(
        not isinstance(v, tuple) or _period_span(v) == series_duration(series) for v in rdates
    )
    if len(rrules) == 1 and not exrules:
        candidates = _structural(rrules[0], series.start)
        if known is not None and known.recurrence is not None and known.recurrence.repeats:
            wanted = _form(known.recurrence)
            candidates.sort(key=lambda c: 0 if _form(c) == wanted else 1)
        for candidate in candidates:
            info = _with_end(candidate, rrules[0], series)
            if (
                known is not None
                and known.recurrence is not None
                and known.recurrence.RecurrenceId is not None
            ):
                info = info.model_copy(update={"RecurrenceId": known.recurrence.RecurrenceId})
            pattern = _pattern_keys(series, info, window)
            if pattern is None:
                continue
            if pattern == keys:
                yield (info, None, "")
            elif (
                rule.bounded
                and times_align
                and periods_align
                and effective_end_type(info) != RecurrenceEndType.Unknown
            ):
                dates = [RecurrenceDate(Date=date_of(k)) for k in keys]
                yield (info.model_copy(update={"Dates": dates}), None, "")
    elif not rrules and not exrules and times_align and periods_align:
        dates = [RecurrenceDate(Date=date_of(k)) for k in keys]
        yield (
            RecurrenceInfo(Pattern=RecurrencePattern.Custom, Dates=dates, IsRecurrence=True),
            None,
            "",
        )
    if not rrules and not exrules and not times_align:
        reasons.append("the added dates have different times of day")
    kept = IcalRecurrence(
        rrule=[_rule_text(r, series) for r in rrules],
        exrule=[_rule_text(r, series) for r in exrules],
        rdate=[_rdate_text(v, series) for v in rdates]
        + [_rdate_text(k, series) for k in edits.extra if k not in _rdate_keys(rdates, series)],
    )
    yield (None, kept, "no CRM pattern expresses this rule exactly; kept as an iCalendar rule")


def _rdate_keys(rdates: list[Any], series: Series) -> set[Moment]:
    return {
        to_local(v[0] if isinstance(v, tuple) else v, series.zone, series.all_day) for v in rdates
    }


def _period_span(value: tuple[Any, Any]) -> dt.timedelta:
    start, end = value
    return end if isinstance(end, dt.timedelta) else end - start


def _pattern_keys(series: Series, info: RecurrenceInfo, window: Window) -> list[Moment] | None:
    """The occurrence keys a CRM pattern gives, by the model's own expansion."""
    probe = build_followup(series, recurrence=info, ical=None, exceptions=[])
    if probe is None:
        return None
    hi = window.hi.astimezone(series.zone).replace(tzinfo=None)
    found = occurrences(probe, window_end=hi.date() if series.all_day else hi)
    return sorted(
        {o.original_start if series.all_day else naive(o.original_start) for o in found},
        key=wall_clock_key,
    )


def _rule_text(rule: vRecur, series: Series) -> str:
    """A rule verbatim, except that a floating or zoned UNTIL becomes UTC (RFC 5545
    requires it once DTSTART has a TZID, which the document always gives it)."""
    copy = vRecur({k: list(v) for k, v in rule.items()})
    if "UNTIL" in copy:
        until = copy["UNTIL"][0]
        if isinstance(until, dt.datetime) and not series.all_day:
            copy["UNTIL"] = [aware_utc(until, series.zone)]
    return ical_text(copy)


def _rdate_text(value: Any, series: Series) -> str:
    """An RDATE value as ``IcalRecurrence.rdate`` holds it, in the follow-up's zone."""
    if isinstance(value, tuple):
        start, end = value
        text = _moment_text(start, series)
        if isinstance(end, dt.timedelta):
            return f"{text}/{ical_text(vDuration(end))}"
        return f"{text}/{_moment_text(end, series)}"
    return _moment_text(value, series)


def _moment_text(value: Any, series: Series) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            local = value.astimezone(series.zone)
            if local.replace(tzinfo=None).replace(tzinfo=series.zone).astimezone(
                dt.UTC
            ) != value.astimezone(dt.UTC):
                return str(value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ"))
            value = local.replace(tzinfo=None)
        return str(value.strftime("%Y%m%dT%H%M%S"))
    return str(vDDDTypes(value).to_ical().decode())
