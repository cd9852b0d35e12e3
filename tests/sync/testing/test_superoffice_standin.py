"""The SuperOffice stand-in books, edits and guards rows as SuperOffice documents it.

Every test talks HTTP to a real stand-in on 127.0.0.1 and ends by asserting that no response
left SuperOffice's published API description (the `crm` fixture checks `violations`).
Recurrence patterns and expected dates come from shared/reference/superoffice-recurrence.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

from sync.testing.superoffice import __main__ as standalone
from sync.testing.superoffice import carriers
from sync.testing.superoffice.contract import merged_openapi3
from sync.testing.superoffice.recurrence import expand, parse_weekdays
from sync.testing.superoffice.server import SuperOfficeStandIn

AGENT = "/api/v1/Agents/Appointment/"


@pytest.fixture
def crm() -> Iterator[SuperOfficeStandIn]:
    with SuperOfficeStandIn() as standin:
        standin.add_basic_user("sync", "secret", associate_id=5)
        yield standin
        assert standin.violations == []


@pytest.fixture
def api(crm: SuperOfficeStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=crm.base_url, auth=("sync", "secret"), timeout=10) as client:
        yield client


def book(api: httpx.Client, recurrence: dict[str, Any] | None, start: str) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "Title": "Follow-up",
        "StartDate": start,
        "EndDate": (datetime.fromisoformat(start) + timedelta(minutes=30)).isoformat(),
    }
    if recurrence is not None:
        entity["Recurrence"] = {"IsRecurrence": True, **recurrence}
    response = api.post("/api/v1/Appointment", json=entity)
    assert response.status_code == 200, response.text
    saved: dict[str, Any] = response.json()
    return saved


def records(api: httpx.Client, rule_id: int) -> list[dict[str, Any]]:
    response = api.post(
        AGENT + "GetAppointmentRecords", json={"MotherId": 0, "RecurrenceRuleId": rule_id}
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def starts(rows: list[dict[str, Any]]) -> list[str]:
    return [row["StartDate"] for row in rows]


def counter(n: int) -> dict[str, Any]:
    return {"RecurrenceEndType": "Counter", "RecurrenceCounter": n}


def until(day: str) -> dict[str, Any]:
    return {"RecurrenceEndType": "EndDate", "EndDate": f"{day}T00:00:00"}


PATTERNS: list[tuple[str, str, dict[str, Any], list[str]]] = [
    (
        "daily every workday (Mon-Fri), 8 times",
        "2026-01-08T14:00:00",
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}, **counter(8)},
        ["01-08", "01-09", "01-12", "01-13", "01-14", "01-15", "01-16", "01-19"],
    ),
    (
        "daily every weekday (Mon-Sun) until a date",
        "2026-01-08T14:00:00",
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWeekday"}, **until("2026-01-11")},
        ["01-08", "01-09", "01-10", "01-11"],
    ),
    (
        "every 6 days",
        "2026-01-01T09:00:00",
        {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryCyclicDay", "Cycle": 6}, **counter(3)},
        ["01-01", "01-07", "01-13"],
    ),
    (
        "every 3 weeks on Tuesday",
        "2026-01-06T09:00:00",
        {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Tuesday", "Cycle": 3}, **counter(3)},
        ["01-06", "01-27", "02-17"],
    ),
    (
        "weekly on Tuesday and Thursday (the diary/dev example)",
        "2021-11-04T11:30:00",
        {
            "Pattern": "Weekly",
            "WeekPattern": {"Weekdays": "Tuesday, Thursday", "Cycle": 1},
            **until("2021-11-23"),
        },
        ["11-04", "11-09", "11-11", "11-16", "11-18", "11-23"],
    ),
    (
        "day 20 of every 3 months",
        "2026-01-20T10:00:00",
        {"Pattern": "Monthly", "MonthPattern": {"Pattern": "DayOfMonth", "Day": 20, "Cycle": 3}}
        | counter(3),
        ["01-20", "04-20", "07-20"],
    ),
    (
        "4th Thursday of every 2 months",
        "2026-01-01T10:00:00",
        {
            "Pattern": "Monthly",
            "MonthPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 2,
                "Weekday": "Thursday",
                "WeekOfMonth": "Fourth",
            },
            **counter(3),
        },
        ["01-22", "03-26", "05-28"],
    ),
    (
        "last Friday of every month",
        "2026-01-01T10:00:00",
        {
            "Pattern": "Monthly",
            "MonthPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 1,
                "Weekday": "Friday",
                "WeekOfMonth": "Last",
            },
            **counter(3),
        },
        ["01-30", "02-27", "03-27"],
    ),
    (
        "day 13 of April every year",
        "2026-01-01T10:00:00",
        {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 4, "Day": 13}}
        | counter(2),
        ["04-13", "04-13"],
    ),
    (
        "4th Thursday of August every year",
        "2026-01-01T10:00:00",
        {
            "Pattern": "Yearly",
            "YearPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 8,
                "Weekday": "Thursday",
                "WeekOfMonth": "Fourth",
            },
            **counter(2),
        },
        ["08-27", "08-26"],
    ),
    (
        "custom dates (the CRMScript daycare example)",
        "2020-08-17T08:00:00",
        {
            "Pattern": "Custom",
            "Dates": [
                {"Date": f"{day}T00:00:00"}
                for day in ("2020-08-17", "2020-09-21", "2020-11-16", "2021-01-04")
            ],
        },
        ["08-17", "09-21", "11-16", "01-04"],
    ),
]


@pytest.mark.parametrize(
    ("start", "recurrence", "month_days"),
    [case[1:] for case in PATTERNS],
    ids=[case[0] for case in PATTERNS],
)
def test_a_series_books_one_row_per_date_of_its_rule(
    api: httpx.Client, start: str, recurrence: dict[str, Any], month_days: list[str]
) -> None:
    first = book(api, recurrence, start)
    rows = records(api, first["Recurrence"]["RecurrenceId"])
    assert [value[5:10] for value in starts(rows)] == month_days
    assert {value[11:] for value in starts(rows)} == {start[11:]}
    assert all(row["IsRecurrence"] for row in rows)
    assert first["Recurrence"]["Pattern"] == recurrence["Pattern"]
    calculated = api.post(
        AGENT + "CalculateDays",
        json={"AppointmentEntity": {"StartDate": start, "Recurrence": recurrence}},
    )
    assert [entry["Date"] for entry in calculated.json()["Dates"]] == starts(rows)


def test_weekdays_are_read_as_names_flags_text_or_the_database_bitmask() -> None:
    assert parse_weekdays("Monday, Friday") == parse_weekdays(17) == {0, 4}
    assert parse_weekdays("Unknown") == set()


def test_day_31_falls_on_the_last_day_of_a_shorter_month() -> None:
    """Undocumented in SuperOffice (superoffice-recurrence.md §3.6): the stand-in's choice."""
    rule = {
        "StartDate": "2026-01-31T10:00:00",
        "Pattern": "Monthly",
        "MonthPattern": {"Pattern": "DayOfMonth", "Day": 31, "Cycle": 1},
        **counter(3),
    }
    assert expand(rule) == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)]


