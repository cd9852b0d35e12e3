"""One-way mode end to end: a real daemon, Radicale and Xandikos, client edits by plain HTTP.

An account set ``to-calendar`` (the CRM is the master) puts a calendar edit back to the
CRM's version and never writes to the CRM; switched ``to-crm`` over the API (the
calendar is the master) it undoes a CRM edit with the calendar's version and never
writes to the calendar, while a client's edit (a task ticked off) still comes in, and
the change feed says so (``completed``). ``sync --dry-run`` shows the filtered plan.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from mappings.model import uid_for_id
from tests.conftest import SERVER_KINDS
from tests.integration import client_edits as ce
from tests.servers import PASSWORD, USERNAME, RunningServer
from tests.sync.service.conftest import (
    DaemonProcess,
    followup,
    put_followups,
    run_cli,
    start_daemon,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

CONVERGE = 30.0
TOKEN = "one-way-token-0123456789abcdef"
ENV = {"CRM_API_TOKEN": TOKEN}


def task(fid: str, title: str) -> dict[str, Any]:
    return followup(fid, title) | {"kind": "task", "status": "not-started"}


def configure(tmp_path: Path, server: RunningServer, direction: str) -> tuple[Path, str]:
    calendar_url = server.make_calendar(f"one-way-{uuid.uuid4().hex[:8]}")
    config = write_config(
        tmp_path / "config.toml",
        database=f"sqlite:///{tmp_path / 'state.sqlite'}",
        daemon={"api_token_env": "CRM_API_TOKEN"},
        accounts={
            "alice": {
                "url": server.base_url,
                "calendar_url": calendar_url,
                "owners": ["alice"],
                "server_kind": server.kind,
                "direction": direction,
            }
        },
    )
    upgraded = run_cli("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    return config, calendar_url


def feed_since(client: httpx.Client, since: str | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        body = client.get("/v1/changes", params={"since": since} if since else {}).json()
        items += body["items"]
        since = body["next_cursor"]
        if not body["more"]:
            return items


def head(client: httpx.Client) -> str:
    return str(client.get("/v1/followups", params={"limit": 1}).json()["changes_cursor"])


def summary(calendar: ce.PlainClient, followup_id: str) -> str:
    return str(ce.master_of(calendar.by_uid(uid_for_id(followup_id)).calendar)["SUMMARY"])


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_one_way_to_calendar_then_to_crm(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
) -> None:
    server: RunningServer = request.getfixturevalue(f"{kind}_server")
    config, calendar_url = configure(tmp_path, server, "to-calendar")
    daemon = start_daemon(config, tmp_path / "daemon.log", http_port=http_port, env=ENV)
    daemons.append(daemon)
    daemon.wait_ready()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    calendar = ce.PlainClient(calendar_url, USERNAME, PASSWORD)
    assert client.get("/v1/status").json()["accounts"][0]["direction"] == "to-calendar"

    # to-calendar: the CRM's follow-ups reach the calendar as usual.
    assert (
        client.put("/v1/followups/q1", json=followup("q1", "Quarterly review")).status_code == 201
    )
    assert client.put("/v1/followups/t1", json=task("t1", "Send the report")).status_code == 201
    wait_for(lambda: len(calendar.list()) == 2, CONVERGE, "both follow-ups on the calendar")
    wait_for(lambda: summary(calendar, "q1") == "Quarterly review", CONVERGE, "q1 on the calendar")
    before_edit = head(client)

    # A client renames the event: the calendar gets the CRM's version back, the CRM is
    # not written (no feed entry from the calendar).
    resource = calendar.by_uid(uid_for_id("q1"))
    calendar.replace(resource, ce.edit_series(resource.data, summary="Quarterly review (client)"))
    wait_for(
        lambda: summary(calendar, "q1") == "Quarterly review",
        CONVERGE,
        "the calendar copy corrected to the CRM's version",
    )
    assert client.get("/v1/followups/q1").json()["title"] == "Quarterly review"
    assert [c for c in feed_since(client, before_edit) if c["origin"] == "calendar"] == []

    # Switched over the API: now the calendar is the master.
    switched = client.put("/v1/accounts/alice/direction", json={"direction": "to-crm"})
    assert switched.status_code == 200, switched.text
    assert switched.json()["source"] == "api"
    time.sleep(2)  # a pass already under way when switching finishes
    on_calendar = calendar.list()
    before_crm_edit = head(client)

    # A CRM edit is undone with the calendar's version; the calendar is not written.
    edited = client.put("/v1/followups/q1", json=followup("q1", "Quarterly review (CRM)"))
    assert edited.status_code == 200, edited.text
    wait_for(
        lambda: client.get("/v1/followups/q1").json()["title"] == "Quarterly review",
        CONVERGE,
        "the CRM edit undone with the calendar's version",
    )
    undone = [
        c
        for c in feed_since(client, before_crm_edit)
        if c["followup_id"] == "q1" and c["origin"] == "calendar"
    ]
    assert undone and "title" in undone[-1]["changes"]["fields"]
    assert calendar.list() == on_calendar, "nothing written to the calendar"

    # A follow-up new in the CRM stays out of the calendar.
    assert client.put("/v1/followups/n1", json=followup("n1", "CRM only")).status_code == 201

    # The client ticks the task off: that comes in, with "completed" in the feed.
    resource = calendar.by_uid(uid_for_id("t1"))
    calendar.replace(resource, ce.complete_task(resource.data))
    completed = wait_for(
        lambda: [
            c
            for c in feed_since(client, before_crm_edit)
            if c["followup_id"] == "t1" and c["changes"].get("completed")
        ],
        CONVERGE,
        "the client's completion in the change feed",
    )
    assert completed[0]["origin"] == "calendar"
    assert client.get("/v1/followups/t1").json()["status"] == "completed"
    after_completion = calendar.list()
    time.sleep(3)  # two more passes (1.5 s interval) with n1 pending
    assert calendar.list() == after_completion, "nothing written to the calendar"
    on_calendar_now = {ce.uid_of(calendar.get(url).data) for url in after_completion}
    assert on_calendar_now == {uid_for_id("q1"), uid_for_id("t1")}, "n1 stays out"
    assert daemon.terminate() == 0
    client.close()


def test_dry_run_shows_the_filtered_plan(radicale_server: RunningServer, tmp_path: Path) -> None:
    config, calendar_url = configure(tmp_path, radicale_server, "to-crm")
    database = f"sqlite:///{tmp_path / 'state.sqlite'}"
    put_followups(database, [followup("d1", "Design review")])
    # Synced both ways once, so that there is a calendar copy to be the master.
    both = run_cli(
        "sync", "--config", str(config), env={"FOLLOWUP_SYNC_ACCOUNTS__ALICE__DIRECTION": "both"}
    )
    assert both.returncode == 0, both.stderr
    put_followups(database, [followup("d1", "Design review (CRM)"), followup("d2", "New in CRM")])

    shown = run_cli("sync", "--dry-run", "--config", str(config))

    assert shown.returncode == 0, shown.stderr
    assert "update the follow-up from the calendar: follow-up d1" in shown.stdout
    assert "in the calendar" not in shown.stdout  # no calendar write planned
    assert "skipped d2: new in the CRM; not created in the calendar (direction = to-crm)" in (
        shown.stderr
    )
    assert "note d1: changed in the CRM; the follow-up gets the calendar's version back" in (
        shown.stderr
    )
    calendar = ce.PlainClient(calendar_url, USERNAME, PASSWORD)
    assert [summary(calendar, "d1")] == ["Design review"]
