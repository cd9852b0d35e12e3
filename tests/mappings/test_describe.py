"""The CRM's recurrence texts (``mappings.describe``), in English and Norwegian."""

from __future__ import annotations

from typing import Any

import pytest

from mappings.describe import edit_counts, ordinal_en, sentence, summary
from mappings.documents import load_followup
from mappings.model import FollowUp


def followup(recurrence: dict[str, Any] | None = None, **extra: Any) -> FollowUp:
    """A 09:00-10:00 Oslo follow-up starting Monday 6 January 2025."""
    data: dict[str, Any] = {
        "id": "42",
        "title": "Test",
        "start": "2025-01-06T09:00:00",
        "end": "2025-01-06T10:00:00",
        "timezone": "Europe/Oslo",
    }
    if recurrence is not None:
        data["recurrence"] = recurrence
    data.update(extra)
    return load_followup(data)


def weekly(days: str, cycle: int = 1, **end: Any) -> dict[str, Any]:
    return {"Pattern": "Weekly", "WeekPattern": {"Weekdays": days, "Cycle": cycle}, **end}


# --- cases: (recurrence, start, english, norwegian) ---

SENTENCES = [
    pytest.param(
        weekly("Tuesday, Thursday", 2, RecurrenceCounter=6),
        "2025-01-07T09:00:00",
        "Every 2nd week on Tuesday and Thursday, 6 times",
        "Hver 2. uke på tirsdag og torsdag, 6 ganger",
        id="weekly-cycle-2-two-days",
    ),
    pytest.param(
        weekly("Monday", RecurrenceCounter=1),
        None,
        "Every week on Monday, once",
        "Hver uke på mandag, 1 gang",
        id="weekly-once",
    ),
    pytest.param(
        weekly("Monday, Wednesday, Friday", 3, EndDate="2025-03-31"),
        None,
        "Every 3rd week on Monday, Wednesday and Friday, until 31.03.2025",
        "Hver 3. uke på mandag, onsdag og fredag, til og med 31.03.2025",
        id="weekly-three-days-until",
    ),
    pytest.param(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}, "EndDate": "2025-03-31"},
        None,
        "Every workday (Mon–Fri), until 31.03.2025",
        "Alle arbeidsdager (man–fre), til og med 31.03.2025",
        id="daily-workday",
    ),
    pytest.param(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWeekday"}, "RecurrenceCounter": 5},
        None,
        "Every day (Mon–Sun), 5 times",
        "Alle ukedager (man–søn), 5 ganger",
        id="daily-every-day",
    ),
    pytest.param(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 3}},
        None,
        "Every 3rd day",
        "Hver 3. dag",
        id="daily-cyclic-open-ended",
    ),
    pytest.param(
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 1}},
        None,
        "Every day",
        "Hver dag",
        id="daily-cycle-1",
    ),
    pytest.param(
        {"Pattern": "Monthly", "MonthPattern": {"Pattern": "DayOfMonth", "Day": 20, "Cycle": 3}},
        "2025-01-20T09:00:00",
        "Day 20 of every 3rd month",
        "Dag 20 hver 3. måned",
        id="monthly-day",
    ),
    pytest.param(
        {
            "Pattern": "Monthly",
            "MonthPattern": {"Pattern": "DayOfMonth", "Day": 31, "Cycle": 1},
            "RecurrenceCounter": 12,
        },
        "2025-01-31T09:00:00",
        "Day 31 of every month (the last day in shorter months), 12 times",
        "Dag 31 hver måned (siste dag i kortere måneder), 12 ganger",
        id="monthly-day-31",
    ),
    pytest.param(
        {
            "Pattern": "Monthly",
            "MonthPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 2,
                "Weekday": "Thursday",
                "WeekOfMonth": "Fourth",
            },
        },
        None,
        "The 4th Thursday of every 2nd month",
        "Den 4. torsdagen hver 2. måned",
        id="monthly-nth-weekday",
    ),
    pytest.param(
        {
            "Pattern": "Monthly",
            "MonthPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 1,
                "Weekday": "Friday",
                "WeekOfMonth": "Last",
            },
        },
        None,
        "The last Friday of every month",
        "Den siste fredagen hver måned",
        id="monthly-last-weekday",
    ),
    pytest.param(
        {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 9, "Day": 23}},
        None,
        "Every year on 23 September",
        "Hvert år den 23. september",
        id="yearly-day",
    ),
    pytest.param(
        {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 2, "Day": 29}},
        None,
        "Every year on 29 February (28 February in other years)",
        "Hvert år den 29. februar (28. februar andre år)",
        id="yearly-29-february",
    ),
    pytest.param(
        {
            "Pattern": "Yearly",
            "YearPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 8,
                "Weekday": "Thursday",
                "WeekOfMonth": "Fourth",
            },
        },
        None,
        "Every year on the 4th Thursday of August",
        "Hvert år den 4. torsdagen i august",
        id="yearly-nth-weekday",
    ),
    pytest.param(
        {
            "Pattern": "Custom",
            "Dates": [
                {"Date": d} for d in ("2025-01-06", "2025-02-03", "2025-03-03", "2025-04-07")
            ],
        },
        None,
        "On 4 chosen dates",
        "På 4 valgte datoer",
        id="custom",
    ),
]


