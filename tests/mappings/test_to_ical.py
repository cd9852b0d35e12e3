"""Concrete iCalendar text for a few follow-ups.

The components are compared line by line (unfolded, VTIMEZONE left out; it is checked
on its own). Property order and the order of RRULE parts are icalendar's: it writes
``FREQ`` first, then ``UNTIL``/``COUNT``, ``INTERVAL`` and the ``BY…`` parts in RFC order,
so the RRULE *values* are those of the table in ``mappings.rrule`` (checked against
``rule_parts`` below) with the end moved forward.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.rrule import rule_parts
from mappings.superoffice import RecurrenceInfo
from mappings.to_ical import to_ical_bytes

STAMP = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
BASE: dict[str, Any] = {
    "id": "7",
    "title": "Status",
    "start": "2025-01-06T09:00:00",
    "end": "2025-01-06T10:00:00",
    "timezone": "Europe/Oslo",
}


def mapped(doc: dict[str, Any]) -> tuple[str, str]:
    """(the VEVENT/VTODO lines, the whole calendar text), both unfolded."""
    text = to_ical_bytes([load_followup(doc)], stamp=STAMP).decode().replace("\r\n ", "")
    lines, inside = [], False
    for line in text.split("\r\n"):
        if line in ("BEGIN:VEVENT", "BEGIN:VTODO"):
            inside = True
        if inside:
            lines.append(line)
        if line in ("END:VEVENT", "END:VTODO"):
            inside = False
    return "\n".join(lines), text


def expected(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


def test_weekly_every_second_week_with_a_cancelled_and_a_moved_meeting() -> None:
    body, text = mapped(
        {
            **BASE,
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": "Monday, Wednesday", "Cycle": 2},
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": 6,
            },
            "exceptions": [
                {"original_start": "2025-01-08T09:00:00", "cancelled": True},
                {
                    "original_start": "2025-01-20T09:00:00",
                    "start": "2025-01-20T13:00:00",
                    "title": "Moved",
                },
            ],
        }
    )
    assert body == expected(
        """
        BEGIN:VEVENT
        SUMMARY:Status
        DTSTART;TZID=Europe/Oslo:20250106T090000
        DTEND;TZID=Europe/Oslo:20250106T100000
        DTSTAMP:20250101T120000Z
        UID:followup-7@followup-sync
        RRULE:FREQ=WEEKLY;COUNT=6;INTERVAL=2;BYDAY=MO,WE;WKST=MO
        EXDATE;TZID=Europe/Oslo:20250108T090000
        X-FOLLOWUP-KIND:appointment
        END:VEVENT
        BEGIN:VEVENT
        SUMMARY:Moved
        DTSTART;TZID=Europe/Oslo:20250120T130000
        DTEND;TZID=Europe/Oslo:20250120T140000
        DTSTAMP:20250101T120000Z
        UID:followup-7@followup-sync
        RECURRENCE-ID;TZID=Europe/Oslo:20250120T090000
        X-FOLLOWUP-KIND:appointment
        END:VEVENT
        """
    )
    assert "BEGIN:VTIMEZONE\r\nTZID:Europe/Oslo\r\n" in text


def test_day_31_monthly_until_the_end_date_in_utc() -> None:
    # 23:59:59 on 30 June in Oslo (summer time, +02:00) is 21:59:59 UTC.
    body, _ = mapped(
        {
            **BASE,
            "start": "2025-01-31T09:00",
            "end": "2025-01-31T10:00",
            "recurrence": {
                "Pattern": "Monthly",
                "MonthPattern": {"Pattern": "DayOfMonth", "Day": 31, "Cycle": 1},
                "RecurrenceEndType": "EndDate",
                "EndDate": "2025-06-30T00:00:00",
            },
        }
    )
    assert "RRULE:FREQ=MONTHLY;UNTIL=20250630T215959Z;BYMONTHDAY=-1" in body.splitlines()


def test_until_can_fall_on_the_next_utc_day() -> None:
    # 23:59:59 on 31 March in New York (EDT, -04:00) is 03:59:59 UTC on 1 April.
    body, text = mapped(
        {
            **BASE,
            "timezone": "America/New_York",
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                "RecurrenceEndType": "EndDate",
                "EndDate": "2025-03-31",
            },
        }
    )
    assert "RRULE:FREQ=WEEKLY;UNTIL=20250401T035959Z;BYDAY=MO" in body.splitlines()
    assert "DTSTART;TZID=America/New_York:20250106T090000" in body.splitlines()
    assert "BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\n" in text


def test_all_day_task_is_a_vtodo_with_due_and_a_date_until() -> None:
    body, text = mapped(
        {
            **BASE,
            "kind": "task",
            "all_day": True,
            "start": "2025-01-06",
            "end": "2025-01-07",
            "recurrence": {
                "Pattern": "Daily",
                "DayPattern": {"Pattern": "EveryWorkday"},
                "RecurrenceEndType": "EndDate",
                "EndDate": "2025-01-31",
            },
        }
    )
    assert body == expected(
        """
        BEGIN:VTODO
        DTSTAMP:20250101T120000Z
        DTSTART;VALUE=DATE:20250106
        DUE;VALUE=DATE:20250107
        RRULE:FREQ=DAILY;UNTIL=20250131;BYDAY=MO,TU,WE,TH,FR
        SUMMARY:Status
        UID:followup-7@followup-sync
        X-FOLLOWUP-KIND:task
        END:VTODO
        """
    )
    assert "VTIMEZONE" not in text


def test_first_pattern_dates_deleted_moves_dtstart_and_shrinks_count() -> None:
    # Mondays 6, 13, 20, 27 January and 3 February; 6 and 13 deleted, Wednesday 29 added.
    dates = [
        {"Date": f"{day}T00:00:00"}
        for day in ("2025-01-20", "2025-01-27", "2025-01-29", "2025-02-03")
    ]
    body, _ = mapped(
        {
            **BASE,
            "kind": "call",
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": 5,
                "Dates": dates,
            },
        }
    )
    assert body == expected(
        """
        BEGIN:VEVENT
        SUMMARY:Status
        DTSTART;TZID=Europe/Oslo:20250120T090000
        DTEND;TZID=Europe/Oslo:20250120T100000
        DTSTAMP:20250101T120000Z
        UID:followup-7@followup-sync
        RRULE:FREQ=WEEKLY;COUNT=3;BYDAY=MO
        RDATE;TZID=Europe/Oslo:20250129T090000
        CATEGORIES:Phone call
        X-FOLLOWUP-KIND:call
        END:VEVENT
        """
    )


def test_a_date_deleted_in_the_middle_is_an_exdate() -> None:
    dates = [{"Date": day} for day in ("2025-01-06", "2025-01-20", "2025-01-27")]
    body, _ = mapped(
        {
            **BASE,
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": 1, "Cycle": 1},
                "RecurrenceEndType": 2,
                "RecurrenceCounter": 4,
                "Dates": dates,
            },
        }
    )
    lines = body.splitlines()
    assert "DTSTART;TZID=Europe/Oslo:20250106T090000" in lines
    assert "RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=MO" in lines
    assert "EXDATE;TZID=Europe/Oslo:20250113T090000" in lines
    assert not any(line.startswith("RDATE") for line in lines)


def test_custom_dates_are_dtstart_plus_rdate() -> None:
    body, _ = mapped(
        {
            **BASE,
            "timezone": "America/New_York",
            "recurrence": {
                "Pattern": "Custom",
                "Dates": [{"Date": "2025-03-17"}, {"Date": "2025-01-06"}, {"Date": "2025-02-10"}],
            },
        }
    )
    assert body == expected(
        """
        BEGIN:VEVENT
        SUMMARY:Status
        DTSTART;TZID=America/New_York:20250106T090000
        DTEND;TZID=America/New_York:20250106T100000
        DTSTAMP:20250101T120000Z
        UID:followup-7@followup-sync
        RDATE;TZID=America/New_York:20250210T090000,20250317T090000
        X-FOLLOWUP-KIND:appointment
        END:VEVENT
        """
    )


def test_utc_follow_up_uses_utc_times_and_no_vtimezone() -> None:
    body, text = mapped(
        {
            **BASE,
            "timezone": "UTC",
            "start": "2025-11-27T17:00",
            "end": "2025-11-27T20:00",
            "recurrence": {
                "Pattern": "Yearly",
                "YearPattern": {
                    "Pattern": "WeekdayOfMonth",
                    "Cycle": 11,
                    "Weekday": "Thursday",
                    "WeekOfMonth": "Fourth",
                },
                "RecurrenceCounter": 3,
            },
        }
    )
    lines = body.splitlines()
    assert "DTSTART:20251127T170000Z" in lines
    assert "DTEND:20251127T200000Z" in lines
    assert "RRULE:FREQ=YEARLY;COUNT=3;BYDAY=4TH;BYMONTH=11" in lines
    assert "VTIMEZONE" not in text


def test_every_occurrence_cancelled_gives_no_component() -> None:
    body, _ = mapped(
        {
            **BASE,
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": "Monday"},
                "RecurrenceCounter": 2,
            },
            "exceptions": [
                {"original_start": "2025-01-06T09:00:00", "cancelled": True},
                {"original_start": "2025-01-13T09:00:00", "cancelled": True},
            ],
        }
    )
    assert body == ""


# --- the RRULE table of mappings/rrule.py ---


@pytest.mark.parametrize(
    ("recurrence", "rule"),
    [
        (
            {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}},
            "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
        ),
        ({"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWeekday"}}, "FREQ=DAILY"),
        (
            {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 6}},
            "FREQ=DAILY;INTERVAL=6",
        ),
        (
            {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 1}},
            "FREQ=DAILY",
        ),
        (
            {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Tuesday, Thursday", "Cycle": 1}},
            "FREQ=WEEKLY;BYDAY=TU,TH",
        ),
        (
            {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Tuesday", "Cycle": 3}},
            "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU;WKST=MO",
        ),
        (
            {
                "Pattern": "Monthly",
                "MonthPattern": {"Pattern": "DayOfMonth", "Day": 20, "Cycle": 3},
            },
            "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=20",
        ),
        (
            {
                "Pattern": "Monthly",
                "MonthPattern": {"Pattern": "DayOfMonth", "Day": 30, "Cycle": 1},
            },
            "FREQ=MONTHLY;BYMONTHDAY=28,29,30;BYSETPOS=-1",
        ),
        (
            {
                "Pattern": "Monthly",
                "MonthPattern": {"Pattern": "DayOfMonth", "Day": 31, "Cycle": 1},
            },
            "FREQ=MONTHLY;BYMONTHDAY=-1",
        ),
        (
            {
                "Pattern": "Monthly",
                "MonthPattern": {
                    "Pattern": "WeekdayOfMonth",
                    "Cycle": 2,
                    "Weekday": "Thursday",
                    "WeekOfMonth": "Second",
                },
            },
            "FREQ=MONTHLY;INTERVAL=2;BYDAY=2TH",
        ),
        (
            {
                "Pattern": "Monthly",
                "MonthPattern": {
                    "Pattern": "WeekdayOfMonth",
                    "Cycle": 1,
                    "Weekday": "Thursday",
                    "WeekOfMonth": "Last",
                },
            },
            "FREQ=MONTHLY;BYDAY=-1TH",
        ),
        (
            {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 4, "Day": 13}},
            "FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=13",
        ),
        (
            {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 2, "Day": 29}},
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1",
        ),
        (
            {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 4, "Day": 31}},
            "FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=-1",
        ),
        (
            {
                "Pattern": "Yearly",
                "YearPattern": {
                    "Pattern": "WeekdayOfMonth",
                    "Cycle": 8,
                    "Weekday": "Thursday",
                    "WeekOfMonth": "Fourth",
                },
            },
            "FREQ=YEARLY;BYMONTH=8;BYDAY=4TH",
        ),
    ],
)
def test_rrule_table(recurrence: dict[str, Any], rule: str) -> None:
    info = RecurrenceInfo.model_validate(recurrence)
    assert ";".join(f"{name}={value}" for name, value in rule_parts(info)) == rule
