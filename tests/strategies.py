"""Hypothesis strategies for valid follow-up documents.

``followup_documents()`` draws JSON-like dicts that ``mappings.documents.load_followup``
accepts; ``followups()`` draws the validated ``FollowUp`` objects. What they cover:

* every pattern and sub-pattern (Daily workday/weekday/every N days, Weekly on 1–7 days
  every 1–4 weeks, Monthly day 1–31 or First…Last weekday every 1–12 months, Yearly both
  kinds in any month, Custom with 1–20 dates), plus a few non-recurring follow-ups;
* ends by Counter, by (inclusive) EndDate or none (open-ended), a StartDate that is
  sometimes off the pattern;
* enums as names, numbers, numeric strings or lower-case names; Weekdays as a .NET
  flags string, a list, a bitmask or a ``|``-separated string;
* kinds appointment/task/call, all-day or timed, several time zones (southern DST,
  half-hour offsets, UTC) and start times close to DST changes;
* hand edits: a ``Dates`` list with pattern dates deleted and dates added (bounded
  series only) and ``exceptions`` (cancelled, moved, retitled) keyed by real
  occurrences, picked from ``mappings.occurrences.occurrences``.

Series stay small so the property tests are quick: at most about three years and
``MAX_SERIES`` occurrences; open-ended series are expanded by the model's own horizon.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from mappings.documents import load_followup
from mappings.model import FollowUp
from mappings.occurrences import occurrences
from mappings.patterns import _add_years, is_bounded, pattern_dates
from mappings.superoffice import RecurrenceInfo

TIMEZONES = (
    "Europe/Oslo",
    "America/New_York",
    "Australia/Sydney",  # southern hemisphere: DST from October to April
    "Asia/Kolkata",  # +05:30, no DST
    "UTC",
    "Europe/London",
)
FIRST_YEAR = 2020
LAST_YEAR = 2033  # + 3 years stays below 2038, where the embedded VTIMEZONEs stop
MAX_YEARS = 3
MAX_SERIES = 200
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
KINDS = ("appointment", "task", "call")

PATTERN_NUMBERS = {"Daily": 1, "Weekly": 2, "Monthly": 3, "Yearly": 4, "Custom": 5}
END_NUMBERS = {"EndDate": 1, "Counter": 2}
DAILY_NUMBERS = {"EveryWorkday": 1, "EveryWeekday": 2, "EveryCyclicDay": 3}
MONTHLY_NUMBERS = {"DayOfMonth": 4, "WeekdayOfMonth": 5}
YEARLY_NUMBERS = {"DayOfMonth": 6, "WeekdayOfMonth": 7}
WEEK_NUMBERS = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": 5}


@cache
def dst_change_days(zone_name: str) -> tuple[dt.date, ...]:
    """Days on which ``zone_name`` changes its UTC offset, in the years we generate."""
    zone = ZoneInfo(zone_name)
    days = []
    day = dt.date(FIRST_YEAR, 1, 1)
    last = dt.date(LAST_YEAR, 12, 31)
    previous = dt.datetime.combine(day, dt.time(), tzinfo=zone).utcoffset()
    while day <= last:
        offset = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone).utcoffset()
        if offset != previous:
            days.append(day)
        previous = offset
        day += dt.timedelta(days=1)
    return tuple(days)


# --- enum spellings ---


def _enum(name: str, numbers: dict[str, int]) -> st.SearchStrategy[Any]:
    """One enum member as SuperOffice or a hand-written payload might spell it."""
    number = numbers[name]
    return st.sampled_from([name, number, str(number), name.lower()])


def _weekdays(indexes: list[int]) -> st.SearchStrategy[Any]:
    names = [WEEKDAY_NAMES[i] for i in indexes]
    mask = sum(1 << i for i in indexes)
    return st.sampled_from([", ".join(names), names, mask, str(mask), "|".join(names)])


def _iso_date(day: dt.date) -> st.SearchStrategy[str]:
    """A date, as a plain date or the date-time SuperOffice sends."""
    return st.sampled_from([day.isoformat(), f"{day.isoformat()}T00:00:00"])


# --- patterns ---


@st.composite
def _rule(draw: st.DrawFn, start: dt.date) -> dict[str, Any]:
    """The pattern part of a RecurrenceInfo (no end, no dates)."""
    pattern = draw(st.sampled_from(["Daily", "Weekly", "Monthly", "Yearly"]))
    info: dict[str, Any] = {"Pattern": draw(_enum(pattern, PATTERN_NUMBERS))}
    if pattern == "Daily":
        sub = draw(st.sampled_from(list(DAILY_NUMBERS)))
        day: dict[str, Any] = {"Pattern": draw(_enum(sub, DAILY_NUMBERS))}
        if sub == "EveryCyclicDay":
            day["Cycle"] = draw(st.integers(1, 10))
        elif draw(st.booleans()):
            day["Cycle"] = draw(st.integers(0, 3))  # ignored by the other sub-patterns
        info["DayPattern"] = day
    elif pattern == "Weekly":
        indexes = sorted(draw(st.sets(st.integers(0, 6), min_size=1, max_size=7)))
        info["WeekPattern"] = {
            "Weekdays": draw(_weekdays(indexes)),
            "Cycle": draw(st.integers(1, 4)),
        }
    elif pattern == "Monthly":
        sub = draw(st.sampled_from(list(MONTHLY_NUMBERS)))
        month: dict[str, Any] = {
            "Pattern": draw(_enum(sub, MONTHLY_NUMBERS)),
            "Cycle": draw(st.integers(1, 12)),
        }
        if sub == "DayOfMonth":
            month["Day"] = draw(
                st.one_of(st.integers(1, 31), st.sampled_from([start.day, 29, 30, 31]))
            )
        else:
            month.update(draw(_weekday_of_month()))
        info["MonthPattern"] = month
    else:
        sub = draw(st.sampled_from(list(YEARLY_NUMBERS)))
        year: dict[str, Any] = {
            "Pattern": draw(_enum(sub, YEARLY_NUMBERS)),
            "Cycle": draw(st.one_of(st.integers(1, 12), st.just(start.month))),
        }
        if sub == "DayOfMonth":
            year["Day"] = draw(st.one_of(st.integers(1, 31), st.sampled_from([start.day, 29])))
        else:
            year.update(draw(_weekday_of_month()))
        info["YearPattern"] = year
    return info


@st.composite
def _weekday_of_month(draw: st.DrawFn) -> dict[str, Any]:
    # SuperOffice picks one weekday; the model also takes several, so sometimes give two.
    indexes = sorted(
        draw(st.sets(st.integers(0, 6), min_size=1, max_size=draw(st.sampled_from([1, 1, 1, 2]))))
    )
    week = draw(st.sampled_from(list(WEEK_NUMBERS)))
    return {"Weekday": draw(_weekdays(indexes)), "WeekOfMonth": draw(_enum(week, WEEK_NUMBERS))}


def _pattern_dates(
    recurrence: dict[str, Any], start: dt.date, *, until: dt.date | None = None
) -> list[dt.date]:
    info = RecurrenceInfo.model_validate(recurrence)
    return pattern_dates(info, start, until=until, limit=MAX_SERIES + 1)


@st.composite
def _recurrence(draw: st.DrawFn, start: dt.date) -> dict[str, Any]:
    """A whole RecurrenceInfo: pattern, start, end and perhaps an edited Dates list."""
    horizon = _add_years(start, MAX_YEARS)
    if draw(st.integers(0, 9)) == 0:
        count = draw(st.integers(1, 20))
        days = draw(
            st.lists(
                st.integers(0, (horizon - start).days), min_size=count, max_size=count, unique=True
            )
        )
        dates = sorted(start + dt.timedelta(days=d) for d in days)
        info: dict[str, Any] = {
            "Pattern": draw(_enum("Custom", PATTERN_NUMBERS)),
            "Dates": [{"Date": draw(_iso_date(d))} for d in dates],
        }
        if draw(st.booleans()):
            info["IsRecurrence"] = True
        return info

    info = draw(_rule(start))
    if draw(st.booleans()):
        # StartDate: usually the follow-up's date, sometimes a few days off (maybe off-pattern).
        shift = draw(st.sampled_from([0, 0, 1, 2, 3, 5, -1]))
        info["StartDate"] = draw(_iso_date(start + dt.timedelta(days=shift)))
    first = dt.date.fromisoformat(info["StartDate"][:10]) if "StartDate" in info else start
    # Never more than MAX_SERIES occurrences or MAX_YEARS years, whatever the end.
    within = _pattern_dates(info, first, until=_add_years(first, MAX_YEARS))[:MAX_SERIES]

    end = draw(st.sampled_from(["Counter", "EndDate", "open"]))
    if end == "open" or not within:
        if end != "open":
            end = "EndDate"
            info["EndDate"] = draw(_iso_date(first))
        return _set_end_type(draw, info, end)
    if end == "Counter":
        info["RecurrenceCounter"] = min(draw(st.integers(1, 60)), len(within))
    else:
        last = draw(st.one_of(st.sampled_from(within), st.dates(first, within[-1])))
        info["EndDate"] = draw(_iso_date(last))
    info = _set_end_type(draw, info, end)

    if draw(st.integers(0, 3)) == 0:
        pattern = _pattern_dates(info, first)
        kept = [d for d in pattern if draw(st.integers(0, 4)) != 0]
        span_from = (pattern[0] if pattern else first) - dt.timedelta(days=10)
        span_to = (pattern[-1] if pattern else first) + dt.timedelta(days=30)
        added = draw(st.lists(st.dates(span_from, span_to), max_size=3))
        final = sorted(set(kept) | set(added))
        if final:  # an empty list would mean "not edited"
            info["Dates"] = [{"Date": draw(_iso_date(d))} for d in final]
    return info


def _set_end_type(draw: st.DrawFn, info: dict[str, Any], end: str) -> dict[str, Any]:
    """RecurrenceEndType spelled out, or left for the model to infer from the fields."""
    if end != "open" and draw(st.integers(0, 3)) != 0:
        info["RecurrenceEndType"] = draw(_enum(end, END_NUMBERS))
    elif end == "open" and draw(st.booleans()):
        info["RecurrenceEndType"] = draw(st.sampled_from(["Unknown", 0]))
    return info


# --- times ---


@st.composite
def _start(draw: st.DrawFn, zone_name: str, all_day: bool) -> dt.datetime | dt.date:
    """A start date (and time), often on or next to a DST change of the zone."""
    changes = dst_change_days(zone_name)
    near_change = bool(changes) and draw(st.integers(0, 2)) == 0
    if near_change:
        day = draw(st.sampled_from(changes)) + dt.timedelta(
            days=draw(st.sampled_from([0, 0, 0, -1, 1, -7]))
        )
    else:
        day = draw(st.dates(dt.date(FIRST_YEAR, 1, 1), dt.date(LAST_YEAR, 12, 31)))
    if all_day:
        return day
    if near_change:
        time = dt.time(draw(st.integers(0, 3)), draw(st.sampled_from([0, 15, 30, 45])))
    else:
        time = draw(
            st.one_of(
                st.sampled_from(
                    [dt.time(9), dt.time(14, 30), dt.time(0), dt.time(23, 45), dt.time(2, 30)]
                ),
                st.builds(dt.time, st.integers(0, 23), st.sampled_from([0, 5, 15, 30, 45])),
            )
        )
    return dt.datetime.combine(day, time)


_titles = st.one_of(
    st.sampled_from(
        ["Status meeting", "Call Kari", "Send offer", "Møte, uke; 3", "Line\nbreak", ""]
    ),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
)


@st.composite
def _base_document(draw: st.DrawFn) -> dict[str, Any]:
    """Everything but the exceptions."""
    zone_name = draw(st.sampled_from(TIMEZONES))
    all_day = draw(st.integers(0, 4)) == 0
    start = draw(_start(zone_name, all_day))
    if all_day:
        end: dt.date | dt.datetime = start + dt.timedelta(
            days=draw(st.sampled_from([1, 1, 1, 2, 3, 0]))
        )
    else:
        end = start + dt.timedelta(
            minutes=draw(st.one_of(st.sampled_from([0, 30, 60, 90]), st.integers(0, 26 * 60)))
        )
    doc: dict[str, Any] = {
        "id": str(draw(st.integers(1, 10**6))),
        "title": draw(_titles),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "timezone": zone_name,
    }
    kind = draw(st.sampled_from(KINDS))
    if kind != "appointment" or draw(st.booleans()):
        doc["kind"] = kind
    if all_day:
        doc["all_day"] = True
    if draw(st.integers(0, 3)) == 0:
        doc["location"] = draw(
            st.sampled_from(["Oslo", "Room 1, 2nd floor", "https://meet.example/x"])
        )
    if draw(st.integers(0, 3)) == 0:
        doc["description"] = draw(st.sampled_from(["Agenda:\n1. numbers", "Bring the contract"]))
    day = (
        start if isinstance(start, dt.date) and not isinstance(start, dt.datetime) else start.date()
    )
    choice = draw(st.sampled_from(["recurring"] * 18 + ["none", "stopped"]))
    if choice == "none":
        pass  # not recurring
    elif choice == "stopped":  # how CRMScript says "not recurring"
        doc["recurrence"] = {
            "IsRecurrence": False,
            "Pattern": draw(st.sampled_from(["Unknown", 0])),
        }
    else:
        doc["recurrence"] = draw(_recurrence(day))
    return doc


@st.composite
def _exceptions(draw: st.DrawFn, followup: FollowUp) -> list[dict[str, Any]]:
    """Cancelled and moved/retitled occurrences, keyed by real occurrences of the series."""
    originals = [o.original_start for o in occurrences(followup)]
    if not originals:
        return []
    keys = draw(st.lists(st.sampled_from(originals), min_size=1, max_size=4, unique=True))
    result = []
    for key in keys:
        local = key.replace(tzinfo=None) if isinstance(key, dt.datetime) else key
        item: dict[str, Any] = {"original_start": local.isoformat()}
        action = draw(st.sampled_from(["cancel", "move", "retitle", "move+retitle", "move+end"]))
        if action == "cancel":
            item["cancelled"] = True
            result.append(item)
            continue
        if "move" in action:
            if followup.all_day:
                new_start: dt.date | dt.datetime = local + dt.timedelta(
                    days=draw(st.integers(-3, 3))
                )
                span = dt.timedelta(days=draw(st.integers(0, 2)))
            else:
                new_start = local + dt.timedelta(
                    minutes=draw(st.integers(-3 * 24 * 60, 3 * 24 * 60))
                )
                span = dt.timedelta(minutes=draw(st.integers(0, 5 * 60)))
            item["start"] = new_start.isoformat()
            if action == "move+end":
                item["end"] = (new_start + span).isoformat()
        if "retitle" in action:
            item["title"] = draw(_titles)
            if draw(st.booleans()):
                item["location"] = "Moved room"
        result.append(item)
    return result


@st.composite
def followup_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid follow-up document, as the CRM (or a person) might write it."""
    doc = draw(_base_document())
    followup = load_followup(doc)
    if (
        followup.recurrence is not None
        and followup.recurrence.repeats
        and draw(st.integers(0, 2)) == 0
    ):
        exceptions = draw(_exceptions(followup))
        if exceptions:
            doc["exceptions"] = exceptions
    return doc


def followups() -> st.SearchStrategy[FollowUp]:
    """Validated follow-ups drawn from ``followup_documents()``."""
    return followup_documents().map(load_followup)


@st.composite
def all_cancelled_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A bounded recurring follow-up with every occurrence cancelled."""
    doc = draw(_base_document().filter(_is_bounded_series))
    originals = [o.original_start for o in occurrences(load_followup(doc))]
    doc["exceptions"] = [
        {
            "original_start": (
                o.replace(tzinfo=None) if isinstance(o, dt.datetime) else o
            ).isoformat(),
            "cancelled": True,
        }
        for o in originals
    ]
    return doc


def _is_bounded_series(doc: dict[str, Any]) -> bool:
    info = load_followup(doc).recurrence
    return info is not None and info.repeats and is_bounded(info)
