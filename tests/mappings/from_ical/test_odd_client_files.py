"""What some clients and exporters write that RFC 5545 frowns on, read without losing it.

* One occurrence of a timed series made all-day by itself (Thunderbird, Outlook): the
  override's DTSTART is a DATE while the master's is a DATE-TIME.
* VEVENTs without UID: each gets a UID derived from its content, the same on every read.
* Two master copies of one UID: the newest is kept, the others' EXDATEs applied where
  they do not contradict it.
"""

from __future__ import annotations

import datetime as dt

import pytest

from mappings.documents import load_followup
from mappings.errors import MappingError
from mappings.from_ical import parse_calendar
from mappings.occurrences import occurrences
from mappings.resource import read, render
from mappings.to_ical import to_ical_bytes
from tests.mappings.conftest import STAMP, expand

TB_ALL_DAY = """BEGIN:VCALENDAR
PRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN
VERSION:2.0
BEGIN:VEVENT
UID:5f0d0c8e-93c4-4b0f-9d5e-1f1e0a2b3c4d
SUMMARY:Team sync
DTSTART;TZID=Europe/Oslo:20260302T100000
DTEND;TZID=Europe/Oslo:20260302T110000
RRULE:FREQ=WEEKLY;COUNT=6
DTSTAMP:20260301T120000Z
SEQUENCE:1
END:VEVENT
BEGIN:VEVENT
UID:5f0d0c8e-93c4-4b0f-9d5e-1f1e0a2b3c4d
RECURRENCE-ID;TZID=Europe/Oslo:20260316T100000
SUMMARY:Team sync (offsite)
DTSTART;VALUE=DATE:20260316
DTEND;VALUE=DATE:20260318
DTSTAMP:20260301T120000Z
SEQUENCE:2
X-MOZ-GENERATION:3
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


def test_an_all_day_occurrence_of_a_timed_series_is_read_and_mapped_back() -> None:
    parsed = parse_calendar(TB_ALL_DAY)
    assert parsed.errors == []
    [followup] = parsed.followups
    [exception] = followup.exceptions
    assert exception.original_start == dt.datetime(2026, 3, 16, 10)
    assert exception.all_day is True
    assert (exception.start, exception.end) == (dt.date(2026, 3, 16), dt.date(2026, 3, 18))
    assert exception.title == "Team sync (offsite)"
    # map(parse(x)) has the same occurrences as x, the all-day one as dates.
    mapped = to_ical_bytes([followup], stamp=STAMP)
    assert expand(mapped) == expand(TB_ALL_DAY)
    assert ("2026-03-16", "2026-03-18", "Team sync (offsite)") in expand(mapped)
    # ... and reads back to the same follow-up.
    assert parse_calendar(mapped).followups[0].exceptions == followup.exceptions


def test_an_all_day_exception_written_by_the_crm_has_dates_and_a_date_time_key() -> None:
    followup = load_followup(
        {
            "id": "7",
            "title": "Weekly",
            "start": "2026-03-02T10:00:00",
            "end": "2026-03-02T11:00:00",
            "timezone": "Europe/Oslo",
            "recurrence": {
                "Pattern": "Weekly",
                "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": 3,
            },
            "exceptions": [{"original_start": "2026-03-09T10:00:00", "all_day": True}],
        }
    )
    assert followup.to_json_dict()["exceptions"] == [
        {
            "original_start": "2026-03-09T10:00:00",
            "cancelled": False,
            "start": "2026-03-09",
            "end": "2026-03-10",
            "all_day": True,
        }
    ]
    assert [o.start for o in occurrences(followup)][1] == dt.date(2026, 3, 9)
    text = (render(followup, stamp=STAMP) or b"").decode()
    assert "RECURRENCE-ID;TZID=Europe/Oslo:20260309T100000" in text
    assert "DTSTART;VALUE=DATE:20260309" in text
    assert "DTEND;VALUE=DATE:20260310" in text


@pytest.mark.parametrize(
    ("exception", "message"),
    [
        ({"original_start": "2026-03-09T10:00:00", "all_day": True, "cancelled": True},
         "a cancelled exception"),
        ({"original_start": "2026-03-09T10:00:00", "all_day": True, "start": "2026-03-09",
          "end": "2026-03-09"}, "at least one day"),
    ],
)  # fmt: skip
def test_a_bad_all_day_exception_is_refused_by_name(
    exception: dict[str, object], message: str
) -> None:
    doc = {
        "id": "8",
        "start": "2026-03-02T10:00:00",
        "end": "2026-03-02T11:00:00",
        "recurrence": {
            "Pattern": "Weekly",
            "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": 3,
        },
        "exceptions": [exception],
    }
    with pytest.raises(MappingError, match=message) as raised:
        load_followup(doc)
    assert raised.value.item == "8"


NO_UID = """BEGIN:VCALENDAR
PRODID:-//Example Corp.//Legacy Exporter 2.1//EN
VERSION:2.0
BEGIN:VEVENT
DTSTAMP:20260101T080000Z
SUMMARY:Supplier review
DTSTART:20260407T110000Z
DTEND:20260407T120000Z
RRULE:FREQ=WEEKLY;COUNT=4
END:VEVENT
BEGIN:VEVENT
DTSTAMP:20260101T080000Z
SUMMARY:Board meeting
DTSTART:20260410T090000Z
DTEND:20260410T110000Z
END:VEVENT
BEGIN:VEVENT
DTSTAMP:20260101T080000Z
SUMMARY:Board meeting
DTSTART:20260410T090000Z
DTEND:20260410T110000Z
END:VEVENT
BEGIN:VEVENT
UID:has-one@example.com
DTSTAMP:20260101T080000Z
SUMMARY:With a UID
DTSTART:20260411T090000Z
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


