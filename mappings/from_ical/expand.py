"""Expansion and comparison: where original and candidate are compared, and how.

The window is the whole series when it is bounded, else a horizon chosen by the rule's
finest frequency; every expansion (recurring-ical-events, dateutil) is bounded by the
window and by ``MAX_OCCURRENCES`` and refused before it would grow past it.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import recurring_ical_events
from dateutil.rrule import rrulestr
from icalendar import Calendar, Component, vRecur

from mappings.errors import MappingError
from mappings.from_ical.components import (
    FREQ_ORDER,
    Series,
    ical_text,
    instant_text,
    rules_of,
    values_of,
)
from mappings.model import FollowUp
from mappings.moments import Moment, to_local, wall_clock_key
from mappings.patterns import MAX_OCCURRENCES
from mappings.to_ical import followup_components

#: How far an open-ended rule is compared, by its smallest FREQ. Long enough to see
#: every month/weekday combination, short enough to stay fast (a few hundred instances).
_HORIZONS = {
    "SECONDLY": dt.timedelta(hours=2),
    "MINUTELY": dt.timedelta(days=3),
    "HOURLY": dt.timedelta(days=45),
    "DAILY": dt.timedelta(days=550),
    "WEEKLY": dt.timedelta(days=3 * 366),
    "MONTHLY": dt.timedelta(days=3 * 366),
    "YEARLY": dt.timedelta(days=12 * 366),
}

#: The DTSTAMP for the forward mapping used in verification; any fixed value will do.
_STAMP = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

Occ = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Window:
    lo: dt.datetime
    hi: dt.datetime


def window_of(series: Series) -> Window:
    """Where original and candidate are compared: the whole series when it is bounded
    (every RRULE has COUNT or UNTIL), else a horizon chosen by the rule's frequency."""
    master = series.master
    zone = series.zone
    first = aware_utc(series.start, zone)
    lo = first - dt.timedelta(days=2)
    hi = first + dt.timedelta(days=2)
    moments: list[dt.datetime] = [first]
    for component in series.original:
        for key in ("DTSTART", "RECURRENCE-ID", "DUE"):
            value = component.get(key)
            if value is not None:
                moments.append(aware_utc(value.dt, zone))
    for key in ("RDATE", "EXDATE"):
        for value in values_of(master, key):
            moments.append(aware_utc(value[0] if isinstance(value, tuple) else value, zone))
    lo = min([lo, *(m - dt.timedelta(days=2) for m in moments)])
    hi = max([hi, *(m + dt.timedelta(days=2) for m in moments)])
    rules = rules_of(master, "RRULE")
    if rules:
        freq = min((_effective_freq(r) for r in rules), key=FREQ_ORDER.index)
        horizon = first + _HORIZONS[freq]
        for rule in rules:
            last = _rule_last(rule, series)
            hi = max(hi, (last + dt.timedelta(days=2)) if last is not None else horizon)
        _check_window_size(rules, series, hi)
    return Window(lo, hi)


def _check_window_size(rules: list[vRecur], series: Series, hi: dt.datetime) -> None:
    """Refuse before expanding: recurring-ical-events builds every instance of the window
    at once, so FREQ=SECONDLY over the window would take minutes and gigabytes."""
    start = (
        series.start
        if isinstance(series.start, dt.datetime)
        else dt.datetime.combine(series.start, dt.time())
    )
    stop = hi.astimezone(series.zone).replace(tzinfo=None)
    seen = 0
    for rule in rules:
        bare = vRecur({k: v for k, v in rule.items() if k not in ("UNTIL", "COUNT")})
        limit = stop
        if "UNTIL" in rule:
            limit = min(
                limit,
                aware_utc(rule["UNTIL"][0], series.zone)
                .astimezone(series.zone)
                .replace(tzinfo=None),
            )
        count = int(rule["COUNT"][0]) if "COUNT" in rule else MAX_OCCURRENCES + 1
        try:
            instances = rrulestr(ical_text(bare), dtstart=start, cache=False)
            for index, moment in enumerate(instances):
                if moment > limit or index >= count:
                    break
                seen += 1
                if seen > MAX_OCCURRENCES:
                    raise MappingError(
                        f"more than {MAX_OCCURRENCES} occurrences in the compared window",
                        item=series.uid,
                        field="RRULE",
                    )
        except (ValueError, TypeError, OverflowError) as exc:
            raise MappingError(
                f"bad RRULE {ical_text(rule)!r}: {exc}", item=series.uid, field="RRULE"
            ) from None


