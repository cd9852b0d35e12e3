"""Every RRULE example of RFC 5545 §3.8.5.3 survives parse → map with the same occurrences.

The fixture (tests/data/rfc5545_rrule_examples.yaml) is checked against recurring-ical-events
first, so a transcription error shows up as such and not as a mapper bug.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from mappings.superoffice import RecurrencePattern
from tests.mappings.conftest import expand, round_trip

NEW_YORK = ZoneInfo("America/New_York")
EXAMPLES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parents[2] / "data" / "rfc5545_rrule_examples.yaml").read_text()
)


def _ics(example: dict[str, Any]) -> str:
    start = dt.datetime.fromisoformat(example["dtstart"])
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//RFC 5545 examples//EN",
        "BEGIN:VEVENT",
        f"UID:rfc5545-{abs(hash(example['name'])) % 10**8}@example.com",
        "DTSTAMP:19970901T000000Z",
        f"DTSTART;TZID=America/New_York:{start:%Y%m%dT%H%M%S}",
        f"DTEND;TZID=America/New_York:{start + dt.timedelta(minutes=45):%Y%m%dT%H%M%S}",
        f"SUMMARY:{example['name']}",
        f"RRULE:{example['rrule']}",
    ]
    if "exdate" in example:
        lines.append(
            f"EXDATE;TZID=America/New_York:{dt.datetime.fromisoformat(example['exdate']):%Y%m%dT%H%M%S}"
        )
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def _window(example: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromisoformat(example["dtstart"]).replace(tzinfo=NEW_YORK)
    days = example.get("window_days", 10 * 366)
    return start - dt.timedelta(days=1), start + dt.timedelta(days=days)


def _utc(local: str) -> str:
    moment = dt.datetime.fromisoformat(str(local)).replace(tzinfo=NEW_YORK)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ids = [e["name"] for e in EXAMPLES]


def test_every_rfc_example_is_transcribed() -> None:
    assert len(EXAMPLES) >= 40


@pytest.mark.parametrize("example", EXAMPLES, ids=ids)
def test_fixture_matches_the_rfc(example: dict[str, Any]) -> None:
    lo, hi = _window(example)
    starts = [o[0] for o in expand(_ics(example), lo=lo, hi=hi)]
    wanted = [_utc(v) for v in example["expected"]]
    if example.get("complete"):
        assert starts == wanted
    else:
        assert starts[: len(wanted)] == wanted
    if "count" in example:
        assert len(starts) == example["count"]


@pytest.mark.parametrize("example", EXAMPLES, ids=ids)
def test_parse_then_map_keeps_the_occurrences(example: dict[str, Any]) -> None:
    data = _ics(example)
    parsed, mapped = round_trip(data)
    assert parsed.errors == []
    assert len(parsed.followups) == 1
    lo, hi = _window(example)
    assert expand(mapped, lo=lo, hi=hi) == expand(data, lo=lo, hi=hi)
    followup = parsed.followups[0]
    assert followup.timezone == "America/New_York"
    if "pattern" in example:
        assert followup.recurrence is not None, followup.ical_recurrence
        assert followup.recurrence.Pattern == RecurrencePattern[example["pattern"]]
        assert followup.ical_recurrence is None


def _parse_one(rrule: str, dtstart: str = "19970902T090000") -> Any:
    data = _ics(
        {
            "name": "x",
            "dtstart": dt.datetime.strptime(dtstart, "%Y%m%dT%H%M%S").isoformat(),
            "rrule": rrule,
        }
    )
    parsed, _ = round_trip(data)
    assert parsed.errors == []
    return parsed.followups[0]


def test_obvious_patterns_are_recognised() -> None:
    daily = _parse_one("FREQ=DAILY;COUNT=10").recurrence
    assert daily.DayPattern.Pattern.name == "EveryWeekday"
    assert daily.RecurrenceEndType.name == "Counter" and daily.RecurrenceCounter == 10

    biweekly = _parse_one(
        "FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;WKST=SU;BYDAY=MO,WE,FR", "19970901T090000"
    )
    assert biweekly.recurrence.WeekPattern.Cycle == 2
    assert biweekly.recurrence.EndDate == dt.date(1997, 12, 23)

    first_friday = _parse_one("FREQ=MONTHLY;COUNT=10;BYDAY=1FR", "19970905T090000").recurrence
    assert first_friday.MonthPattern.Pattern.name == "WeekdayOfMonth"
    assert first_friday.MonthPattern.WeekOfMonth.name == "First"

    last_monday = _parse_one("FREQ=MONTHLY;BYDAY=-1MO;COUNT=4", "19970929T090000").recurrence
    assert last_monday.MonthPattern.WeekOfMonth.name == "Last"

    day_31 = _parse_one("FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=6", "19970930T090000").recurrence
    assert day_31 is not None and day_31.MonthPattern.Day == 31

    third_last = _parse_one("FREQ=MONTHLY;BYMONTHDAY=-3", "19970928T090000")
    assert third_last.recurrence is None and third_last.ical_recurrence is not None
    assert third_last.ical_recurrence.rrule == ["FREQ=MONTHLY;BYMONTHDAY=-3"]

    workdays = _parse_one("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=10").recurrence
    assert workdays.DayPattern.Pattern.name == "EveryWorkday"
