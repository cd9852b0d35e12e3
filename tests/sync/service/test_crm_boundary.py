"""The CRM loop end to end: a real daemon, a real CalDAV server, a client edit by plain
HTTP, the v1 API over HTTP, and a webhook receiver on loopback that checks signatures.

What a CRM adapter relies on, each asserted the way the adapter would notice it:
the calendar edit reaches the receiver and the change feed (origin ``calendar``); a
CRM write based on the version before it is refused (412); a receiver that is down for a
while gets every change once back, in feed order; a SIGKILL of the daemon between the
receiver taking a change and the daemon recording that loses nothing and duplicates
only under the same delivery id.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from mappings.model import uid_for_id
from sync.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.conftest import SERVER_KINDS
from tests.servers import RunningServer, free_port
from tests.sync.service.conftest import (
    DaemonProcess,
    alice_config,
    calendar_items,
    client_retitles,
    followup,
    start_ready,
    summaries,
    wait_for,
    wait_for_title,
)

CONVERGE = 30.0
TOKEN = "crm-token-0123456789abcdef"
SECRET = "whsec-0123456789abcdef0123456789"


@dataclass
class Receiver:
    """A webhook endpoint: verifies every signature, records what it took."""

    port: int
    #: "ok": answer 204; "hang": record, then stall (the sender's timeout ends it).
    mode: str = "ok"
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/crm"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not verify(SECRET, body, self.headers.get(SIGNATURE_HEADER, "")):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                payload = json.loads(body)
                assert payload["delivery_id"] == self.headers[DELIVERY_HEADER]
                assert str(payload["timestamp"]) == self.headers[TIMESTAMP_HEADER]
                with receiver._lock:
                    receiver.received.append(payload)
                if receiver.mode == "hang":
                    time.sleep(30)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self._lock:
            return [p["delivery_id"] for p in self.received]

    def changes_of(self, followup_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p["change"] for p in self.received if p["change"]["followup_id"] == followup_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


def configure(
    tmp_path: Path,
    server: RunningServer,
    receiver: Receiver,
    http_port: int,
    interval: float = 1.5,
) -> tuple[Path, str, str]:
    made = alice_config(
        tmp_path,
        server,
        http_port=http_port,
        prefix="crm",
        daemon={"api_token_env": "CRM_API_TOKEN"},
        server_kind=server.kind,
        interval_seconds=interval,
    )
    with made.path.open("a") as out:
        out.write(
            f'\n[feed]\nretention_days = 2\n\n[webhooks.crm]\nurl = "{receiver.url}"\n'
            'secret_env = "CRM_WEBHOOK_SECRET"\nevents = ["*"]\n'
        )
    return made.path, made.calendar_url, made.database


ENV = {"CRM_API_TOKEN": TOKEN, "CRM_WEBHOOK_SECRET": SECRET}


def api(http_port: int) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


def feed(client: httpx.Client, since: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        body = client.get("/v1/changes", params={"since": since} if since else {}).json()
        items += body["items"]
        since = body["next_cursor"]
        if not body["more"]:
            return items


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_calendar_edit_reaches_feed_and_webhook_and_stale_crm_write_is_refused(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
    receiver: Receiver,
) -> None:
    server: RunningServer = request.getfixturevalue(f"{kind}_server")
    config, calendar_url, _ = configure(tmp_path, server, receiver, http_port)
    start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port, env=ENV)
    client = api(http_port)

    # The CRM creates a follow-up (create-only); it reaches the calendar and the receiver.
    created = client.put(
        "/v1/followups/b1", json=followup("b1", "Budget review"), headers={"If-None-Match": "*"}
    )
    assert created.status_code == 201, created.text
    crm_etag = created.headers["ETag"]
    wait_for_title(
        server, calendar_url, "b1", "Budget review", CONVERGE, "the CRM's follow-up on the calendar"
    )
    wait_for(lambda: receiver.changes_of("b1"), CONVERGE, "the create at the receiver")

    # A calendar client renames it, by plain HTTP with If-Match, as clients do.
    client_retitles(server, calendar_url, "b1", "Budget review (moved by Dana)")

    def from_calendar() -> list[dict[str, Any]]:
        return [c for c in feed(client) if c["followup_id"] == "b1" and c["origin"] == "calendar"]

    pulled = wait_for(from_calendar, CONVERGE, "the client's edit in the change feed")
    assert pulled[0]["action"] == "updated"
    assert "title" in pulled[0]["changes"]["fields"]
    calendar_etag = pulled[0]["etag"]
    assert client.get("/v1/followups/b1").headers["ETag"] == calendar_etag
    wait_for(
        lambda: any(c["origin"] == "calendar" for c in receiver.changes_of("b1")),
        CONVERGE,
        "the client's edit at the webhook receiver",
    )
    at_receiver = [c for c in receiver.changes_of("b1") if c["origin"] == "calendar"]
    assert at_receiver[0]["etag"] == calendar_etag
    assert receiver.bad_signatures == 0

    # The CRM, still holding the version it wrote, is refused and shown the current one.
    stale = client.put(
        "/v1/followups/b1",
        json=followup("b1", "Budget review (CRM edit)"),
        headers={"If-Match": crm_etag},
    )
    assert stale.status_code == 412, stale.text
    assert stale.json()["current"]["title"] == "Budget review (moved by Dana)"
    assert stale.json()["etag"] == calendar_etag
    # Based on the current version, the same write goes through and reaches the calendar.
    fresh = client.put(
        "/v1/followups/b1",
        json=followup("b1", "Budget review (CRM edit)"),
        headers={"If-Match": calendar_etag},
    )
    assert fresh.status_code == 200, fresh.text
    wait_for_title(
        server,
        calendar_url,
        "b1",
        "Budget review (CRM edit)",
        CONVERGE,
        "the CRM's conditional write on the calendar",
    )
    # Every feed entry reached the receiver once, in feed order.
    wait_for(lambda: len(receiver.ids()) == len(feed(client)), CONVERGE, "all deliveries")
    assert [p["change"]["cursor"] for p in receiver.received] == [c["cursor"] for c in feed(client)]
    client.close()


def test_receiver_down_then_back_gets_every_change_in_order(
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
    receiver: Receiver,
) -> None:
    config, _, _ = configure(tmp_path, radicale_server, receiver, http_port)
    start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port, env=ENV)
    client = api(http_port)

    receiver.stop()
    for n in range(5):
        response = client.put(f"/v1/followups/d{n}", json=followup(f"d{n}", f"Call {n}"))
        assert response.status_code == 201
    client.patch("/v1/followups/d0", json={"title": "Call 0, moved"})

    def failing() -> dict[str, Any] | None:
        items = client.get("/v1/webhooks").json()["items"]
        return items[0] if items and items[0]["failures"] >= 2 else None

    state = wait_for(failing, CONVERGE, "the daemon to notice the receiver is down")
    assert state["last_error"] and not state["paused"] and state["backlog"] >= 6
    receiver.start()

    wanted = [c["cursor"] for c in feed(client)]
    wait_for(lambda: len(set(receiver.ids())) >= len(wanted), 60, "every change after the outage")
    assert [p["change"]["cursor"] for p in receiver.received] == wanted  # in order, once each
    state = client.get("/v1/webhooks").json()["items"][0]
    assert state["failures"] == 0 and state["backlog"] == 0
    client.close()


def test_sigkill_between_delivery_and_record_loses_nothing_and_redelivers_by_id(
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
    receiver: Receiver,
) -> None:
    config, _, _ = configure(tmp_path, radicale_server, receiver, http_port)
    daemon = start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port, env=ENV)
    client = api(http_port)

    # The receiver takes the first change and stalls: the daemon has sent it but not yet
    # recorded that it was taken when it is killed.
    receiver.mode = "hang"
    for n in range(3):
        assert client.put(f"/v1/followups/k{n}", json=followup(f"k{n}", f"Kill {n}")).status_code
    wait_for(lambda: receiver.ids(), CONVERGE, "the first delivery to arrive")
    daemon.kill()
    first = receiver.ids()[0]
    client.close()

    receiver.mode = "ok"
    start_ready(daemons, config, tmp_path / "daemon2.log", http_port=http_port, env=ENV)
    client = api(http_port)
    wanted = [c["cursor"] for c in feed(client)]
    assert len(wanted) == 3
    wait_for(lambda: len(set(receiver.ids())) == 3, CONVERGE, "every change after the restart")
    ids = receiver.ids()
    # Nothing lost; the only duplicate is the one in flight, under the same delivery id.
    assert ids.count(first) == 2
    assert len(ids) == 4 and len(set(ids)) == 3
    unique = list(dict.fromkeys(p["change"]["cursor"] for p in receiver.received))
    assert unique == wanted
    client.close()


def test_status_pause_resume_and_sync_now(
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
    receiver: Receiver,
) -> None:
    """With an hour between scheduled passes, only "sync now" brings a client edit back."""
    config, calendar_url, _ = configure(
        tmp_path, radicale_server, receiver, http_port, interval=3600
    )
    start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port, env=ENV)
    client = api(http_port)
    assert client.put("/v1/followups/s1", json=followup("s1", "Status")).status_code == 201
    wait_for_title(
        radicale_server,
        calendar_url,
        "s1",
        "Status",
        CONVERGE,
        "the follow-up on the calendar (CRM-triggered pass)",
    )
    status = client.get("/v1/status").json()
    alice = status["accounts"][0]
    assert alice["name"] == "alice" and not alice["paused"] and alice["last_success"]
    assert status["webhooks"][0]["id"] == "crm"

    # Pause: neither a CRM write nor "sync now" runs a pass.
    assert client.post("/v1/accounts/alice/pause").json() == {"account": "alice", "paused": True}
    assert client.get("/v1/status").json()["accounts"][0]["paused"] is True
    time.sleep(2)  # a pass already under way when pausing finishes (it takes milliseconds)
    client.put("/v1/followups/s1", json=followup("s1", "Status (paused)"))
    assert client.post("/v1/accounts/alice/sync").status_code == 409
    time.sleep(4)  # several CRM polls (0.5 s) and debounces (0.2 s)
    assert summaries(radicale_server, calendar_url)[uid_for_id("s1")] == "Status"

    # Resume: the write made while paused goes out at once, not with the next interval.
    client.post("/v1/accounts/alice/resume")
    wait_for_title(
        radicale_server,
        calendar_url,
        "s1",
        "Status (paused)",
        CONVERGE,
        "the write made while paused",
    )

    # A client edit is not seen for an hour, unless someone asks: sync now.
    client_retitles(radicale_server, calendar_url, "s1", "Status (client)")
    time.sleep(2)
    assert client.get("/v1/followups/s1").json()["title"] == "Status (paused)"
    assert client.post("/v1/accounts/alice/sync").status_code == 202
    wait_for(
        lambda: client.get("/v1/followups/s1").json()["title"] == "Status (client)",
        CONVERGE,
        "sync now to bring the client edit back",
    )
    assert client.post("/v1/accounts/nobody/pause").status_code == 404

    # A conflict: both sides retitle while the account is paused; the policy keeps the
    # CRM's title. The admin decides for the calendar's, and the next pass carries it out.
    client.post("/v1/accounts/alice/pause")
    time.sleep(2)
    client.put("/v1/followups/s1", json=followup("s1", "Status (CRM side)"))
    client_retitles(radicale_server, calendar_url, "s1", "Status (calendar side)")
    client.post("/v1/accounts/alice/resume")
    conflict = wait_for(
        lambda: client.get("/v1/conflicts", params={"followup_id": "s1"}).json()["items"],
        CONVERGE,
        "the conflict to be recorded",
    )[0]
    assert conflict["part"] == "title" and conflict["winner"] == "crm"
    assert (conflict["kept_value"], conflict["lost_value"]) == (
        "Status (CRM side)",
        "Status (calendar side)",
    )
    wait_for_title(
        radicale_server,
        calendar_url,
        "s1",
        "Status (CRM side)",
        CONVERGE,
        "the policy's choice on the calendar",
    )
    resolved = client.post(
        f"/v1/conflicts/{conflict['id']}/resolve", json={"action": "keep-calendar"}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["followup"]["title"] == "Status (calendar side)"
    wait_for_title(
        radicale_server,
        calendar_url,
        "s1",
        "Status (calendar side)",
        CONVERGE,
        "the resolution carried out by the next pass",
    )
    listed = client.get("/v1/conflicts", params={"followup_id": "s1"}).json()["items"][0]
    assert listed["resolution"] == "keep-calendar"
    assert any(c["changes"].get("resolves_conflict") == conflict["id"] for c in feed(client))
    client.close()


def test_reset_relinks_by_uid_without_duplicates(
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
    receiver: Receiver,
) -> None:
    config, calendar_url, database = configure(tmp_path, radicale_server, receiver, http_port)
    daemon = start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port, env=ENV)
    client = api(http_port)
    for n in range(3):
        client.put(f"/v1/followups/z{n}", json=followup(f"z{n}", f"Linked {n}"))
    wait_for(
        lambda: len(summaries(radicale_server, calendar_url)) == 3,
        CONVERGE,
        "three on the calendar",
    )
    # A client edit waiting on the server when the links are forgotten has no common base
    # to merge against: the conflict policy decides, and the losing value is kept in
    # /v1/conflicts for an admin to resolve.
    client.post("/v1/accounts/alice/pause")  # so that no ordinary pass pulls the edit first
    time.sleep(2)  # a pass already under way when pausing finishes (it takes milliseconds)
    client_retitles(radicale_server, calendar_url, "z1", "Linked 1 (client)")
    before_reset = feed(client)[-1]["cursor"]

    assert client.post("/v1/accounts/alice/reset").status_code == 202
    client.post("/v1/accounts/alice/resume")
    wait_for(
        lambda: "re-linking by UID" in daemon.log_text(), CONVERGE, "the reset to be carried out"
    )

    def title_conflicts() -> list[dict[str, Any]]:
        items = client.get("/v1/conflicts", params={"followup_id": "z1"}).json()["items"]
        return [c for c in items if c["part"] == "title"]

    conflict = wait_for(title_conflicts, CONVERGE, "the client's edit recorded as a conflict")[0]
    assert conflict["lost_value"] == "Linked 1 (client)" and conflict["winner"] == "crm"
    after = feed(client, before_reset)
    assert not [c for c in after if c["action"] == "created"], after
    assert len(calendar_items(radicale_server, calendar_url)) == 3
    assert len(client.get("/v1/followups").json()["items"]) == 3

    # Links are back: a CRM write updates the same resource in place.
    client.put("/v1/followups/z2", json=followup("z2", "Linked 2 (CRM)"))
    wait_for_title(
        radicale_server,
        calendar_url,
        "z2",
        "Linked 2 (CRM)",
        CONVERGE,
        "a CRM write after the reset",
    )
    assert len(calendar_items(radicale_server, calendar_url)) == 3
    assert database  # the same state database throughout
    client.close()
