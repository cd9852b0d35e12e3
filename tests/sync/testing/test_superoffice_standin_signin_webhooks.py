"""The SuperOffice stand-in signs callers in and tells a webhook receiver of changes, as documented.

Sign-in: Basic (onsite) and the system-user ticket flow (Online), tickets expiring. Webhooks: the
test call on registration, `activity.*` events signed with HMAC-SHA256 that a receiver on loopback
can verify, the 1 s / 4 s retries (shortened here), a dropped event and TooManyErrors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from sync.testing.superoffice.auth import TICKET_CLAIM, private_pem, sign_system_user_token
from sync.testing.superoffice.server import SuperOfficeStandIn

SECRET = "Something Super Secret"


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps what it gets; answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answered in order; 200 once empty
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/superoffice/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def events(self) -> list[dict[str, Any]]:
        return [
            json.loads(body)
            for headers, body in self.received
            if headers["x-superoffice-event"] != "test"
        ]


@pytest.fixture
def crm() -> Iterator[SuperOfficeStandIn]:
    with SuperOfficeStandIn(retry_delay_scale=0.001) as standin:
        standin.add_basic_user("sync", "secret", associate_id=5)
        yield standin
        assert standin.violations == []


@pytest.fixture
def api(crm: SuperOfficeStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=crm.base_url, auth=("sync", "secret"), timeout=10) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def register(api: httpx.Client, receiver: Receiver) -> httpx.Response:
    return api.post(
        "/api/v1/Webhook",
        json={
            "Name": "followup-sync",
            "Events": ["activity.created", "activity.changed", "activity.deleted"],
            "TargetUrl": receiver.url,
            "Secret": SECRET,
            "State": "Active",
            "Type": "webhook",
        },
    )


def verified(headers: dict[str, str], body: bytes) -> bool:
    """What the connector will do: recompute the signature over the raw body (security.md)."""
    expected = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, headers["x-superoffice-signature"])


def one_meeting(crm: SuperOfficeStandIn) -> int:
    return crm.create(
        {"Title": "Visit", "StartDate": "2026-03-02T09:00:00", "EndDate": "2026-03-02T10:00:00"}
    ).appointment_id


# --- sign-in ----------------------------------------------------------------------------


def test_basic_sign_in_takes_the_right_password_only(crm: SuperOfficeStandIn) -> None:
    assert httpx.get(crm.base_url + "/api/v1/Webhook", auth=("sync", "secret")).status_code == 200
    assert httpx.get(crm.base_url + "/api/v1/Webhook", auth=("sync", "wrong")).status_code == 401
    assert httpx.get(crm.base_url + "/api/v1/Webhook").status_code == 401


def system_user_ticket(
    crm: SuperOfficeStandIn, signed_at: datetime | None = None
) -> dict[str, Any]:
    signed = sign_system_user_token(
        crm.sign_in.system_user_token,
        private_pem(crm.sign_in.application_key),
        signed_at or crm.clock.now(),
    )
    response = httpx.post(
        crm.base_url + "/Login/api/PartnerSystemUser/Authenticate",
        json={
            "SignedSystemToken": signed,
            "ApplicationToken": crm.sign_in.application_token,
            "ContextIdentifier": crm.sign_in.context_identifier,
            "ReturnTokenType": "JWT",
        },
    )
    answer: dict[str, Any] = response.json()
    return answer


def ticket_from(crm: SuperOfficeStandIn, jwt: str) -> str:
    """Validate the RS256 JWT with SuperOffice's public key, then take the ticket claim."""
    header, claims, signature = jwt.split(".")
    crm.sign_in.superoffice_key.public_key().verify(
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
        f"{header}.{claims}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    ticket: str = decoded[TICKET_CLAIM]
    return ticket


def with_ticket(crm: SuperOfficeStandIn, ticket: str, app_token: str | None = None) -> int:
    headers = {
        "Authorization": f"SOTicket {ticket}",
        "SO-AppToken": app_token or crm.sign_in.application_token,
    }
    return httpx.get(crm.base_url + "/api/v1/Webhook", headers=headers).status_code


def test_the_system_user_flow_hands_out_a_ticket_that_signs_calls_in(
    crm: SuperOfficeStandIn,
) -> None:
    answer = system_user_ticket(crm)
    assert answer["IsSuccessful"] is True
    ticket = ticket_from(crm, answer["Token"])
    assert ticket.startswith("7T:")
    assert with_ticket(crm, ticket) == 200
    assert with_ticket(crm, ticket, app_token="someone else") == 401


def test_a_stale_signature_is_refused(crm: SuperOfficeStandIn) -> None:
    answer = system_user_ticket(crm, signed_at=datetime.now(UTC) - timedelta(hours=1))
    assert answer["IsSuccessful"] is False
    assert "elapsed" in answer["ErrorMessage"]


def test_a_ticket_expires_after_six_idle_hours_or_on_demand(crm: SuperOfficeStandIn) -> None:
    ticket = ticket_from(crm, system_user_ticket(crm)["Token"])
    crm.advance_clock(timedelta(hours=5))
    assert with_ticket(crm, ticket) == 200  # used: the six hours start again
    crm.advance_clock(timedelta(hours=5))
    assert with_ticket(crm, ticket) == 200
    crm.advance_clock(timedelta(hours=6, minutes=1))
    assert with_ticket(crm, ticket) == 401
    fresh = ticket_from(crm, system_user_ticket(crm)["Token"])
    crm.expire_tickets()
    assert with_ticket(crm, fresh) == 401


# --- webhooks -----------------------------------------------------------------------------


def test_registration_answers_the_test_call_and_a_silent_target_is_refused(
    crm: SuperOfficeStandIn, api: httpx.Client, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    assert register(api, receiver).status_code == 400
    saved = register(api, receiver)
    assert saved.status_code == 200
    assert saved.json()["State"] == "Active"
    headers, body = receiver.received[-1]
    assert (headers["x-superoffice-event"], headers["x-hook-test"]) == ("test", "true")
    assert verified(headers, body)
    assert [hook["Name"] for hook in api.get("/api/v1/Webhook").json()] == ["followup-sync"]
    plain_http = api.post(
        "/api/v1/Webhook", json={"Name": "x", "Events": [], "TargetUrl": "http://example.com/"}
    )
    assert plain_http.status_code == 400


def test_a_change_is_posted_signed_with_the_documented_payload(
    crm: SuperOfficeStandIn, api: httpx.Client, receiver: Receiver
) -> None:
    register(api, receiver)
    row_id = one_meeting(crm)
    crm.edit_behind(row_id, start=datetime(2026, 3, 2, 11), end=datetime(2026, 3, 2, 12))
    api.delete(f"/api/v1/Appointment/{row_id}")
    assert crm.webhooks.wait_idle()
    events = receiver.events()
    assert [event["Event"] for event in events] == [
        "activity.created",
        "activity.changed",
        "activity.deleted",
    ]
    changed = events[1]
    assert changed["PrimaryKey"] == row_id
    assert changed["Entity"] == "activity"
    assert changed["ContextIdentifier"] == "Cust12345"
    assert changed["ChangedByAssociateId"] == 7
    assert {"do_by", "endDate"} <= set(changed["Changes"])
    assert changed["FieldValues"]["activeDate"] == "2026-03-02T11:00:00"
    assert events[2]["ChangedByAssociateId"] == 5
    assert events[2]["Values"]["appointment_id"] == row_id
    for headers, body in receiver.received:
        assert verified(headers, body)
        assert headers["x-superoffice-eventid"] == json.loads(body)["EventId"]
    assert not verified(receiver.received[-1][0], receiver.received[-1][1] + b" ")


def test_a_series_fires_one_event_per_row(
    crm: SuperOfficeStandIn, api: httpx.Client, receiver: Receiver
) -> None:
    register(api, receiver)
    crm.create(
        {
            "StartDate": "2026-03-02T09:00:00",
            "Recurrence": {
                "IsRecurrence": True,
                "Pattern": "Daily",
                "DayPattern": {"Pattern": "EveryWorkday"},
                "RecurrenceEndType": "Counter",
                "RecurrenceCounter": 5,
            },
        }
    )
    assert crm.webhooks.wait_idle()
    assert [event["Event"] for event in receiver.events()] == ["activity.created"] * 5


def test_a_dropped_event_never_arrives_and_the_next_one_does(
    crm: SuperOfficeStandIn, api: httpx.Client, receiver: Receiver
) -> None:
    register(api, receiver)
    row_id = one_meeting(crm)
    crm.drop_next_webhooks(1)
    crm.edit_behind(row_id, title="lost")
    crm.edit_behind(row_id, title="seen")
    assert crm.webhooks.wait_idle()
    assert [event["Event"] for event in receiver.events()] == [
        "activity.created",
        "activity.changed",
    ]
    assert len(crm.webhooks.dropped) == 1
    assert crm.webhooks.dropped[0]["PrimaryKey"] == row_id


def test_a_failed_post_is_tried_three_times_with_one_event_id(
    crm: SuperOfficeStandIn, api: httpx.Client, receiver: Receiver
) -> None:
    register(api, receiver)
    receiver.statuses = [500, 503]
    one_meeting(crm)
    assert crm.webhooks.wait_idle()
    tries = [
        headers for headers, _ in receiver.received if headers["x-superoffice-event"] != "test"
    ]
    assert [headers["x-superoffice-retry"] for headers in tries] == ["0", "1", "2"]
    assert len({headers["x-superoffice-eventid"] for headers in tries}) == 1


def test_nine_failed_tries_in_a_row_stop_the_webhook_until_it_is_made_active(
    crm: SuperOfficeStandIn, api: httpx.Client, receiver: Receiver
) -> None:
    hook = register(api, receiver).json()
    receiver.statuses = [500] * 9
    for _ in range(4):
        one_meeting(crm)
    assert crm.webhooks.wait_idle()
    assert len(receiver.events()) == 9  # three events, three tries each; the fourth not sent
    assert api.get(f"/api/v1/Webhook/{hook['WebhookId']}").json()["State"] == "TooManyErrors"
    assert (
        api.put(f"/api/v1/Webhook/{hook['WebhookId']}", json=hook | {"State": "Active"}).status_code
        == 200
    )
    one_meeting(crm)
    assert crm.webhooks.wait_idle()
    assert len(receiver.events()) == 10


def test_every_webhook_endpoint_validates_against_superoffice_descriptions(
    crm: SuperOfficeStandIn, api: httpx.Client, receiver: Receiver
) -> None:
    hook = register(api, receiver).json()
    path = f"/api/v1/Webhook/{hook['WebhookId']}"
    calls = [
        api.post(
            "/api/v1/Webhook/Test", json={key: hook[key] for key in ("Name", "TargetUrl", "Secret")}
        ),
        api.get("/api/v1/Webhook"),
        api.get(path),
        api.put(path, json=hook | {"State": "Stopped"}),
        api.delete(path),
    ]
    assert [call.status_code for call in calls] == [200, 200, 200, 200, 204]
    assert calls[0].json()["Success"] is True
    assert (crm.violations, crm.refused_requests, crm.unchecked_responses) == ([], [], [])
