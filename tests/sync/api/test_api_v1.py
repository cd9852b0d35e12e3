"""API v1 served for real (uvicorn on 127.0.0.1, httpx): pages, ETags, If-Match, the feed.

The calendar side of the loop (a pull landing in the feed, webhooks, a daemon) is in
``tests/sync/service/test_crm_boundary.py``; here the API is checked on its own, including
schemathesis over the ``/v1`` operations with response schema checks.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from sync.api.app import create_app
from sync.state import changes
from sync.state.db import ConflictRecord, Database
from tests.factories import appointment, weekly
from tests.sync.api.served import fuzz, serve

TOKEN = "v1-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

WEEKLY = weekly("w-1", owner="alice")


def single(fid: str, owner: str = "alice") -> dict[str, Any]:
    return appointment(
        fid,
        title=f"Call {fid}",
        start="2026-04-01T09:00:00",
        end="2026-04-01T09:30:00",
        owner=owner,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Database]]:
    db = Database.open(str(tmp_path_factory.mktemp("v1") / "v1.sqlite"))
    with serve(create_app(db, token=TOKEN)) as url:
        yield url, db
    db.close()


@pytest.fixture
def http(served: tuple[str, Database]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], headers=AUTH, timeout=10) as client:
        yield client


def feed_after(http: httpx.Client, cursor: str | None) -> tuple[list[dict[str, Any]], str]:
    params = {"since": cursor} if cursor else {}
    response = http.get("/v1/changes", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["items"], body["next_cursor"]


def head_cursor(http: httpx.Client) -> str:
    return str(http.get("/v1/followups", params={"limit": 1}).json()["changes_cursor"])


def test_pages_cover_every_followup_once_with_filters(http: httpx.Client) -> None:
    for n in range(7):
        assert http.put(f"/v1/followups/p-{n}", json=single(f"p-{n}", "pat")).status_code in (
            200,
            201,
        )
    assert http.put("/v1/followups/q-1", json=single("q-1", "quinn")).status_code in (200, 201)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"owner": "pat", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = http.get("/v1/followups", params=params).json()
        pages += 1
        seen += [item["followup"]["id"] for item in body["items"]]
        assert all(item["etag"].startswith('"') for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p-{n}" for n in range(7)]
    assert pages == 3

    later = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    http.patch("/v1/followups/p-3", json={"title": "Moved call"})
    recent = http.get("/v1/followups", params={"updated_since": later.isoformat()}).json()
    assert [item["followup"]["id"] for item in recent["items"]] == ["p-3"]

    bad = http.get("/v1/followups", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["field"] == "cursor"


def test_stale_if_match_is_refused_with_the_current_version(http: httpx.Client) -> None:
    created = http.put("/v1/followups/e-1", json=single("e-1"), headers={"If-None-Match": "*"})
    assert created.status_code == 201, created.text
    first = created.headers["ETag"]
    again = http.put("/v1/followups/e-1", json=single("e-1"), headers={"If-None-Match": "*"})
    assert again.status_code == 412

    edited = {**single("e-1"), "title": "Edited by the CRM"}
    ok = http.put("/v1/followups/e-1", json=edited, headers={"If-Match": first})
    assert ok.status_code == 200 and ok.headers["ETag"] != first
    current = ok.headers["ETag"]

    stale = http.put("/v1/followups/e-1", json=single("e-1"), headers={"If-Match": first})
    assert stale.status_code == 412
    body = stale.json()
    assert body["etag"] == current and body["current"]["title"] == "Edited by the CRM"
    assert http.get("/v1/followups/e-1").json()["title"] == "Edited by the CRM"

    assert (
        http.patch(
            "/v1/followups/e-1", json={"title": "x"}, headers={"If-Match": first}
        ).status_code
        == 412
    )
    assert http.delete("/v1/followups/e-1", headers={"If-Match": first}).status_code == 412
    assert http.get("/v1/followups/e-1", headers={"If-None-Match": current}).status_code == 304
    assert http.delete("/v1/followups/e-1", headers={"If-Match": current}).status_code == 204
    assert http.get("/v1/followups/e-1").status_code == 404


def test_dialog_operations_honour_if_match(http: httpx.Client) -> None:
    etag = http.put("/v1/followups/w-1", json=WEEKLY).headers["ETag"]
    moved = http.post(
        "/v1/followups/w-1/move",
        json={"date": "2026-03-09", "direction": "later"},
        headers={"If-Match": etag},
    )
    assert moved.status_code == 200, moved.text
    refused = http.post(
        "/v1/followups/w-1/delete-date", json={"date": "2026-03-16"}, headers={"If-Match": etag}
    )
    assert refused.status_code == 412
    assert refused.json()["etag"] == moved.headers["ETag"]
    assert http.get("/v1/followups/w-1").json().get("exceptions", [])[0]["original_start"] == (
        "2026-03-09T10:00:00"
    )
    assert not any(
        e.get("cancelled") for e in http.get("/v1/followups/w-1").json().get("exceptions", [])
    )


def test_the_feed_lists_every_change_in_order_with_what_changed(http: httpx.Client) -> None:
    start = head_cursor(http)
    doc = copy.deepcopy(WEEKLY) | {"id": "f-1"}
    etag = http.put("/v1/followups/f-1", json=doc).headers["ETag"]
    http.post("/v1/followups/f-1/move", json={"date": "2026-03-09", "direction": "later"})
    http.post("/v1/followups/f-1/delete-date", json={"date": "2026-03-16"})
    split = http.post(
        "/v1/followups/f-1/occurrence",
        json={"occurrence": "2026-03-30T10:00:00", "mode": "this-and-following",
              "start": "2026-03-30T14:00:00", "end": "2026-03-30T15:00:00"},
    )  # fmt: skip
    assert split.status_code == 200, split.text
    new_id = split.json()["saved"][1]["id"]
    http.patch("/v1/followups/f-1", json={"location": "Room 4"})
    http.delete("/v1/followups/f-1")

    items, _ = feed_after(http, start)
    assert [(i["followup_id"], i["action"]) for i in items] == [
        ("f-1", "created"),
        ("f-1", "updated"),
        ("f-1", "updated"),
        ("f-1", "updated"),
        (new_id, "created"),
        ("f-1", "updated"),
        ("f-1", "deleted"),
    ]
    assert {i["origin"] for i in items} == {"crm"}
    assert items[0]["etag"] == etag
    assert items[1]["changes"]["occurrences"] == {"moved": ["2026-03-09T10:00:00+01:00"]}
    assert items[2]["changes"]["occurrences"] == {"cancelled": ["2026-03-16T10:00:00+01:00"]}
    assert items[3]["changes"]["split_into"] == new_id
    assert items[4]["changes"]["split_from"] == "f-1"
    assert items[5]["changes"]["fields"] == ["location"]
    assert items[6]["etag"] is None
    # Reading from the last cursor gives nothing new; paging gives the same entries.
    assert feed_after(http, items[-1]["cursor"])[0] == []
    first_two = http.get("/v1/changes", params={"since": start, "limit": 2}).json()
    assert first_two["more"] is True
    assert [i["cursor"] for i in first_two["items"]] == [i["cursor"] for i in items[:2]]


def test_an_expired_cursor_answers_410(served: tuple[str, Database], http: httpx.Client) -> None:
    _, db = served
    old_cursor = head_cursor(http)
    http.put("/v1/followups/r-1", json=single("r-1"))
    http.put("/v1/followups/r-1", json={**single("r-1"), "title": "again"})
    with db.sessions.begin() as session:
        assert changes.prune(session, dt.timedelta(0)) >= 2
    gone = http.get("/v1/changes", params={"since": old_cursor})
    assert gone.status_code == 410, gone.text
    assert gone.json()["field"] == "since"
    # A fresh listing gives a cursor that works again.
    fresh = head_cursor(http)
    assert http.get("/v1/changes", params={"since": fresh}).status_code == 200
    assert http.get("/v1/changes", params={"since": "bogus"}).status_code == 400


def test_conflicts_are_listed_newest_first_with_both_values(
    served: tuple[str, Database], http: httpx.Client
) -> None:
    _, db = served
    http.put("/v1/followups/c-1", json=single("c-1"))
    with db.sessions.begin() as session:
        for n in range(3):
            session.add(
                ConflictRecord(
                    account="alice", followup_id="c-1", part="title", policy="crm-wins",
                    winner="crm", kept_value=f"CRM {n}", lost_value=f"calendar {n}",
                )
            )  # fmt: skip
    first = http.get("/v1/conflicts", params={"followup_id": "c-1", "limit": 2}).json()
    assert [c["kept_value"] for c in first["items"]] == ["CRM 2", "CRM 1"]
    assert first["items"][0]["lost_value"] == "calendar 2"
    assert first["items"][0]["current"]["title"] == "Call c-1"
    rest = http.get(
        "/v1/conflicts", params={"followup_id": "c-1", "cursor": first["next_cursor"]}
    ).json()
    assert [c["kept_value"] for c in rest["items"]] == ["CRM 0"] and rest["next_cursor"] is None
    assert http.post("/v1/accounts/alice/pause").status_code == 404  # no account configured


def test_schemathesis_finds_no_server_error_nor_schema_violation(
    served: tuple[str, Database],
) -> None:
    """Every ``/v1`` operation, responses checked against the document (not only for 5xx)."""
    base_url, _ = served
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [
        result.ok()  # type: ignore[union-attr]
        for result in schema.get_all_operations()
        if result.ok().path.startswith("/v1/")  # type: ignore[union-attr]
    ]
    assert len(operations) >= 11

    def nonconforming(case: schemathesis.Case, response: httpx.Response) -> str | None:  # type: ignore[type-arg]
        where = f"{case.method} {case.formatted_path} query={case.query!r}"
        if response.status_code >= 500:
            return f"{where}: {response.status_code} {response.text[:300]}"
        try:
            case.validate_response(
                response,
                checks=[response_schema_conformance, status_code_conformance],
                excluded_checks=[negative_data_rejection],
            )
        except AssertionError as exc:
            return f"{where}: {str(exc)[:400]}"
        return None

    failures = fuzz(operations, base_url, AUTH, max_examples=25, judge=nonconforming)
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:10])
