"""Organizer/participants mapping, iTIP messages (RFC 5546) and the reply shapes of real clients."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from mappings import itip
from mappings.documents import load_followup
from mappings.from_ical import parse_calendar
from mappings.resource import render
from mappings.to_ical import to_ical_bytes
from sync.invitations.replies import calendar_parts

STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DATA = Path(__file__).parent.parent / "data" / "itip"


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "77",
        "title": "Board",
        "location": "Room 2",
        "start": "2026-03-02T10:00:00",
        "end": "2026-03-02T11:00:00",
        "timezone": "Europe/Oslo",
        "recurrence": {
            "Pattern": "Weekly",
            "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": 5,
        },
        "organizer": {"name": "Alice Ørn", "email": "alice@crm.example"},
        "language": "nb",
        "participants": [
            {
                "name": "Bob",
                "email": "bob@ext.example",
                "status": "accepted",
                "occurrence_status": {"2026-03-09T10:00:00": "declined"},
            },
            {"email": "carol@ext.example", "role": "optional"},
        ],
    }
    base.update(changes)
    return base


def test_participants_round_trip_through_icalendar() -> None:
    followup = load_followup(doc())
    data = to_ical_bytes([followup], stamp=STAMP).decode()
    unfolded = data.replace("\r\n ", "")
    assert 'ORGANIZER;CN="Alice Ørn":mailto:alice@crm.example' in unfolded
    assert (
        "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:bob@ext.example"
        in unfolded
    )
    assert (
        "ATTENDEE;PARTSTAT=NEEDS-ACTION;ROLE=OPT-PARTICIPANT;RSVP=TRUE:mailto:carol@ext.example"
        in unfolded
    )
    # Bob's answer for one occurrence: an override of its own with his PARTSTAT there.
    assert "RECURRENCE-ID;TZID=Europe/Oslo:20260309T100000" in unfolded
    assert "PARTSTAT=DECLINED" in unfolded
    back = parse_calendar(data).followups[0]
    assert back.organizer == followup.organizer
    assert back.participants == followup.participants
    assert back.language == followup.language
    assert back.exceptions == [], "an answered occurrence is not an edited one"


def test_attendees_a_client_typed_into_a_plain_event_are_not_participants() -> None:
    plain = load_followup(doc(organizer=None, participants=[], language="en"))
    data = to_ical_bytes([plain], stamp=STAMP).decode()
    data = data.replace("END:VEVENT", "ATTENDEE;CN=Bob:mailto:bob@example.com\r\nEND:VEVENT", 1)
    back = parse_calendar(data).followups[0]
    assert back.participants == [] and back.organizer is None
    # …and they survive our next write of that follow-up.
    rendered = render(plain, stamp=STAMP, base=data.encode())
    assert rendered is not None and b"mailto:bob@example.com" in rendered


def test_follow_ups_without_invitation_fields_keep_their_json() -> None:
    plain = load_followup(doc(organizer=None, participants=[], language="en"))
    assert {"participants", "language", "organizer"}.isdisjoint(plain.to_json_dict())


def test_schedule_agent_marks_every_attendee_on_the_calendar_copy() -> None:
    rendered = render(load_followup(doc()), stamp=STAMP, schedule_agent="CLIENT")
    assert rendered is not None
    cal = Calendar.from_ical(rendered)
    attendees = [a for c in cal.walk("VEVENT") for a in c["ATTENDEE"]]
    assert attendees and all(a.params["SCHEDULE-AGENT"] == "CLIENT" for a in attendees)


def test_request_holds_the_whole_series_and_follows_rfc_5546() -> None:
    cal = itip.request(
        load_followup(
            doc(
                exceptions=[
                    {
                        "original_start": "2026-03-16T10:00:00",
                        "start": "2026-03-16T12:00:00",
                        "end": "2026-03-16T13:00:00",
                    }
                ]
            )
        ),
        3,
        stamp=STAMP,
    )
    assert itip.problems(cal) == []
    assert str(cal["METHOD"]) == "REQUEST"
    events = cal.walk("VEVENT")
    assert [int(e["SEQUENCE"]) for e in events] == [3, 3, 3]  # master, Bob's answer, the moved one
    assert cal.walk("VTIMEZONE")
    assert b"X-FOLLOWUP" not in cal.to_ical()


def test_cancel_of_one_occurrence_has_its_recurrence_id() -> None:
    occurrence = dt.datetime(2026, 3, 23, 10)
    cal = itip.cancel(load_followup(doc()), 2, stamp=STAMP, occurrence=occurrence)
    assert itip.problems(cal) == []
    (event,) = cal.walk("VEVENT")
    assert event["RECURRENCE-ID"].to_ical() == b"20260323T100000"
    assert event["RECURRENCE-ID"].params["TZID"] == "Europe/Oslo"
    assert str(event["STATUS"]) == "CANCELLED"


def test_problems_finds_what_rfc_5546_forbids() -> None:
    cal = itip.request(load_followup(doc()), 0, stamp=STAMP)
    for event in cal.walk("VEVENT"):
        event.pop("SEQUENCE")
        event.pop("ORGANIZER")
    found = itip.problems(cal)
    assert any("SEQUENCE" in p for p in found) and any("ORGANIZER is required" in p for p in found)


@pytest.mark.parametrize(
    ("changes", "significant"),
    [
        ({"title": "Board (renamed)"}, False),
        ({"description": "Agenda attached"}, False),
        ({"location": "Room 9"}, True),
        ({"start": "2026-03-02T11:00:00", "end": "2026-03-02T12:00:00"}, True),
        ({"exceptions": [{"original_start": "2026-03-16T10:00:00", "cancelled": True}]}, True),
        (
            {
                "exceptions": [
                    {"original_start": "2026-03-16T10:00:00", "start": "2026-03-16T12:00:00"}
                ]
            },
            True,
        ),
        ({"exceptions": [{"original_start": "2026-03-16T10:00:00", "title": "Special"}]}, False),
        (
            {
                "recurrence": {
                    "Pattern": "Weekly",
                    "WeekPattern": {"Weekdays": "Monday", "Cycle": 1},
                    "RecurrenceEndType": "Counter",
                    "RecurrenceCounter": 6,
                }
            },
            True,
        ),
        ({"participants": [{"email": "bob@ext.example", "status": "declined"}]}, False),
    ],
)
def test_significant_change(changes: dict[str, Any], significant: bool) -> None:
    assert (
        itip.significant_change(load_followup(doc()), load_followup(doc(**changes))) is significant
    )


def fill(name: str, **values: str) -> bytes:
    raw = (DATA / name).read_text(encoding="utf-8")
    for key, value in values.items():
        raw = raw.replace("{" + key + "}", value)
    return raw.encode()


@pytest.mark.parametrize(
    ("name", "email", "partstat", "recurrence_id"),
    [
        ("outlook-reply.eml", "bjorn@partner.example", "accepted", None),
        ("gmail-reply.eml", "carol@gmail.example", "declined", None),
        (
            "apple-reply-occurrence.eml",
            "dag@icloud.example",
            "declined",
            dt.datetime(2026, 3, 23, 9, 0),
        ),
        ("thunderbird-reply.eml", "eva@bird.example", "tentative", None),
    ],
)
def test_reply_shapes_of_real_clients(
    name: str, email: str, partstat: str, recurrence_id: dt.datetime | None
) -> None:
    raw = fill(name, UID="u-1@example", SEQUENCE="4", RID_LOCAL="20260323T100000")
    (payload, *_) = calendar_parts(raw)
    reply = itip.parse_reply(payload)
    assert (reply.uid, reply.attendee_email, reply.partstat.value, reply.sequence) == (
        "u-1@example",
        email,
        partstat,
        4,
    )
    if recurrence_id is None:
        assert reply.recurrence_id is None
    else:
        assert isinstance(reply.recurrence_id, dt.datetime)
        assert reply.recurrence_id.astimezone(dt.UTC).replace(tzinfo=None) == recurrence_id


def test_a_request_is_not_a_reply() -> None:
    with pytest.raises(itip.ItipError, match="not an iTIP REPLY"):
        itip.parse_reply(itip.request(load_followup(doc()), 0, stamp=STAMP).to_ical())