@pytest.mark.parametrize(("recurrence", "start", "english", "norwegian"), SENTENCES)
def test_sentence(
    recurrence: dict[str, Any], start: str | None, english: str, norwegian: str
) -> None:
    extra = {"start": start, "end": start.replace("09:00", "10:00")} if start else {}
    item = followup(recurrence, **extra)
    assert sentence(item, "en") == english
    assert sentence(item, "nb") == norwegian


# --- summary ---


def test_summary_shows_first_and_last_date_like_the_crm() -> None:
    item = followup(
        {
            "Pattern": "Monthly",
            "MonthPattern": {"Pattern": "DayOfMonth", "Day": 23, "Cycle": 1},
            "EndDate": "2017-09-23",
        },
        start="2016-09-23T09:00:00",
        end="2016-09-23T10:00:00",
    )
    assert summary(item) == "Monthly (23.09.2016 - 23.09.2017)"
    assert summary(item, "nb") == "Månedlig (23.09.2016 - 23.09.2017)"


def test_summary_of_open_ended_series_says_from() -> None:
    item = followup(weekly("Monday"))
    assert summary(item, "en") == "Weekly (from 06.01.2025)"
    assert summary(item, "nb") == "Ukentlig (fra 06.01.2025)"


@pytest.mark.parametrize(
    ("recurrence", "en", "nb"),
    [
        (
            {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}, "RecurrenceCounter": 5},
            "Daily (06.01.2025 - 10.01.2025)",
            "Daglig (06.01.2025 - 10.01.2025)",
        ),
        (
            {
                "Pattern": "Yearly",
                "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 1, "Day": 6},
                "RecurrenceCounter": 2,
            },
            "Yearly (06.01.2025 - 06.01.2026)",
            "Årlig (06.01.2025 - 06.01.2026)",
        ),
        (
            {"Pattern": "Custom", "Dates": [{"Date": "2025-01-06"}, {"Date": "2025-02-10"}]},
            "Custom (06.01.2025 - 10.02.2025)",
            "Egendefinert (06.01.2025 - 10.02.2025)",
        ),
    ],
)
def test_summary_names_each_pattern(recurrence: dict[str, Any], en: str, nb: str) -> None:
    item = followup(recurrence)
    assert summary(item, "en") == en
    assert summary(item, "nb") == nb


def test_not_recurring_is_never() -> None:
    item = followup()
    assert summary(item, "en") == "Never"
    assert summary(item, "nb") == "Aldri"
    assert sentence(item, "en") == "Does not repeat"
    assert sentence(item, "nb") == "Gjentas ikke"
    stopped = followup({"Pattern": "Unknown", "IsRecurrence": False})
    assert summary(stopped, "nb") == "Aldri"


