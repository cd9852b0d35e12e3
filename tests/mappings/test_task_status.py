"""Task completion in the mapper: the document's ``status`` ↔ VTODO STATUS/COMPLETED/
PERCENT-COMPLETE (and ``X-FOLLOWUP-STATUS`` on events), for the series and one occurrence."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from icalendar import Calendar, Component

from mappings.describe import status_text
from mappings.documents import load_followup
from mappings.equivalence import same_meaning
from mappings.errors import MappingError
from mappings.from_ical import parse_calendar
from mappings.itip import request
from mappings.model import FollowUp, FollowUpStatus
from mappings.resource import render
from mappings.to_ical import to_ical_bytes

STAMP = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
TICKED = dt.datetime(2026, 2, 28, 16, 10, tzinfo=dt.UTC)


def task(**changes: Any) -> FollowUp:
    data: dict[str, Any] = {
        "id": "77",
        "kind": "task",
        "title": "Submit expense report",
        "start": "2026-01-28T15:00:00",
        "end": "2026-01-28T16:00:00",
        "timezone": "Europe/Oslo",
        "recurrence": {
            "Pattern": "Monthly",
            "MonthPattern": {"Pattern": "DayOfMonth", "Cycle": 1, "Day": 28},
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": 6,
        },
    }
    data.update(changes)
    return load_followup(data)


def components(data: bytes) -> list[Component]:
    return [c for c in Calendar.from_ical(data).walk() if c.name in ("VEVENT", "VTODO")]


def round_trip(followup: FollowUp) -> FollowUp:
    result = parse_calendar(to_ical_bytes([followup], stamp=STAMP))
    assert result.errors == [] and result.warnings == []
    [back] = result.followups
    return back


def todo_text(*lines: str, override: tuple[str, ...] = ()) -> str:
    head = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        "BEGIN:VTODO\r\nUID:t1@example.com\r\nDTSTAMP:20260101T000000Z\r\n"
        "DTSTART:20260128T140000Z\r\nDUE:20260128T150000Z\r\nSUMMARY:Report\r\n"
        "RRULE:FREQ=MONTHLY;COUNT=3\r\n"
    )
    body = "".join(f"{line}\r\n" for line in lines) + "END:VTODO\r\n"
    if override:
        body += (
            "BEGIN:VTODO\r\nUID:t1@example.com\r\nDTSTAMP:20260101T000000Z\r\n"
            "RECURRENCE-ID:20260228T140000Z\r\nDTSTART:20260228T140000Z\r\n"
            "DUE:20260228T150000Z\r\nSUMMARY:Report\r\n"
            + "".join(f"{line}\r\n" for line in override)
            + "END:VTODO\r\n"
        )
    return head + body + "END:VCALENDAR\r\n"


def parse_one(text: str) -> FollowUp:
    result = parse_calendar(text)
    assert result.errors == []
    [followup] = result.followups
    return followup


# --- the document ---------------------------------------------------------------------


def test_documents_without_a_status_load_and_render_as_before() -> None:
    old = task()
    assert old.status is None
    assert "status" not in old.to_json_dict()
    todo = components(to_ical_bytes([old], stamp=STAMP))[0]
    assert not {"STATUS", "COMPLETED", "PERCENT-COMPLETE", "X-FOLLOWUP-STATUS"} & set(todo)


def test_completion_time_needs_a_completed_status() -> None:
    with pytest.raises(MappingError) as error:
        task(status="started", completed_at="2026-02-01T10:00:00Z")
    assert error.value.field == "completed_at"


def test_completion_time_is_kept_in_utc() -> None:
    followup = task(status="completed", completed_at="2026-02-01T11:00:00+01:00")
    assert followup.completed_at == dt.datetime(2026, 2, 1, 10, tzinfo=dt.UTC)


# --- CRM → calendar ------------------------------------------------------------------------


def test_completed_task_is_written_as_thunderbird_writes_a_ticked_off_task() -> None:
    todo = components(to_ical_bytes([task(status="completed", completed_at=TICKED)], stamp=STAMP))[
        0
    ]
    assert str(todo["STATUS"]) == "COMPLETED"
    assert todo["COMPLETED"].dt == TICKED
    assert int(todo["PERCENT-COMPLETE"]) == 100


def test_completed_task_without_a_known_time_is_stamped_with_the_write() -> None:
    todo = components(to_ical_bytes([task(status="completed")], stamp=STAMP))[0]
    assert todo["COMPLETED"].dt == STAMP


@pytest.mark.parametrize(
    ("status", "written", "percent"),
    [("not-started", "NEEDS-ACTION", 0), ("started", "IN-PROCESS", None)],
)
def test_open_statuses(status: str, written: str, percent: int | None) -> None:
    todo = components(to_ical_bytes([task(status=status)], stamp=STAMP))[0]
    assert str(todo["STATUS"]) == written
    assert "COMPLETED" not in todo
    assert (int(todo["PERCENT-COMPLETE"]) if "PERCENT-COMPLETE" in todo else None) == percent


def test_one_completed_occurrence_is_an_override_of_its_own() -> None:
    followup = task(
        exceptions=[
            {"original_start": "2026-02-28T15:00:00", "status": "completed", "completed_at": TICKED}
        ]
    )
    master, override = components(to_ical_bytes([followup], stamp=STAMP))
    assert "STATUS" not in master
    assert str(override["STATUS"]) == "COMPLETED"
    assert override["COMPLETED"].dt == TICKED
    assert override["DTSTART"].dt == dt.datetime(2026, 2, 28, 15, tzinfo=followup.zone)


def test_appointment_status_is_an_x_property_not_the_events_status() -> None:
    meeting = task(kind="appointment", status="completed")
    event = components(to_ical_bytes([meeting], stamp=STAMP))[0]
    assert event.name == "VEVENT"
    assert str(event["X-FOLLOWUP-STATUS"]) == "completed"
    assert "STATUS" not in event and "COMPLETED" not in event


@pytest.mark.parametrize("kind", ["task", "appointment", "call"])
@pytest.mark.parametrize("status", [None, "not-started", "started", "completed"])
def test_status_round_trips_for_series_and_occurrence(kind: str, status: str | None) -> None:
    followup = task(
        kind=kind,
        status=status,
        exceptions=[{"original_start": "2026-03-28T15:00:00", "status": "started"}]
        if status != "started"
        else [{"original_start": "2026-03-28T15:00:00", "status": "completed"}],
    )
    back = round_trip(followup)
    assert back.status == followup.status
    assert [e.status for e in back.exceptions] == [e.status for e in followup.exceptions]
    assert same_meaning(back, followup)


# --- calendar → CRM --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "status", "completed_at"),
    [
        (("STATUS:COMPLETED", "COMPLETED:20260228T161000Z", "PERCENT-COMPLETE:100"),
         FollowUpStatus.completed, TICKED),  # Thunderbird
        (("STATUS:COMPLETED", "COMPLETED:20260228T161000Z"),
         FollowUpStatus.completed, TICKED),  # Apple Reminders
        (("COMPLETED:20260228T161000Z",), FollowUpStatus.completed, TICKED),
        (("PERCENT-COMPLETE:100",), FollowUpStatus.completed, None),
        (("PERCENT-COMPLETE:40",), FollowUpStatus.started, None),
        (("STATUS:IN-PROCESS", "PERCENT-COMPLETE:40"), FollowUpStatus.started, None),
        (("STATUS:NEEDS-ACTION",), FollowUpStatus.not_started, None),
        # STATUS decides; a stale COMPLETED next to a re-opened task is not a completion.
        (("STATUS:NEEDS-ACTION", "COMPLETED:20260228T161000Z"), FollowUpStatus.not_started, None),
        ((), None, None),
    ],
)  # fmt: skip
def test_client_forms_of_a_status(
    lines: tuple[str, ...], status: FollowUpStatus | None, completed_at: dt.datetime | None
) -> None:
    followup = parse_one(todo_text(*lines))
    assert (followup.status, followup.completed_at) == (status, completed_at)


def test_one_occurrence_ticked_off_in_a_client_becomes_an_exception_status() -> None:
    followup = parse_one(
        todo_text(
            override=("STATUS:COMPLETED", "COMPLETED:20260228T161000Z", "PERCENT-COMPLETE:100")
        )
    )
    [exception] = followup.exceptions
    assert exception.status == FollowUpStatus.completed
    assert exception.completed_at == TICKED
    assert exception.start is None and exception.title is None


def test_an_override_with_the_series_status_carries_no_status_of_its_own() -> None:
    followup = parse_one(
        todo_text("STATUS:IN-PROCESS", override=("STATUS:IN-PROCESS", "LOCATION:Room 2"))
    )
    [exception] = followup.exceptions
    assert exception.status is None
    # Thunderbird writes NEEDS-ACTION on an override of a task that says nothing.
    assert parse_one(todo_text(override=("STATUS:NEEDS-ACTION",))).exceptions == []


# --- write-back over the client's resource -------------------------------------------------


def test_crm_reopening_a_task_removes_the_clients_completion() -> None:
    completed = task(status="completed", completed_at=TICKED)
    on_server = to_ical_bytes([completed], stamp=STAMP).replace(
        b"END:VTODO", b"X-MOZ-GENERATION:4\r\nEND:VTODO", 1
    )
    data = render(task(status="not-started"), stamp=STAMP, base=on_server)
    assert data is not None
    todo = components(data)[0]
    assert str(todo["STATUS"]) == "NEEDS-ACTION"
    assert "COMPLETED" not in todo
    assert int(todo["PERCENT-COMPLETE"]) == 0
    assert str(todo["X-MOZ-GENERATION"]) == "4", "the client's own properties stay"


def test_an_events_own_status_is_the_clients() -> None:
    meeting = task(kind="appointment", status="completed")
    on_server = to_ical_bytes([meeting], stamp=STAMP).replace(
        b"END:VEVENT", b"STATUS:CONFIRMED\r\nEND:VEVENT", 1
    )
    data = render(meeting.model_copy(update={"status": None}), stamp=STAMP, base=on_server)
    assert data is not None
    event = components(data)[0]
    assert str(event["STATUS"]) == "CONFIRMED"
    assert "X-FOLLOWUP-STATUS" not in event, "the CRM cleared it"


# --- describe --------------------------------------------------------------------------------


def test_describe_names_the_status_and_the_occurrences_with_their_own() -> None:
    followup = task(
        status="started",
        exceptions=[
            {"original_start": "2026-02-28T15:00:00", "status": "completed"},
            {"original_start": "2026-03-28T15:00:00", "status": "completed"},
        ],
    )
    assert status_text(followup) == "Started, 2 occurrences completed"
    assert status_text(followup, "nb") == "Startet, 2 forekomster fullført"
    assert status_text(task()) == ""


def test_invitations_do_not_carry_the_crms_status() -> None:
    meeting = task(
        kind="appointment",
        status="completed",
        organizer={"email": "alice@example.com"},
        participants=[{"email": "bob@example.com"}],
    )
    text = bytes(request(meeting, 0, stamp=STAMP).to_ical())
    assert b"X-FOLLOWUP-STATUS" not in text