def _effective_freq(rule: vRecur) -> str:
    """FREQ, made finer by BYHOUR/BYMINUTE/BYSECOND (FREQ=DAILY;BYMINUTE=0,20,40 is
    as dense as a minutely rule), so the horizon never holds more than a few hundred."""
    freq = str(rule["FREQ"][0]).upper()
    for part, finer in (("BYSECOND", "SECONDLY"), ("BYMINUTE", "MINUTELY"), ("BYHOUR", "HOURLY")):
        if part in rule and FREQ_ORDER.index(finer) < FREQ_ORDER.index(freq):
            return finer
    return freq


def _rule_last(rule: vRecur, series: Series) -> dt.datetime | None:
    """The last instance of a bounded rule (UTC, generously), None when open-ended."""
    if "UNTIL" in rule:
        return aware_utc(rule["UNTIL"][0], series.zone) + dt.timedelta(days=1)
    if "COUNT" not in rule:
        return None
    start = (
        series.start
        if isinstance(series.start, dt.datetime)
        else dt.datetime.combine(series.start, dt.time())
    )
    text = ical_text(rule)
    try:
        # islice: COUNT=1000000000 must not be materialised before it is refused.
        instances = list(
            itertools.islice(rrulestr(text, dtstart=start, cache=False), MAX_OCCURRENCES + 1)
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise MappingError(f"bad RRULE {text!r}: {exc}", item=series.uid, field="RRULE") from None
    if not instances:
        return None
    if len(instances) > MAX_OCCURRENCES:
        raise MappingError(
            f"more than {MAX_OCCURRENCES} occurrences", item=series.uid, field="RRULE"
        )
    return aware_utc(instances[-1], series.zone) + dt.timedelta(days=1)


def aware_utc(value: Moment, zone: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(dt.UTC)
    return dt.datetime.combine(value, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def expand_occurrences(
    components: Iterable[Component], window: Window, zone: ZoneInfo, uid: str
) -> list[Occ]:
    """Occurrences (start, end, summary, description, location) in the window, sorted;
    cancelled overrides do not occur."""
    cal = Calendar()
    for component in components:
        cal.add_component(component)
    try:
        query = recurring_ical_events.of(cal, components=["VEVENT", "VTODO"])
        found = query.between(window.lo, window.hi)
        result: list[Occ] = []
        for index, occurrence in enumerate(found):
            if index > MAX_OCCURRENCES:
                raise MappingError(
                    f"more than {MAX_OCCURRENCES} occurrences in the compared window",
                    item=uid,
                    field="RRULE",
                )
            if str(occurrence.get("STATUS", "")).upper() == "CANCELLED":
                continue
            start = occurrence.get("DTSTART") or occurrence.get("DUE")
            end = occurrence.get("DTEND") or occurrence.get("DUE") or start
            result.append(
                (
                    instant_text(start.dt, zone),
                    instant_text(end.dt, zone),
                    str(occurrence.get("SUMMARY", "")),
                    str(occurrence.get("DESCRIPTION", "")),
                    str(occurrence.get("LOCATION", "")),
                )
            )
    except MappingError:
        raise
    except Exception as exc:  # recurring-ical-events raises many types for bad rules
        raise MappingError(
            f"the series cannot be expanded: {exc}", item=uid, field="RRULE"
        ) from None
    return sorted(result)


def map_forward(followups: list[FollowUp]) -> list[Component]:
    result: list[Component] = []
    for followup in followups:
        result.extend(followup_components(followup, stamp=_STAMP).components)
    return result


# --- the master's own rule, before exceptions -------------------------------------------


@dataclass
class BaseRule:
    """The master's recurrence in local terms, before exceptions."""

    base: list[Moment]  # unedited occurrence keys (RRULE+RDATE−EXRULE), EXDATE not applied
    bounded: bool


def base_rule(series: Series, window: Window) -> BaseRule:
    """Expand the master alone, without EXDATE and overrides: the occurrence keys."""
    master = series.master.copy()
    for key in ("EXDATE",):
        if key in master:
            del master[key]
    for key in ("SUMMARY", "DESCRIPTION", "LOCATION", "STATUS"):
        if key in master:
            del master[key]
    moments: list[Moment] = []
    cal = Calendar()
    cal.add_component(master)
    try:
        found = recurring_ical_events.of(cal, components=["VEVENT", "VTODO"]).between(
            window.lo, window.hi
        )
        for index, occurrence in enumerate(found):
            if index > MAX_OCCURRENCES:
                break
            value = (occurrence.get("DTSTART") or occurrence.get("DUE")).dt
            moments.append(to_local(value, series.zone, series.all_day))
    except Exception as exc:
        raise MappingError(
            f"the series cannot be expanded: {exc}", item=series.uid, field="RRULE"
        ) from None
    bounded = all("COUNT" in r or "UNTIL" in r for r in rules_of(master, "RRULE"))
    return BaseRule(sorted(set(moments), key=wall_clock_key), bounded)