def test_summary_range_leaves_out_cancelled_last_date() -> None:
    item = followup(
        weekly("Monday", RecurrenceCounter=3),
        exceptions=[{"original_start": "2025-01-20T09:00:00", "cancelled": True}],
    )
    assert summary(item) == "Weekly (06.01.2025 - 13.01.2025)"


def test_kept_ical_rule_is_a_custom_rule() -> None:
    item = followup(ical_recurrence={"rrule": ["FREQ=HOURLY;INTERVAL=3;COUNT=5"]})
    assert summary(item, "en") == "Custom rule (06.01.2025 - 06.01.2025)"
    assert summary(item, "nb") == "Egendefinert regel (06.01.2025 - 06.01.2025)"
    assert sentence(item, "en") == "Custom iCalendar rule FREQ=HOURLY;INTERVAL=3;COUNT=5"
    assert sentence(item, "nb") == "Egendefinert iCalendar-regel FREQ=HOURLY;INTERVAL=3;COUNT=5"


def test_kept_open_ended_rule_says_from() -> None:
    item = followup(ical_recurrence={"rrule": ["FREQ=HOURLY;INTERVAL=12"]})
    assert summary(item, "en") == "Custom rule (from 06.01.2025)"


# --- hand edits ---


def edited() -> FollowUp:
    """Weekly on Monday, 6 times: 13.01 deleted from the list, 3.02 deleted by exception,
    20.01 moved to 14:00, 22.01 added, 27.01 renamed only."""
    listed = ["2025-01-06", "2025-01-20", "2025-01-22", "2025-01-27", "2025-02-03", "2025-02-10"]
    return followup(
        weekly("Monday", RecurrenceCounter=6, Dates=[{"Date": d} for d in listed]),
        exceptions=[
            {
                "original_start": "2025-01-20T09:00:00",
                "start": "2025-01-20T14:00:00",
                "end": "2025-01-20T15:00:00",
            },
            {"original_start": "2025-02-03T09:00:00", "cancelled": True},
            {"original_start": "2025-01-27T09:00:00", "title": "Renamed"},
        ],
    )


def test_edit_counts() -> None:
    assert edit_counts(edited()) == {"moved": 1, "deleted": 2, "added": 1, "changed": 1}


def test_sentence_mentions_hand_edits_in_both_languages() -> None:
    item = edited()
    assert sentence(item, "en") == (
        "Every week on Monday, 6 times, 1 date moved, 2 deleted, 1 added, 1 changed"
    )
    assert sentence(item, "nb") == (
        "Hver uke på mandag, 6 ganger, 1 dato flyttet, 2 slettet, 1 lagt til, 1 endret"
    )


def test_hand_edits_plural_noun_goes_with_the_first_count() -> None:
    item = followup(
        weekly("Monday", RecurrenceCounter=4),
        exceptions=[
            {"original_start": "2025-01-13T09:00:00", "cancelled": True},
            {"original_start": "2025-01-20T09:00:00", "cancelled": True},
        ],
    )
    assert sentence(item, "en") == "Every week on Monday, 4 times, 2 dates deleted"
    assert sentence(item, "nb") == "Hver uke på mandag, 4 ganger, 2 datoer slettet"


def test_custom_dates_are_not_counted_as_added() -> None:
    item = followup(
        {"Pattern": "Custom", "Dates": [{"Date": "2025-01-06"}, {"Date": "2025-01-09"}]}
    )
    assert sentence(item, "en") == "On 2 chosen dates"


def test_every_occurrence_cancelled() -> None:
    item = followup(
        weekly("Monday", RecurrenceCounter=1),
        exceptions=[{"original_start": "2025-01-06T09:00:00", "cancelled": True}],
    )
    assert summary(item, "en") == "Weekly (no dates left)"
    assert summary(item, "nb") == "Ukentlig (ingen datoer igjen)"


# --- small parts ---


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (101, "101st"),
        (111, "111th"),
    ],
)
def test_ordinal_en(n: int, text: str) -> None:
    assert ordinal_en(n) == text


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        summary(followup(), "de")  # type: ignore[arg-type]
