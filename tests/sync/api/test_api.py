"""The HTTP API served for real: uvicorn on 127.0.0.1, a real HTTP client, and a fuzzer.

The app runs in a thread of this process (so its database is a temporary SQLite file) and
is spoken to only over HTTP: what a CRM integration would see, status codes and
problem+json bodies included. Schemathesis then generates requests from the OpenAPI
document and checks that none of them gets a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis

from sync.api.app import create_app
from sync.state.db import Database
from tests.factories import appointment, weekly
from tests.sync.api.served import fuzz, serve

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

WEEKLY = weekly("4001", owner="alice")
LUNCH = appointment("4002", title="Lunch with Bob", start="2026-03-09T10:30:00", owner="alice")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = Database.open(str(tmp_path_factory.mktemp("api") / "api.sqlite"))
    with serve(create_app(db, token=TOKEN)) as url:
        yield url
    db.close()


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=10) as client:
        yield client


def fresh(http: httpx.Client, doc: dict[str, Any]) -> None:
    """Put a follow-up back to its starting point, whatever an earlier test did to it."""
    response = http.put(f"/followups/{doc['id']}", json=doc)
    assert response.status_code == 200, response.text


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    if field is not None:
        assert body.get("field") == field, body
    return body


# --- auth ------------------------------------------------------------------------------------


def test_every_route_needs_the_token_but_the_openapi_document(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as anonymous:
        assert_problem(anonymous.get("/followups"), 401)
        wrong = anonymous.get("/followups", headers={"Authorization": "Bearer nope"})
        assert_problem(wrong, 401)
        assert wrong.headers["www-authenticate"] == "Bearer"
        assert_problem(anonymous.post("/followups/4001/move", json={}), 401)
        assert anonymous.get("/openapi.json").status_code == 200
        assert anonymous.get("/docs").status_code == 200


# --- CRUD -----------------------------------------------------------------------------------


def test_create_read_update_delete(http: httpx.Client) -> None:
    doc = {**WEEKLY, "id": "4100"}
    created = http.post("/followups", json=doc)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/followups/4100"
    assert created.json()["recurrence"]["Pattern"] == "Weekly"
    assert_problem(http.post("/followups", json=doc), 409)

    assert http.get("/followups/4100").json()["title"] == "Weekly status"
    replaced = http.put("/followups/4100", json={**doc, "title": "Renamed"})
    assert replaced.status_code == 200 and replaced.json()["title"] == "Renamed"
    assert "4100" in [f["id"] for f in http.get("/followups", params={"owner": "alice"}).json()]
    assert http.get("/followups", params={"owner": "nobody"}).json() == []

    assert http.delete("/followups/4100").status_code == 204
    assert_problem(http.get("/followups/4100"), 404, "id")
    assert_problem(http.delete("/followups/4100"), 404, "id")


def test_status_is_read_and_written_for_the_series_and_one_occurrence(http: httpx.Client) -> None:
    doc = {
        **WEEKLY,
        "id": "4101",
        "kind": "task",
        "status": "started",
        "exceptions": [
            {
                "original_start": "2026-03-09T10:00:00",
                "status": "completed",
                "completed_at": "2026-03-09T10:45:00+01:00",
            }
        ],
    }
    assert http.post("/followups", json=doc).status_code == 201
    read = http.get("/followups/4101").json()
    assert read["status"] == "started"
    assert read["exceptions"][0]["status"] == "completed"
    assert read["exceptions"][0]["completed_at"] == "2026-03-09T09:45:00Z"
    plain = {**WEEKLY, "id": "4101"}
    assert "status" not in http.put("/followups/4101", json=plain).json(), "unknown stays absent"
    assert http.delete("/followups/4101").status_code == 204


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "started", "completed_at": "2026-03-02T12:00:00Z"}, "completed_at"),
        ({"end": "2026-03-02T09:00:00"}, "end"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        (
            {
                "recurrence": {
                    "Pattern": "Weekly",
                    "WeekPattern": {"Weekdays": "Monday", "Cycle": 0},
                }
            },
            "recurrence.WeekPattern.Cycle",
        ),
        ({"recurrence": {"Pattern": "Fortnightly"}}, "recurrence.Pattern"),
        ({"start": "next monday"}, "start"),
        (
            {"exceptions": [{"original_start": "2026-03-03T10:00:00", "cancelled": True}]},
            "exceptions.0.original_start",
        ),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_documents_are_422_problems_naming_the_field(
    http: httpx.Client, change: dict[str, Any], field: str
) -> None:
    body = assert_problem(
        http.post("/followups", json={**WEEKLY, "id": "4200", **change}), 422, field
    )
    assert body["detail"]


def test_malformed_json_and_a_mismatched_id_are_4xx(http: httpx.Client) -> None:
    broken = http.post(
        "/followups", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(broken, 422)
    assert_problem(http.put("/followups/4300", json={**WEEKLY, "id": "4301"}), 422, "id")
    assert_problem(http.get("/no/such/route"), 404)


# --- the dialog -------------------------------------------------------------------------------


def test_dates_with_conflicts_from_the_owners_other_followups(http: httpx.Client) -> None:
    fresh(http, WEEKLY)
    fresh(http, LUNCH)
    plain = http.post("/followups/4001/dates").json()
    assert len(plain) == 10 and not any(d["IsConflict"] for d in plain)
    dates = http.post("/followups/4001/dates", params={"conflicts": "true"}).json()
    flagged = [(d["Date"], d["Tooltip"]) for d in dates if d["IsConflict"]]
    assert flagged == [("2026-03-09", "Lunch with Bob (10:30–11:30)")]
    assert dates[0] == {
        "Date": "2026-03-02",
        "IsConflict": False,
        "Description": "Monday",
        "Tooltip": None,
        "Start": "2026-03-02T10:00:00",
        "End": "2026-03-02T11:00:00",
    }

    validated = http.post(
        "/dates/validate", json={"followup": WEEKLY, "dates": ["2026-03-09", "2026-03-10"]}
    ).json()
    assert [(d["Date"], d["IsConflict"], d["Description"]) for d in validated] == [
        ("2026-03-09", True, "Monday"),
        ("2026-03-10", False, "Tuesday"),
    ]
    # A draft of 4001 (not stored) is not in conflict with the stored 4001: it replaces it.
    calculated = http.post("/dates/calculate", json={**WEEKLY, "title": "Draft"}).json()
    assert [d["Date"] for d in calculated if d["IsConflict"]] == ["2026-03-09"]
    # Under another id the same times clash with the stored series on every date.
    other = http.post("/dates/calculate", json={**WEEKLY, "id": "4999"}).json()
    assert all(d["IsConflict"] for d in other)
    assert other[1]["Tooltip"] == "Weekly status (10:00–11:00); Lunch with Bob (10:30–11:30)"
    assert_problem(http.post("/followups/none/dates"), 404, "id")


def test_every_operation(http: httpx.Client) -> None:
    fresh(http, WEEKLY)
    moved = http.post("/followups/4001/move", json={"date": "2026-03-09", "direction": "later"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["saved"][0]["exceptions"] == [
        {
            "original_start": "2026-03-09T10:00:00",
            "cancelled": False,
            "start": "2026-03-10T10:00:00",
        }
    ]
    assert "moved the 2026-03-09 occurrence one day later" in moved.json()["summary"]

    added = http.post("/followups/4001/add-date", json={"date": "2026-03-11"}).json()
    assert len(added["saved"][0]["recurrence"]["Dates"]) == 11
    deleted = http.post("/followups/4001/delete-date", json={"date": "2026-03-11"}).json()
    assert "Dates" not in deleted["saved"][0]["recurrence"], "back to the plain pattern"

    only = http.post(
        "/followups/4001/occurrence",
        json={"occurrence": "2026-03-16T10:00:00", "mode": "only-this", "title": "Special"},
    ).json()
    assert {
        "original_start": "2026-03-16T10:00:00",
        "cancelled": False,
        "title": "Special",
    } in only["saved"][0]["exceptions"]

    split = http.post(
        "/followups/4001/occurrence",
        json={
            "occurrence": "2026-03-23T10:00:00",
            "mode": "this-and-following",
            "start": "2026-03-23T09:00:00",
        },
    ).json()
    assert [f["id"] for f in split["saved"]] == ["4001", "4001-20260323"]
    assert split["saved"][0]["recurrence"]["EndDate"] == "2026-03-22"
    assert split["saved"][1]["start"] == "2026-03-23T09:00:00"
    assert split["saved"][1]["recurrence"]["RecurrenceCounter"] == 7
    assert http.get("/followups/4001-20260323").status_code == 200
    again = http.post(
        "/followups/4001/occurrence",
        json={
            "occurrence": "2026-03-02T10:00:00",
            "mode": "this-and-following",
            "location": "Room 9",
        },
    ).json()
    assert [f["id"] for f in again["saved"]] == ["4001"], (
        "the first occurrence changes the whole series"
    )

    stopped = http.post("/followups/4001-20260323/stop", json={"from": "2026-03-30"}).json()
    assert stopped["saved"][0]["recurrence"]["EndDate"] == "2026-03-30"

    gone = http.post(
        "/followups/4001/delete-occurrence",
        json={"occurrence": "2026-03-02T10:00:00", "mode": "only-this"},
    ).json()
    assert gone["saved"][0]["exceptions"][0] == {
        "original_start": "2026-03-02T10:00:00",
        "cancelled": True,
    }
    everything = http.post(
        "/followups/4001-20260323/delete-occurrence",
        json={"occurrence": "2026-03-23T09:00:00", "mode": "this-and-following"},
    ).json()
    assert everything["deleted"] == ["4001-20260323"] and everything["saved"] == []
    assert_problem(http.get("/followups/4001-20260323"), 404)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/followups/4001/move", {"date": "2026-03-10", "direction": "later"}, "date"),
        ("/followups/4001/move", {"date": "2026-03-09", "direction": "sideways"}, "direction"),
        ("/followups/4001/add-date", {"date": "2026-03-09"}, "date"),
        ("/followups/4001/add-date", {"date": "31.12.2026"}, "date"),
        (
            "/followups/4001/occurrence",
            {"occurrence": "2026-03-16T11:00:00", "title": "x"},
            "occurrence",
        ),
        (
            "/followups/4001/occurrence",
            {
                "occurrence": "2026-03-16T10:00:00",
                "mode": "this-and-following",
                "start": "2026-03-17T10:00:00",
            },
            "start",
        ),
        (
            "/followups/4001/occurrence",
            {
                "occurrence": "2026-03-16T10:00:00",
                "start": "2026-03-16T12:00:00",
                "end": "2026-03-16T11:00:00",
            },
            "end",
        ),
        ("/followups/4001/stop", {"from": "2026-03-17"}, "from"),
        (
            "/followups/4001/delete-occurrence",
            {"occurrence": "2026-03-16T10:00:00", "mode": "all"},
            "mode",
        ),
        (
            "/dates/validate",
            {"followup": {**WEEKLY, "end": "2026-03-01T10:00:00"}, "dates": []},
            "followup.end",
        ),
    ],
)
def test_operations_refuse_bad_input_naming_the_field(
    http: httpx.Client, path: str, body: dict[str, Any], field: str
) -> None:
    fresh(http, WEEKLY)
    assert_problem(http.post(path, json=body), 422, field)


# --- fuzzing ---------------------------------------------------------------------------------


def test_no_generated_request_gets_a_server_error(base_url: str) -> None:
    """Schemathesis over the whole OpenAPI document, a few examples per operation.

    Responses are checked for 5xx only: bad input must get a 4xx problem, whatever it is.
    """
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 14

    def server_error(case: schemathesis.Case, response: httpx.Response) -> str | None:  # type: ignore[type-arg]
        if response.status_code < 500:
            return None
        return (
            f"{case.method} {case.formatted_path} body={case.body!r} query={case.query!r}: "
            f"{response.status_code} {response.text[:300]}"
        )

    failures = fuzz(operations, base_url, AUTH, max_examples=15, judge=server_error)
    assert not failures, f"{len(failures)} server error(s):\n" + "\n".join(failures[:10])
