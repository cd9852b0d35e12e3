"""The pattern semantics of ``mappings.patterns``, one example per thing a user would notice."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events
from icalendar import Calendar

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.model import FollowUp
from mappings.occurrences import occurrences
from mappings.to_ical import to_ical_bytes

OSLO = ZoneInfo("Europe/Oslo")
D = dt.date


def followup(recurrence: dict[str, Any] | None, **fields: Any) -> FollowUp:
    """A follow-up document; ``end`` defaults to an hour after ``start``."""
    if "start" in fields and "end" not in fields and not fields.get("all_day"):
        fields["end"] = (
            dt.datetime.fromisoformat(fields["start"]) + dt.timedelta(hours=1)
        ).isoformat()
    doc: dict[str, Any] = {
        "id": "42",
        "title": "Status",
        "start": "2025-01-06T09:00:00",
        "end": "2025-01-06T10:00:00",
        "timezone": "Europe/Oslo",
        **fields,
    }
    if recurrence is not None:
        doc["recurrence"] = recurrence
    return load_followup(doc)


def wall_clock(moment: Any) -> dt.datetime:
    """What an Oslo clock shows (``astimezone`` to the same zone would be a no-op)."""
    return moment.astimezone(dt.UTC).astimezone(OSLO).replace(tzinfo=None)  # type: ignore[no-any-return]


def dates(item: FollowUp) -> list[dt.date]:
    return [
        o.start.date() if isinstance(o.start, dt.datetime) else o.start for o in occurrences(item)
    ]


def counter(n: int) -> dict[str, Any]:
    return {"RecurrenceEndType": "Counter", "RecurrenceCounter": n}


def weekly(weekdays: Any, cycle: int = 1) -> dict[str, Any]:
    return {"Pattern": "Weekly", "WeekPattern": {"Weekdays": weekdays, "Cycle": cycle}}


def monthly(**month: Any) -> dict[str, Any]:
    return {"Pattern": "Monthly", "MonthPattern": {"Cycle": 1, **month}}


# --- daily and weekly ---


def test_every_workday_skips_weekends() -> None:
    item = followup(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}, **counter(5)},
        start="2025-01-03T09:00",
    )
    # Friday 3 January, then Monday to Thursday of the next week.
    assert dates(item) == [
        D(2025, 1, 3),
        D(2025, 1, 6),
        D(2025, 1, 7),
        D(2025, 1, 8),
        D(2025, 1, 9),
    ]


def test_every_weekday_includes_weekends() -> None:
    item = followup(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWeekday"}, **counter(3)},
        start="2025-01-04T09:00",
    )
    assert dates(item) == [D(2025, 1, 4), D(2025, 1, 5), D(2025, 1, 6)]


def test_every_third_day_counts_from_the_start_date() -> None:
    item = followup(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 3}, **counter(3)},
        start="2025-01-30T09:00",
    )
    assert dates(item) == [D(2025, 1, 30), D(2025, 2, 2), D(2025, 2, 5)]


def test_weekly_monday_and_friday_starting_on_a_thursday_begins_on_the_friday() -> None:
    item = followup(
        {**weekly("Monday, Friday"), **counter(3)}, start="2025-01-02T09:00", end="2025-01-02T10:00"
    )
    assert dates(item) == [D(2025, 1, 3), D(2025, 1, 6), D(2025, 1, 10)]


def test_every_second_week_is_counted_from_the_week_of_the_start() -> None:
    # Start on Wednesday 8 January (the week of Monday 6 January): that week, then every other one.
    item = followup(
        {**weekly("Monday, Wednesday", 2), **counter(5)},
        start="2025-01-08T09:00",
        end="2025-01-08T10:00",
    )
    assert dates(item) == [
        D(2025, 1, 8),
        D(2025, 1, 20),
        D(2025, 1, 22),
        D(2025, 2, 3),
        D(2025, 2, 5),
    ]


def test_weeks_start_on_monday_even_for_a_sunday_start() -> None:
    # Sunday 12 January ends the week of Monday 6 January; the next week in the cycle is 20 January.
    item = followup(
        {**weekly("Monday, Sunday", 2), **counter(3)},
        start="2025-01-12T09:00",
        end="2025-01-12T10:00",
    )
    assert dates(item) == [D(2025, 1, 12), D(2025, 1, 20), D(2025, 1, 26)]


# --- monthly and yearly ---


def test_day_31_monthly_falls_on_the_last_day_of_shorter_months() -> None:
    item = followup(
        {**monthly(Pattern="DayOfMonth", Day=31), **counter(5)},
        start="2024-01-31T09:00",
        end="2024-01-31T10:00",
    )
    assert dates(item) == [
        D(2024, 1, 31),
        D(2024, 2, 29),
        D(2024, 3, 31),
        D(2024, 4, 30),
        D(2024, 5, 31),
    ]
    item = followup(
        {**monthly(Pattern="DayOfMonth", Day=31), **counter(2)},
        start="2025-01-31T09:00",
        end="2025-01-31T10:00",
    )
    assert dates(item) == [D(2025, 1, 31), D(2025, 2, 28)]


def test_day_30_monthly_is_the_28th_or_29th_in_february() -> None:
    item = followup(
        {**monthly(Pattern="DayOfMonth", Day=30, Cycle=12), **counter(2)},
        start="2024-02-01T09:00",
        end="2024-02-01T10:00",
    )
    assert dates(item) == [D(2024, 2, 29), D(2025, 2, 28)]


def test_fourth_thursday_of_the_month() -> None:
    item = followup(
        {
            **monthly(Pattern="WeekdayOfMonth", Weekday="Thursday", WeekOfMonth="Fourth"),
            **counter(3),
        },
        start="2025-01-01T09:00",
        end="2025-01-01T10:00",
    )
    assert dates(item) == [D(2025, 1, 23), D(2025, 2, 27), D(2025, 3, 27)]


def test_last_friday_of_the_month() -> None:
    item = followup(
        {**monthly(Pattern="WeekdayOfMonth", Weekday="Friday", WeekOfMonth="Last"), **counter(3)},
        start="2025-01-01T09:00",
        end="2025-01-01T10:00",
    )
    assert dates(item) == [D(2025, 1, 31), D(2025, 2, 28), D(2025, 3, 28)]


def test_every_second_month_is_counted_from_the_start_month() -> None:
    item = followup(
        {**monthly(Pattern="DayOfMonth", Day=20, Cycle=2), **counter(3)},
        start="2025-01-25T09:00",
        end="2025-01-25T10:00",
    )
    # 20 January is before the start, so the first is 20 March.
    assert dates(item) == [D(2025, 3, 20), D(2025, 5, 20), D(2025, 7, 20)]


def test_yearly_29_february_falls_on_28_february_in_common_years() -> None:
    item = followup(
        {
            "Pattern": "Yearly",
            "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 2, "Day": 29},
            **counter(5),
        },
        start="2024-02-29T09:00",
        end="2024-02-29T10:00",
    )
    assert dates(item) == [
        D(2024, 2, 29),
        D(2025, 2, 28),
        D(2026, 2, 28),
        D(2027, 2, 28),
        D(2028, 2, 29),
    ]


def test_yearly_fourth_thursday_of_november() -> None:
    item = followup(
        {
            "Pattern": "Yearly",
            "YearPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 11,
                "Weekday": "Thursday",
                "WeekOfMonth": "Fourth",
            },
            **counter(2),
        },
    )
    assert dates(item) == [D(2025, 11, 27), D(2026, 11, 26)]


# --- ends ---


def test_end_date_is_inclusive() -> None:
    item = followup(
        {**weekly("Monday"), "RecurrenceEndType": "EndDate", "EndDate": "2025-01-27T00:00:00"}
    )
    assert dates(item) == [D(2025, 1, 6), D(2025, 1, 13), D(2025, 1, 20), D(2025, 1, 27)]


def test_end_date_inclusive_in_the_calendar_too() -> None:
    """A client expanding the output also shows the meeting on the end date."""
    item = followup({**weekly("Monday"), "RecurrenceEndType": "EndDate", "EndDate": "2025-01-27"})
    cal = Calendar.from_ical(to_ical_bytes([item], stamp=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)))
    found = recurring_ical_events.of(cal).between(D(2025, 1, 1), D(2025, 3, 1))
    assert sorted(c["DTSTART"].dt.date() for c in found) == dates(item)


def test_counter_counts_occurrences_not_days() -> None:
    # Starts on a Saturday: the ten occurrences are the ten workdays from Monday 6 January.
    item = followup(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}, **counter(10)},
        start="2025-01-04T09:00",
    )
    assert len(dates(item)) == 10
    assert dates(item)[0] == D(2025, 1, 6)
    assert dates(item)[-1] == D(2025, 1, 17)


def test_end_type_can_be_left_out_when_the_end_is_given() -> None:
    by_count = followup({**weekly("Monday"), "RecurrenceCounter": 3})
    by_date = followup({**weekly("Monday"), "EndDate": "2025-01-20"})
    assert dates(by_count) == dates(by_date) == [D(2025, 1, 6), D(2025, 1, 13), D(2025, 1, 20)]


# --- time zones and DST ---


def test_nine_oclock_oslo_stays_nine_oclock_across_both_dst_changes() -> None:
    item = followup(
        {**weekly("Friday"), "EndDate": "2025-11-07"},
        start="2025-03-21T09:00",
        end="2025-03-21T10:00",
    )
    found = occurrences(item)
    assert {wall_clock(o.start).time() for o in found} == {dt.time(9)}  # type: ignore[union-attr]
    offsets = {o.start.date(): o.start.utcoffset() for o in found}  # type: ignore[union-attr]
    assert offsets[D(2025, 3, 28)] == dt.timedelta(hours=1)  # before 30 March
    assert offsets[D(2025, 4, 4)] == dt.timedelta(hours=2)  # summer time
    assert offsets[D(2025, 10, 24)] == dt.timedelta(hours=2)
    assert offsets[D(2025, 10, 31)] == dt.timedelta(hours=1)  # after 26 October
    # So the UTC time moves: 08:00 UTC in winter, 07:00 UTC in summer.
    assert found[0].start.astimezone(dt.UTC).time() == dt.time(8)  # type: ignore[union-attr]
    assert found[3].start.astimezone(dt.UTC).time() == dt.time(7)  # type: ignore[union-attr]


def test_nine_oclock_oslo_in_the_calendar_output_too() -> None:
    item = followup(
        {**weekly("Friday"), "EndDate": "2025-11-07"},
        start="2025-03-21T09:00",
        end="2025-03-21T10:00",
    )
    cal = Calendar.from_ical(to_ical_bytes([item], stamp=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)))
    found = recurring_ical_events.of(cal).between(D(2025, 1, 1), D(2026, 1, 1))
    starts = sorted(c["DTSTART"].dt.astimezone(dt.UTC) for c in found)
    assert starts == [o.start.astimezone(dt.UTC) for o in occurrences(item)]  # type: ignore[union-attr]
    assert {s.astimezone(OSLO).time() for s in starts} == {dt.time(9)}


def test_a_0230_start_on_the_spring_forward_day_becomes_0330() -> None:
    item = followup(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWeekday"}, **counter(2)},
        start="2025-03-30T02:30",
        end="2025-03-30T03:30",
    )
    first, second = occurrences(item)
    assert wall_clock(first.start) == dt.datetime(2025, 3, 30, 3, 30)  # type: ignore[union-attr]
    assert first.start.astimezone(dt.UTC) == dt.datetime(2025, 3, 30, 1, 30, tzinfo=dt.UTC)  # type: ignore[union-attr]
    # The next day 02:30 exists again.
    assert wall_clock(second.start) == dt.datetime(2025, 3, 31, 2, 30)  # type: ignore[union-attr]


def test_all_day_follow_ups_are_dates_whatever_the_zone() -> None:
    item = followup(
        {**weekly("Monday"), **counter(2)},
        all_day=True,
        start="2025-03-24",
        end="2025-03-25",
        timezone="Australia/Sydney",
    )
    assert [(o.start, o.end) for o in occurrences(item)] == [
        (D(2025, 3, 24), D(2025, 3, 25)),
        (D(2025, 3, 31), D(2025, 4, 1)),
    ]


# --- hand edits ---


def test_dates_list_deletes_and_adds_dates() -> None:
    dates_list = [{"Date": f"2025-01-{day:02d}T00:00:00"} for day in (6, 20, 27, 29)]
    item = followup({**weekly("Monday"), **counter(4), "Dates": dates_list})
    # 13 January was deleted, Wednesday 29 January added.
    assert dates(item) == [D(2025, 1, 6), D(2025, 1, 20), D(2025, 1, 27), D(2025, 1, 29)]


def test_cancelled_and_moved_occurrences() -> None:
    item = followup(
        {**weekly("Monday"), **counter(3)},
        exceptions=[
            {"original_start": "2025-01-13T09:00:00", "cancelled": True},
            {
                "original_start": "2025-01-20T09:00:00",
                "start": "2025-01-21T11:00:00",
                "title": "Moved",
            },
        ],
    )
    shown = [(wall_clock(o.start), o.title) for o in occurrences(item, include_cancelled=False)]  # type: ignore[union-attr]
    assert shown == [
        (dt.datetime(2025, 1, 6, 9), "Status"),
        (dt.datetime(2025, 1, 21, 11), "Moved"),
    ]


def test_custom_pattern_is_its_date_list() -> None:
    custom = {
        "Pattern": "Custom",
        "Dates": [{"Date": "2020-09-21"}, {"Date": "2020-08-17"}, {"Date": "2020-11-16"}],
    }
    item = followup(custom, start="2020-08-17T14:00", end="2020-08-17T15:00")
    assert dates(item) == [D(2020, 8, 17), D(2020, 9, 21), D(2020, 11, 16)]


# --- spellings ---


@pytest.mark.parametrize("pattern", ["Weekly", 2, "2", "weekly"])
@pytest.mark.parametrize(
    "weekdays", ["Monday, Friday", ["Monday", "Friday"], 17, "17", "Monday|Friday", ["Monday", 16]]
)
@pytest.mark.parametrize("end_type", ["Counter", 2])
def test_enum_names_numbers_and_weekday_forms_give_the_same_series(
    pattern: Any, weekdays: Any, end_type: Any
) -> None:
    item = followup(
        {
            "Pattern": pattern,
            "WeekPattern": {"Weekdays": weekdays, "Cycle": 1},
            "RecurrenceEndType": end_type,
            "RecurrenceCounter": 4,
        }
    )
    assert dates(item) == [D(2025, 1, 6), D(2025, 1, 10), D(2025, 1, 13), D(2025, 1, 17)]


@pytest.mark.parametrize(
    "month",
    [
        {"Pattern": "WeekdayOfMonth", "Weekday": "Friday", "WeekOfMonth": "Last"},
        {"Pattern": 5, "Weekday": 16, "WeekOfMonth": 5},
        {"Pattern": "5", "Weekday": ["Friday"], "WeekOfMonth": "last"},
    ],
)
def test_monthly_enum_spellings_agree(month: dict[str, Any]) -> None:
    item = followup(
        {
            "Pattern": 3,
            "MonthPattern": {"Cycle": 1, **month},
            "RecurrenceEndType": 2,
            "RecurrenceCounter": 2,
        }
    )
    assert dates(item) == [D(2025, 1, 31), D(2025, 2, 28)]


# --- invalid input ---

WEEKLY = {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday", "Cycle": 1}, **counter(3)}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param(
            {"recurrence": {**WEEKLY, "Pattern": "Fortnightly"}},
            "recurrence.Pattern",
            id="unknown-pattern",
        ),
        pytest.param(
            {
                "recurrence": {
                    "Pattern": "Daily",
                    "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 0},
                    **counter(3),
                }
            },
            "recurrence.DayPattern.Cycle",
            id="daily-cycle-0",
        ),
        pytest.param(
            {"recurrence": {**WEEKLY, "WeekPattern": {"Weekdays": "Monday", "Cycle": 0}}},
            "recurrence.WeekPattern.Cycle",
            id="weekly-cycle-0",
        ),
        pytest.param(
            {"recurrence": {**monthly(Pattern="DayOfMonth", Day=6, Cycle=0), **counter(3)}},
            "recurrence.MonthPattern.Cycle",
            id="monthly-cycle-0",
        ),
        pytest.param(
            {"recurrence": {**WEEKLY, "WeekPattern": {"Weekdays": 0, "Cycle": 1}}},
            "recurrence.WeekPattern.Weekdays",
            id="no-weekdays",
        ),
        pytest.param(
            {"recurrence": {**WEEKLY, "RecurrenceEndType": "EndDate", "EndDate": "2025-01-01"}},
            "recurrence.EndDate",
            id="end-date-before-start",
        ),
        pytest.param({"timezone": "Europe/Atlantis"}, "timezone", id="unknown-timezone"),
        pytest.param({"end": "2025-01-06T08:00:00"}, "end", id="end-before-start"),
        pytest.param(
            {
                "recurrence": WEEKLY,
                "exceptions": [{"original_start": "2025-01-07T09:00:00", "cancelled": True}],
            },
            "exceptions.0.original_start",
            id="exception-not-an-occurrence",
        ),
        pytest.param(
            {
                "recurrence": WEEKLY,
                "exceptions": [{"original_start": "2025-01-13T10:00:00", "cancelled": True}],
            },
            "exceptions.0.original_start",
            id="exception-at-the-wrong-time",
        ),
        pytest.param(
            {"exceptions": [{"original_start": "2025-01-06T09:00:00", "cancelled": True}]},
            "exceptions",
            id="exceptions-on-a-single-follow-up",
        ),
    ],
)
def test_invalid_input_names_the_follow_up_and_the_field(
    changes: dict[str, Any], field: str
) -> None:
    doc: dict[str, Any] = {
        "id": "42",
        "title": "Status",
        "start": "2025-01-06T09:00:00",
        "end": "2025-01-06T10:00:00",
        "timezone": "Europe/Oslo",
        **changes,
    }
    with pytest.raises(MappingError) as caught:
        load_followup(doc)
    assert caught.value.item == "42"
    assert caught.value.field == field
    assert "42" in str(caught.value)
    assert field in str(caught.value)