def test_events_without_uid_get_the_same_derived_uids_on_every_parse() -> None:
    first, second = parse_calendar(NO_UID), parse_calendar(NO_UID.encode())
    assert first.errors == [] and second.errors == []
    uids = [f.effective_uid for f in first.followups]
    assert uids == [f.effective_uid for f in second.followups]
    assert len(set(uids)) == 4, "two identical events stay two items"
    assert "has-one@example.com" in uids
    derived = [u for u in uids if u != "has-one@example.com"]
    assert all(u.startswith("derived-") and u.endswith("@followup-sync") for u in derived)
    named = [w for w in first.warnings if "has no UID" in w]
    assert len(named) == 3
    assert any("'Supplier review' at 20260407T110000Z" in w for w in named), named
    # A re-stamped export (new DTSTAMP) is still the same items.
    restamped = parse_calendar(NO_UID.replace("20260101T080000Z", "20260301T080000Z"))
    assert [f.effective_uid for f in restamped.followups] == uids


def test_a_resource_without_uid_reads_with_the_uid_parse_gives() -> None:
    single = NO_UID.split("BEGIN:VEVENT")[0] + "BEGIN:VEVENT" + NO_UID.split("BEGIN:VEVENT")[1]
    single = single.split("END:VEVENT")[0] + "END:VEVENT\r\nEND:VCALENDAR\r\n"
    resource = read(single.encode())
    assert resource.uid == parse_calendar(single).followups[0].effective_uid
    assert resource.warnings and resource.uid in resource.warnings[0]