def weekly_series(api: httpx.Client, count: int = 4) -> list[dict[str, Any]]:
    first = book(
        api,
        {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday", "Cycle": 1}, **counter(count)},
        "2026-03-02T09:00:00",
    )
    return records(api, first["Recurrence"]["RecurrenceId"])


def test_moving_one_occurrence_makes_it_an_exception_and_moving_it_back_undoes_that(
    crm: SuperOfficeStandIn, api: httpx.Client
) -> None:
    rows = weekly_series(api)
    second = rows[1]["AppointmentId"]
    moved = api.post(
        AGENT + "Move",
        json={
            "AppointmentId": second,
            "NewStartTime": "2026-03-10T15:00:00",
            "UpdateMode": "OnlyThis",
        },
    )
    assert moved.status_code == 200
    assert moved.json()["StartDate"] == "2026-03-10T15:00:00"
    assert crm.tenant.row(second).is_exception
    assert starts(records(api, moved.json()["Recurrence"]["RecurrenceId"])) == [
        "2026-03-02T09:00:00",
        "2026-03-10T15:00:00",
        "2026-03-16T09:00:00",
        "2026-03-23T09:00:00",
    ]
    api.post(
        AGENT + "Move",
        json={
            "AppointmentId": second,
            "NewStartTime": "2026-03-09T09:00:00",
            "UpdateMode": "OnlyThis",
        },
    )
    assert not crm.tenant.row(second).is_exception


def test_deleting_one_occurrence_keeps_the_rule_and_the_other_rows(api: httpx.Client) -> None:
    rows = weekly_series(api)
    rule_id = rows[0]["AppointmentId"]
    response = api.post(
        AGENT + "Delete", json={"AppointmentId": rows[2]["AppointmentId"], "UpdateMode": "OnlyThis"}
    )
    assert response.status_code == 204
    entity = api.get(f"/api/v1/Appointment/{rule_id}").json()
    left = records(api, entity["Recurrence"]["RecurrenceId"])
    assert starts(left) == ["2026-03-02T09:00:00", "2026-03-09T09:00:00", "2026-03-23T09:00:00"]


def test_this_and_following_moves_the_time_of_later_rows_only(api: httpx.Client) -> None:
    rows = weekly_series(api)
    third = api.get(f"/api/v1/Appointment/{rows[2]['AppointmentId']}").json()
    third.update(StartDate="2026-03-16T11:00:00", EndDate="2026-03-16T11:30:00", Title="Later")
    saved = api.post(
        AGENT + "Save", json={"AppointmentEntity": third, "UpdateMode": "ThisAndForward"}
    )
    assert saved.status_code == 200
    after = records(api, third["Recurrence"]["RecurrenceId"])
    assert starts(after) == [
        "2026-03-02T09:00:00",
        "2026-03-09T09:00:00",
        "2026-03-16T11:00:00",
        "2026-03-23T11:00:00",
    ]
    assert [row["Title"] for row in after] == ["Follow-up", "Follow-up", "Later", "Later"]


def test_a_new_pattern_from_one_row_on_ends_the_old_rule_and_starts_a_new_one(
    api: httpx.Client,
) -> None:
    rows = weekly_series(api)
    third = api.get(f"/api/v1/Appointment/{rows[2]['AppointmentId']}").json()
    old_rule = third["Recurrence"]["RecurrenceId"]
    third["Recurrence"] = {
        "IsRecurrence": True,
        "Pattern": "Weekly",
        "WeekPattern": {"Weekdays": "Wednesday", "Cycle": 1},
        **counter(2),
    }
    third["StartDate"], third["EndDate"] = "2026-03-18T09:00:00", "2026-03-18T09:30:00"
    saved = api.post(
        AGENT + "Save", json={"AppointmentEntity": third, "UpdateMode": "ThisAndForward"}
    ).json()
    assert starts(records(api, old_rule)) == ["2026-03-02T09:00:00", "2026-03-09T09:00:00"]
    new_rule = saved["Recurrence"]["RecurrenceId"]
    assert new_rule != old_rule
    assert starts(records(api, new_rule)) == ["2026-03-18T09:00:00", "2026-03-25T09:00:00"]


def test_stop_repeating_deletes_later_rows_and_from_the_first_leaves_a_single(
    api: httpx.Client,
) -> None:
    rows = weekly_series(api)
    second = api.get(f"/api/v1/Appointment/{rows[1]['AppointmentId']}").json()
    api.post(AGENT + "Save", json={"AppointmentEntity": second, "UpdateMode": "StopRecurrence"})
    assert starts(records(api, second["Recurrence"]["RecurrenceId"])) == [
        "2026-03-02T09:00:00",
        "2026-03-09T09:00:00",
    ]
    first = api.get(f"/api/v1/Appointment/{rows[0]['AppointmentId']}").json()
    api.post(AGENT + "Save", json={"AppointmentEntity": first, "UpdateMode": "StopRecurrence"})
    single = api.get(f"/api/v1/Appointment/{rows[0]['AppointmentId']}").json()
    assert single["Recurrence"]["IsRecurrence"] is False
    assert api.get(f"/api/v1/Appointment/{rows[1]['AppointmentId']}").status_code == 404


def test_delete_this_and_following_and_complete_one_task(api: httpx.Client) -> None:
    rows = weekly_series(api)
    done = api.post(
        AGENT + "UpdateAppointmentWithMode",
        json={"Id": rows[0]["AppointmentId"], "Status": "Completed", "UpdateMode": "OnlyThis"},
    )
    assert done.json()["Completed"] == "Completed"
    api.post(
        AGENT + "Delete",
        json={"AppointmentId": rows[2]["AppointmentId"], "UpdateMode": "ThisAndForward"},
    )
    entity = api.get(f"/api/v1/Appointment/{rows[0]['AppointmentId']}").json()
    left = records(api, entity["Recurrence"]["RecurrenceId"])
    assert [(row["StartDate"], row["Completed"]) for row in left] == [
        ("2026-03-02T09:00:00", "Completed"),
        ("2026-03-09T09:00:00", "NotStarted"),
    ]


def test_a_write_is_refused_with_412_when_the_row_changed_since_it_was_read(
    crm: SuperOfficeStandIn, api: httpx.Client
) -> None:
    row_id = book(api, None, "2026-03-02T09:00:00")["AppointmentId"]
    read = api.get(f"/api/v1/Appointment/{row_id}")
    seen = read.headers["Last-Modified"]
    assert (
        api.get(f"/api/v1/Appointment/{row_id}", headers={"If-Modified-Since": seen}).status_code
        == 304
    )
    crm.edit_behind(row_id, title="Changed in the CRM")
    entity = read.json() | {"Title": "Changed in a calendar"}
    guard = {"If-Unmodified-Since": seen}
    assert api.put(f"/api/v1/Appointment/{row_id}", json=entity, headers=guard).status_code == 412
    assert (
        api.post(
            AGENT + "Save",
            json={"AppointmentEntity": entity, "UpdateMode": "OnlyThis"},
            headers=guard,
        ).status_code
        == 412
    )
    assert api.delete(f"/api/v1/Appointment/{row_id}", headers=guard).status_code == 412
    assert api.get(f"/api/v1/Appointment/{row_id}").json()["Title"] == "Changed in the CRM"
    fresh = {
        "If-Unmodified-Since": api.get(f"/api/v1/Appointment/{row_id}").headers["Last-Modified"]
    }
    assert api.put(f"/api/v1/Appointment/{row_id}", json=entity, headers=fresh).status_code == 200


def test_the_updated_watermark_lists_only_rows_changed_since(
    crm: SuperOfficeStandIn, api: httpx.Client
) -> None:
    rows = weekly_series(api)
    watermark = max(crm.tenant.row(row["AppointmentId"]).updated for row in rows).isoformat()
    crm.edit_behind(rows[1]["AppointmentId"], location="Room 2")
    listing = api.get(
        "/api/v1/Appointment",
        params={
            "$select": "appointmentId,updatedDate,recurrenceRuleId",
            "$filter": f"updatedDate after '{watermark}'",
        },
    ).json()
    assert [entry["appointmentId"] for entry in listing["value"]] == [rows[1]["AppointmentId"]]
    assert api.get("/api/v1/Appointment", params={"$filter": "nonsense gt 1"}).status_code == 400


def test_tasks_and_calls_are_appointment_types(api: httpx.Client) -> None:
    task = api.post(
        "/api/v1/Appointment",
        json={
            "Title": "Send offer",
            "Type": "inChecklist",
            "StartDate": "2026-03-02T00:00:00",
            "Task": {"Value": "To-do"},
        },
    ).json()
    call = api.post(
        "/api/v1/Appointment",
        json={
            "Title": "Call back",
            "Type": "inDiary",
            "StartDate": "2026-03-02T10:00:00",
            "EndDate": "2026-03-02T10:10:00",
            "Task": {"Value": "Phone"},
        },
    ).json()
    assert (task["Type"], task["Task"]["Value"]) == ("inChecklist", "To-do")
    assert (call["Type"], call["Task"]["Value"]) == ("inDiary", "Phone")


def test_every_endpoint_validates_against_superoffice_descriptions(
    crm: SuperOfficeStandIn, api: httpx.Client
) -> None:
    """Each served operation once, with a documented status; nothing left the contract."""
    rows = weekly_series(api, count=3)
    one, two, three = (row["AppointmentId"] for row in rows)
    entity = api.get(f"/api/v1/Appointment/{one}").json()
    calls = [
        api.get("/api/v1/Appointment", params={"$top": 2}),
        api.post(AGENT + "GetAppointmentEntity", params={"appointmentEntityId": one}),
        api.post(
            AGENT + "GetAppointmentRecords",
            json={"MotherId": 0, "RecurrenceRuleId": entity["Recurrence"]["RecurrenceId"]},
        ),
        api.post(AGENT + "CalculateDays", json={"AppointmentEntity": entity}),
        api.post(
            AGENT + "Save",
            json={"AppointmentEntity": entity | {"Title": "t"}, "UpdateMode": "OnlyThis"},
        ),
        api.post(
            AGENT + "Move",
            json={
                "AppointmentId": two,
                "NewStartTime": "2026-03-10T09:00:00",
                "UpdateMode": "OnlyThis",
            },
        ),
        api.post(
            AGENT + "UpdateAppointmentWithMode",
            json={"Id": two, "Status": "Started", "UpdateMode": "OnlyThis"},
        ),
        api.put(f"/api/v1/Appointment/{one}", json=entity),
        api.post(AGENT + "Delete", json={"AppointmentId": three, "UpdateMode": "OnlyThis"}),
        api.delete(f"/api/v1/Appointment/{two}"),
        api.get("/api/v1/Webhook"),
    ]
    assert [call.status_code for call in calls] == [200] * 8 + [204, 204, 200]
    assert crm.violations == []
    assert crm.unchecked_responses == []
    assert crm.refused_requests == []


def test_a_request_off_the_contract_is_refused_with_400(
    crm: SuperOfficeStandIn, api: httpx.Client
) -> None:
    response = api.post(
        AGENT + "Move", json={"AppointmentId": 1, "NewStartTime": "soon", "UpdateMode": "Sometimes"}
    )
    assert response.status_code == 400
    assert "Sometimes" in crm.refused_requests[0]


def test_the_stand_in_serves_exactly_the_operations_it_vendored(crm: SuperOfficeStandIn) -> None:
    """A route without a description would go unchecked; a description without a route is dead."""
    described = {
        (method.upper(), path)
        for path, operations in merged_openapi3()["paths"].items()
        for method in operations
    }
    served = {
        (method, pattern.replace(r"(\d+)", "{id}")) for method, pattern, _ in crm.routes.table()
    }
    assert served == described


def test_an_unset_update_mode_on_a_series_row_acts_as_this_and_following(api: httpx.Client) -> None:
    """The COM default (superoffice-recurrence.md §2.2); what REST does is undocumented."""
    rows = weekly_series(api, count=3)
    second = api.get(f"/api/v1/Appointment/{rows[1]['AppointmentId']}").json()
    second["Title"] = "From here on"
    api.post(AGENT + "Save", json={"AppointmentEntity": second})
    after = records(api, second["Recurrence"]["RecurrenceId"])
    assert [row["Title"] for row in after] == ["Follow-up", "From here on", "From here on"]


def test_a_response_off_the_contract_is_caught_as_a_stand_in_bug(
    crm: SuperOfficeStandIn, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The response check bites: an entity with a text id is answered 500 and kept."""
    row_id = book(api, None, "2026-03-02T09:00:00")["AppointmentId"]
    original = carriers.appointment_entity
    monkeypatch.setattr(
        carriers,
        "appointment_entity",
        lambda tenant, row: original(tenant, row) | {"AppointmentId": str(row.appointment_id)},
    )
    assert api.get(f"/api/v1/Appointment/{row_id}").status_code == 500
    assert "AppointmentId" in crm.violations.pop()


def test_exceptions_show_as_rows_that_differ_from_the_rules_own_dates(api: httpx.Client) -> None:
    """How a connector finds moved and deleted occurrences without `original_start_date`."""
    rows = weekly_series(api)
    api.post(
        AGENT + "Move",
        json={
            "AppointmentId": rows[1]["AppointmentId"],
            "NewStartTime": "2026-03-10T15:00:00",
            "UpdateMode": "OnlyThis",
        },
    )
    api.post(
        AGENT + "Delete", json={"AppointmentId": rows[3]["AppointmentId"], "UpdateMode": "OnlyThis"}
    )
    entity = api.get(f"/api/v1/Appointment/{rows[0]['AppointmentId']}").json()
    rule_dates = api.post(AGENT + "CalculateDays", json={"AppointmentEntity": entity}).json()[
        "Dates"
    ]
    expected = {entry["Date"] for entry in rule_dates}
    actual = set(starts(records(api, entity["Recurrence"]["RecurrenceId"])))
    assert expected - actual == {"2026-03-09T09:00:00", "2026-03-23T09:00:00"}  # moved, deleted
    assert actual - expected == {"2026-03-10T15:00:00"}  # the moved row


def test_the_stand_in_runs_on_its_own_for_a_demo(capsys: pytest.CaptureFixture[str]) -> None:
    standalone.main(["--seed", "--for", "0"])
    assert "SuperOffice stand-in at http://127.0.0.1:" in capsys.readouterr().out
