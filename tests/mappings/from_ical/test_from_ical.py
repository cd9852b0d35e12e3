"""iCalendar → follow-ups: parse then map must keep every occurrence (start, end, summary)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from mappings.errors import MappingError
from mappings.from_ical import parse_calendar, parse_components
from mappings.model import FollowUp, FollowUpKind
from mappings.superoffice import DayPatternInfo, RecurrenceDailyPattern, RecurrencePattern
from mappings.to_ical import followup_components
from tests.mappings.conftest import STAMP, expand, round_trip

CLIENTS = sorted((Path(__file__).parents[2] / "data" / "clients").glob("*.ics"))


def cal(*events: str, header: str = "") -> str:
    body = "".join(
        f"BEGIN:{e.split(chr(10), 1)[0].strip() or 'VEVENT'}\n{e.split(chr(10), 1)[1]}"
        for e in events
    )
    text = f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n{header}{body}END:VCALENDAR\n"
    return text.replace("\n", "\r\n")


def vevent(lines: str) -> str:
    return (
        "VEVENT\n"
        + "\n".join(line.strip() for line in lines.strip().splitlines())
        + "\nEND:VEVENT\n"
    )


def vtodo(lines: str) -> str:
    return (
        "VTODO\n" + "\n".join(line.strip() for line in lines.strip().splitlines()) + "\nEND:VTODO\n"
    )


def assert_round_trip(
    data: str | bytes, *, floating: str = "UTC", default_timezone: str = "UTC"
) -> list[FollowUp]:
    parsed, mapped = round_trip(data, default_timezone=default_timezone)
    assert parsed.errors == [], [str(e) for e in parsed.errors]
    assert expand(mapped, floating=floating) == expand(data, floating=floating)
    return parsed.followups


@pytest.mark.parametrize("path", CLIENTS, ids=[p.name for p in CLIENTS])
def test_client_calendars_keep_their_occurrences(path: Path) -> None:
    assert_round_trip(path.read_bytes())


def test_there_are_enough_client_files() -> None:
    assert len(CLIENTS) >= 8


def test_apple_calendar_exdate_and_moved_instance() -> None:
    data = (
        Path(__file__).parents[2] / "data" / "clients" / "apple_macos14_weekly_exdate_override.ics"
    ).read_bytes()
    followups = assert_round_trip(data)
    status = next(f for f in followups if f.title == "Status meeting")
    assert status.recurrence is not None and status.recurrence.Pattern == RecurrencePattern.Weekly
    assert status.recurrence.EndDate == dt.date(2025, 3, 30)
    cancelled = [e for e in status.exceptions if e.cancelled]
    moved = [e for e in status.exceptions if not e.cancelled]
    assert [e.original_start for e in cancelled] == [dt.datetime(2025, 1, 20, 9)]
    assert moved[0].start == dt.datetime(2025, 2, 3, 14) and moved[0].location == "Meeting room 5"
    assert moved[0].description is None  # unchanged values are not repeated
    review = next(f for f in followups if f.all_day)
    assert review.start == dt.date(2025, 3, 15) and review.end == dt.date(2025, 3, 16)


def test_outlook_custom_vtimezone_is_matched_to_an_iana_zone() -> None:
    data = (
        Path(__file__).parents[2] / "data" / "clients" / "outlook_custom_vtimezone_windows_tzid.ics"
    ).read_bytes()
    followups = assert_round_trip(data)
    berlin = ZoneInfo("Europe/Berlin")
    for followup in followups:
        zone = ZoneInfo(followup.timezone)
        for day in (dt.datetime(2025, 1, 1), dt.datetime(2025, 7, 1), dt.datetime(2025, 3, 30, 3)):
            assert day.replace(tzinfo=zone).utcoffset() == day.replace(tzinfo=berlin).utcoffset()
    board = next(f for f in followups if f.title == "Board meeting")
    assert board.recurrence is not None and board.recurrence.MonthPattern is not None
    assert board.recurrence.MonthPattern.WeekOfMonth.name == "Second"


def test_several_rrules_are_kept() -> None:
    data = cal(
        vevent("""
        UID:multi
        DTSTART;TZID=Europe/Oslo:20250106T090000
        DTEND;TZID=Europe/Oslo:20250106T100000
        SUMMARY:Two rules
        RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=5
        RRULE:FREQ=MONTHLY;BYMONTHDAY=15;COUNT=3
    """)
    )
    (followup,) = assert_round_trip(data)
    assert followup.ical_recurrence is not None and len(followup.ical_recurrence.rrule) == 2
    assert followup.ical_recurrence.crm_note


def test_exrule_is_kept() -> None:
    data = cal(
        vevent("""
        UID:exrule
        DTSTART;TZID=Europe/Oslo:20250106T090000
        DTEND;TZID=Europe/Oslo:20250106T100000
        SUMMARY:Daily but not Wednesdays
        RRULE:FREQ=DAILY;COUNT=20
        EXRULE:FREQ=WEEKLY;BYDAY=WE
    """)
    )
    (followup,) = assert_round_trip(data)
    assert followup.ical_recurrence is not None and followup.ical_recurrence.exrule == [
        "FREQ=WEEKLY;BYDAY=WE"
    ]


def test_rdate_period_with_other_duration() -> None:
    data = cal(
        vevent("""
        UID:period
        DTSTART;TZID=Europe/Oslo:20250106T090000
        DTEND;TZID=Europe/Oslo:20250106T100000
        SUMMARY:Periods
        RRULE:FREQ=WEEKLY;COUNT=3
        RDATE;VALUE=PERIOD:20250108T120000Z/PT3H,20250109T080000Z/20250109T083000Z
    """)
    )
    (followup,) = assert_round_trip(data)
    assert followup.ical_recurrence is not None


def test_rdate_with_same_time_becomes_crm_dates() -> None:
    data = cal(
        vevent("""
        UID:rdate-dates
        DTSTART;TZID=Europe/Oslo:20250106T090000
        DTEND;TZID=Europe/Oslo:20250106T100000
        SUMMARY:Weekly plus one
        RRULE:FREQ=WEEKLY;COUNT=4
        RDATE;TZID=Europe/Oslo:20250108T090000
    """)
    )
    (followup,) = assert_round_trip(data)
    assert (
        followup.recurrence is not None and followup.recurrence.Pattern == RecurrencePattern.Weekly
    )
    assert dt.date(2025, 1, 8) in {d.Date for d in followup.recurrence.Dates or []}


def test_rdate_only_master_is_custom() -> None:
    data = cal(
        vevent("""
        UID:custom
        DTSTART;TZID=Europe/Oslo:20250106T090000
        DTEND;TZID=Europe/Oslo:20250106T100000
        SUMMARY:Hand-picked
        RDATE;TZID=Europe/Oslo:20250110T090000,20250203T090000
    """)
    )
    (followup,) = assert_round_trip(data)
    assert (
        followup.recurrence is not None and followup.recurrence.Pattern == RecurrencePattern.Custom
    )
    assert [d.Date for d in followup.recurrence.Dates or []] == [
        dt.date(2025, 1, 6),
        dt.date(2025, 1, 10),
        dt.date(2025, 2, 3),
    ]


def test_thisandfuture_time_change_splits_the_series() -> None:
    data = cal(
        vevent("""
            UID:followup-77@followup-sync
            DTSTART;TZID=Europe/Oslo:20250106T090000
            DTEND;TZID=Europe/Oslo:20250106T100000
            SUMMARY:Series
            RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=8
        """),
        vevent("""
            UID:followup-77@followup-sync
            RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Oslo:20250127T090000
            DTSTART;TZID=Europe/Oslo:20250127T130000
            DTEND;TZID=Europe/Oslo:20250127T143000
            SUMMARY:Series (afternoons)
        """),
    )
    first, second = assert_round_trip(data)
    assert (
        first.id == "77"
        and first.recurrence is not None
        and first.recurrence.RecurrenceCounter == 3
    )
    assert second.id == "77-20250127" and second.uid is None
    assert second.start == dt.datetime(2025, 1, 27, 13) and second.title == "Series (afternoons)"
    assert second.recurrence is not None and second.recurrence.RecurrenceCounter == 5


def test_thisandfuture_date_change_in_bounded_series_becomes_exceptions() -> None:
    data = cal(
        vevent("""
            UID:tf-move
            DTSTART;TZID=Europe/Oslo:20250106T090000
            DTEND;TZID=Europe/Oslo:20250106T100000
            SUMMARY:Series
            RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=5
        """),
        vevent("""
            UID:tf-move
            RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Oslo:20250120T090000
            DTSTART;TZID=Europe/Oslo:20250121T090000
            DTEND;TZID=Europe/Oslo:20250121T100000
            SUMMARY:Series on Tuesdays
        """),
    )
    (followup,) = assert_round_trip(data)
    assert len([e for e in followup.exceptions if e.start is not None]) == 3


def test_thisandfuture_date_change_in_open_series_is_refused() -> None:
    data = cal(
        vevent("""
            UID:tf-open
            DTSTART;TZID=Europe/Oslo:20250106T090000
            DTEND;TZID=Europe/Oslo:20250106T100000
            SUMMARY:Series
            RRULE:FREQ=WEEKLY;BYDAY=MO
        """),
        vevent("""
            UID:tf-open
            RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Oslo:20250120T090000
            DTSTART;TZID=Europe/Oslo:20250121T090000
            DTEND;TZID=Europe/Oslo:20250121T100000
            SUMMARY:Series on Tuesdays
        """),
    )
    result = parse_calendar(data)
    (error,) = result.errors
    assert (
        error.item == "tf-open" and error.field == "RECURRENCE-ID" and "2025-01-20" in error.message
    )


def test_overrides_without_master() -> None:
    data = cal(
        vevent("""
            UID:orphans
            RECURRENCE-ID;TZID=Europe/Oslo:20250106T090000
            DTSTART;TZID=Europe/Oslo:20250106T100000
            DTEND;TZID=Europe/Oslo:20250106T110000
            SUMMARY:Invited once
        """),
        vevent("""
            UID:orphans
            RECURRENCE-ID;TZID=Europe/Oslo:20250113T090000
            DTSTART;TZID=Europe/Oslo:20250113T090000
            DTEND;TZID=Europe/Oslo:20250113T100000
            SUMMARY:Invited twice
        """),
    )
    parsed, _ = round_trip(data)
    assert any("without a master" in w for w in parsed.warnings)
    (followup,) = assert_round_trip(data)
    assert (
        followup.recurrence is not None and followup.recurrence.Pattern == RecurrencePattern.Custom
    )


def test_windows_tzid() -> None:
    data = cal(
        vevent("""
        UID:windows
        DTSTART;TZID=W. Europe Standard Time:20250106T090000
        DTEND;TZID=W. Europe Standard Time:20250106T100000
        SUMMARY:Outlook
        RRULE:FREQ=DAILY;COUNT=5
    """)
    )
    (followup,) = assert_round_trip(data)
    assert followup.timezone == "Europe/Berlin"


def test_x_wr_timezone_floating() -> None:
    data = cal(
        vevent("""
        UID:google
        DTSTART:20250106T090000
        DTEND:20250106T100000
        SUMMARY:Floating in Oslo
        RRULE:FREQ=WEEKLY;UNTIL=20250401T000000;BYDAY=MO
    """),
        header="X-WR-TIMEZONE:Europe/Oslo\n",
    )
    (followup,) = assert_round_trip(data, floating="Europe/Oslo")
    assert followup.timezone == "Europe/Oslo" and followup.start == dt.datetime(2025, 1, 6, 9)


def test_floating_without_x_wr_uses_default_timezone() -> None:
    data = cal(
        vevent("""
        UID:floating
        DTSTART:20250106T090000
        DTEND:20250106T100000
        SUMMARY:Floating
    """)
    )
    parsed = parse_calendar(data, default_timezone="Europe/Oslo")
    assert parsed.followups[0].timezone == "Europe/Oslo"


def test_utc_times() -> None:
    data = cal(
        vevent("""
        UID:utc
        DTSTART:20250106T080000Z
        DTEND:20250106T090000Z
        SUMMARY:UTC
        RRULE:FREQ=DAILY;INTERVAL=3;COUNT=4
    """)
    )
    (followup,) = assert_round_trip(data)
    assert followup.timezone == "UTC"


def test_all_day_series() -> None:
    data = cal(
        vevent("""
        UID:allday
        DTSTART;VALUE=DATE:20250131
        DTEND;VALUE=DATE:20250201
        SUMMARY:Month end
        RRULE:FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=6
        EXDATE;VALUE=DATE:20250331
    """)
    )
    (followup,) = assert_round_trip(data)
    assert followup.all_day and followup.end == dt.date(2025, 2, 1)
    assert followup.recurrence is not None and followup.recurrence.MonthPattern is not None
    assert followup.recurrence.MonthPattern.Day == 31


def test_vtodo_with_dtstart_and_due() -> None:
    data = cal(
        vtodo("""
        UID:todo
        DTSTART;TZID=Europe/Oslo:20250106T080000
        DUE;TZID=Europe/Oslo:20250106T160000
        SUMMARY:Weekly report
        RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4
    """)
    )
    (followup,) = assert_round_trip(data)
    assert followup.kind == FollowUpKind.task and followup.end == dt.datetime(2025, 1, 6, 16)


def test_call_kind_from_categories() -> None:
    data = cal(
        vevent("""
        UID:call
        DTSTART:20250106T080000Z
        DTEND:20250106T081500Z
        SUMMARY:Call Ada
        CATEGORIES:Phone call
    """)
    )
    assert parse_calendar(data).followups[0].kind == FollowUpKind.call


def test_duplicate_components_highest_sequence_wins() -> None:
    data = cal(
        vevent(
            "UID:dup\nSEQUENCE:1\nDTSTART:20250106T080000Z\nDTEND:20250106T090000Z\nSUMMARY:Old"
        ),
        vevent(
            "UID:dup\nSEQUENCE:3\nDTSTART:20250106T100000Z\nDTEND:20250106T110000Z\nSUMMARY:New"
        ),
    )
    result = parse_calendar(data)
    assert result.followups[0].title == "New"
    assert any("SEQUENCE 3" in w for w in result.warnings)


def test_known_followup_keeps_id_and_pattern_form() -> None:
    known = FollowUp.model_validate(
        {
            "id": "4711",
            "kind": "call",
            "title": "Stand-up",
            "start": "2025-01-06T09:00:00",
            "end": "2025-01-06T09:15:00",
            "timezone": "Europe/Oslo",
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {
                    "Weekdays": "Monday, Tuesday, Wednesday, Thursday, Friday",
                    "Cycle": 1,
                },
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": 10,
            },
        }
    )
    components = followup_components(known, stamp=STAMP).components
    (again,) = parse_components(components)
    assert again.id == "4711" and again.kind == FollowUpKind.call
    (kept,) = parse_components(components, known=known)
    assert kept.recurrence is not None and kept.recurrence.Pattern == RecurrencePattern.Weekly
    daily_known = known.model_copy(
        update={
            "recurrence": known.recurrence.model_copy(
                update={  # type: ignore[union-attr]
                    "Pattern": RecurrencePattern.Daily,
                    "WeekPattern": None,
                    "DayPattern": DayPatternInfo(Pattern=RecurrenceDailyPattern.EveryWorkday),
                }
            )
        }
    )
    (daily,) = parse_components(
        followup_components(daily_known, stamp=STAMP).components, known=daily_known
    )
    assert daily.recurrence is not None and daily.recurrence.Pattern == RecurrencePattern.Daily


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ("UID:no-start\nDTEND:20250106T090000Z\nSUMMARY:x", "DTSTART"),
        (
            "UID:bad-rule\nDTSTART:20250106T080000Z\nRRULE:FREQ=SOMETIMES;COUNT=2\nSUMMARY:x",
            "RRULE",
        ),
        ("UID:bad-rule2\nDTSTART:20250106T080000Z\nRRULE:COUNT=2\nSUMMARY:x", "RRULE"),
        ("UID:bad-tz\nDTSTART;TZID=Mars/Olympus:20250106T080000\nSUMMARY:x", "DTSTART"),
        ("UID:bad-start\nDTSTART:2025-01-06 08:00\nSUMMARY:x", "DTSTART"),
        ("UID:backwards\nDTSTART:20250106T080000Z\nDTEND:20250106T070000Z\nSUMMARY:x", "DTEND"),
    ],
)
def test_malformed_events_name_uid_and_property(event: str, field: str) -> None:
    good = vevent("UID:good\nDTSTART:20250106T080000Z\nDTEND:20250106T090000Z\nSUMMARY:fine")
    result = parse_calendar(cal(vevent(event), good))
    assert [f.id for f in result.followups] == ["good"]
    (error,) = result.errors
    assert error.item == event.split("\n")[0].removeprefix("UID:")
    assert error.field == field


def test_malformed_vtodo_does_not_hide_the_rest() -> None:
    bad = vtodo("UID:bad-todo\nDUE:20250106T080000Z\nRRULE:FREQ=WEEKLY;BYDAY=XX\nSUMMARY:x")
    good = vevent("UID:good\nDTSTART:20250106T080000Z\nSUMMARY:fine")
    result = parse_calendar(cal(bad, good))
    assert [f.id for f in result.followups] == ["good"]
    assert result.errors[0].item == "bad-todo" and result.errors[0].field == "RRULE"


@pytest.mark.parametrize(
    "data",
    [
        "hello",
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n",
    ],
)
def test_not_a_usable_calendar(data: str) -> None:
    with pytest.raises(MappingError):
        parse_calendar(data)


def test_the_parsed_icalendar_is_unchanged() -> None:
    """Parsing must not mutate the components it is given (callers keep the server's copy)."""
    data = cal(
        vevent("""
        UID:untouched
        DTSTART;TZID=Europe/Oslo:20250106T090000
        DTEND;TZID=Europe/Oslo:20250106T100000
        SUMMARY:x
        RRULE:FREQ=WEEKLY;COUNT=3
        EXDATE;TZID=Europe/Oslo:20250113T090000
    """)
    )
    component = icalendar.Calendar.from_ical(data).walk("VEVENT")[0]
    before = component.to_ical()
    parse_components([component])
    assert component.to_ical() == before