TWO_MASTERS = """BEGIN:VCALENDAR
PRODID:-//test//EN
VERSION:2.0
BEGIN:VEVENT
UID:dup@example.com
SEQUENCE:3
DTSTAMP:20260105T080000Z
SUMMARY:Old title
DTSTART:20260302T090000Z
DTEND:20260302T100000Z
RRULE:FREQ=DAILY;COUNT=6
EXDATE:20260303T090000Z
EXDATE:20260305T090000Z
EXDATE:20260310T090000Z
END:VEVENT
BEGIN:VEVENT
UID:dup@example.com
SEQUENCE:4
DTSTAMP:20260101T080000Z
SUMMARY:New title
DTSTART:20260302T090000Z
DTEND:20260302T100000Z
RRULE:FREQ=DAILY;COUNT=6
EXDATE:20260306T090000Z
END:VEVENT
BEGIN:VEVENT
UID:dup@example.com
RECURRENCE-ID:20260305T090000Z
DTSTAMP:20260106T080000Z
SUMMARY:New title
DTSTART:20260305T130000Z
DTEND:20260305T140000Z
END:VEVENT
BEGIN:VEVENT
UID:dup@example.com
RECURRENCE-ID:20260306T090000Z
DTSTAMP:20260106T080000Z
SUMMARY:Moved but deleted by the newest master
DTSTART:20260306T150000Z
DTEND:20260306T160000Z
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


def test_two_masters_keep_the_highest_sequence_and_the_others_exdates_that_fit() -> None:
    parsed = parse_calendar(TWO_MASTERS)
    assert parsed.errors == []
    [followup] = parsed.followups
    assert followup.title == "New title", "SEQUENCE 4 beats SEQUENCE 3 despite its older DTSTAMP"
    by_key = {e.original_start: e for e in followup.exceptions}
    # The old copy's EXDATE of 3 March applies; of 5 March it does not (an override edits
    # that occurrence); of 10 March it is no occurrence. The newest copy's EXDATE of 6
    # March wins over the override of that day.
    assert by_key[dt.datetime(2026, 3, 3, 9)].cancelled
    assert by_key[dt.datetime(2026, 3, 5, 9)].start == dt.datetime(2026, 3, 5, 13)
    assert by_key[dt.datetime(2026, 3, 6, 9)].cancelled
    assert set(by_key) == {dt.datetime(2026, 3, d, 9) for d in (3, 5, 6)}
    assert any("dup@example.com: 2 master copies" in w for w in parsed.warnings)
    assert any("20260306" in w.replace("-", "") and "contradicts" in w for w in parsed.warnings)


def test_equal_sequence_is_decided_by_the_later_stamp() -> None:
    text = TWO_MASTERS.replace("SEQUENCE:4", "SEQUENCE:3")
    [followup] = parse_calendar(text).followups
    assert followup.title == "Old title", "DTSTAMP 5 January is later than 1 January"
    modified = text.replace(
        "SUMMARY:New title\r\nDTSTART",
        "LAST-MODIFIED:20260201T000000Z\r\nSUMMARY:New title\r\nDTSTART",
        1,
    )
    assert parse_calendar(modified).followups[0].title == "New title"


def test_a_write_back_over_two_masters_leaves_the_kept_one() -> None:
    [followup] = parse_calendar(TWO_MASTERS).followups
    data = render(
        followup.model_copy(update={"location": "Room 1"}), stamp=STAMP, base=TWO_MASTERS.encode()
    )
    assert data is not None
    masters = [c for c in read(data).components if "RECURRENCE-ID" not in c]
    assert [str(m["SUMMARY"]) for m in masters] == ["New title"]
    assert str(masters[0]["SEQUENCE"]) == "4", "what the server kept of the newest copy stays"


def test_a_uid_less_event_with_repeated_properties_is_that_items_error_not_a_crash() -> None:
    """Found by the reliability fuzzer: naming a UID-less item for its warning read a
    repeated DTSTART as one value and crashed the whole read."""
    data = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\n"
        b"SUMMARY:Kickoff\r\nSUMMARY:Kickoff again\r\n"
        b"DTSTART:20260301T090000Z\r\nDTSTART:20260302T090000Z\r\n"
        b"DTEND:20260301T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    result = parse_calendar(data)
    assert result.followups == []
    assert any("'Kickoff' at 20260301T090000Z has no UID" in w for w in result.warnings)
    [error] = [str(e) for e in result.errors]
    assert "derived-" in error and "DTSTART appears more than once" in error, error
