"""Webhook delivery without a daemon: a real receiver on loopback, a real SQLite store.

The daemon's loop is in tests/sync/service/test_crm_boundary.py; here the rules a single
round follows: a failing receiver is retried, then paused (and says so), resumes from
where it stopped, and retention keeps what an active subscription still owes.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mappings.documents import load_followup
from sync import webhooks
from sync.cli.service import status_command
from sync.config import WebhookSettings
from sync.state import changes
from sync.state.db import Database
from sync.state.followups import FollowUpStore

SECRET = "whsec-unit-0123456789abcdef"


class Receiver:
    def __init__(self) -> None:
        self.status = 500
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                assert webhooks.verify(SECRET, raw, self.headers[webhooks.SIGNATURE_HEADER])
                if receiver.status < 300:
                    receiver.bodies.append(json.loads(raw))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def doc(fid: str, title: str) -> Any:
    return load_followup(
        {"id": fid, "title": title, "start": "2026-05-04T09:00:00", "end": "2026-05-04T10:00:00"}
    )


def test_a_failing_receiver_is_paused_then_resumed_from_where_it_stopped(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setattr(webhooks, "BACKOFF_BASE", 0.0)
    db = Database.open(str(tmp_path / "wh.sqlite"))
    configured = {"crm": WebhookSettings(url=receiver.url, secret_env="UNIT_WEBHOOK_SECRET")}
    webhooks.sync_config(db, configured)
    store = FollowUpStore(db)
    store.put(doc("a", "one"))
    store.put(doc("a", "two"))
    deliverer = webhooks.Deliverer(db, configured)

    for _ in range(webhooks.MAX_FAILURES):
        report = deliverer.run_once()
        assert report.sent == 0
    assert report.paused == ["crm"]
    with db.session() as session:
        row = session.get(webhooks.Subscription, "crm")
        assert row is not None
        state = webhooks.status(session, row)
    assert state.paused and state.failures == webhooks.MAX_FAILURES
    assert state.last_error == "HTTP 500" and state.backlog == 2
    assert deliverer.run_once().sent == 0  # paused: not tried any more
    shown = CliRunner().invoke(status_command, ["--database", str(tmp_path / "wh.sqlite")])
    assert f"webhook crm: PAUSED after {webhooks.MAX_FAILURES} failures (HTTP 500)" in shown.output

    receiver.status = 204
    assert webhooks.resume(db, "crm")
    assert deliverer.run_once().sent == 2
    assert [b["change"]["changes"]["fields"] for b in receiver.bodies][1] == ["title"]
    assert [b["delivery_id"] for b in receiver.bodies] == ["crm:1", "crm:2"]
    deliverer.close()
    db.close()


def test_retention_keeps_what_an_active_subscription_still_owes(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIT_WEBHOOK_SECRET", SECRET)
    db = Database.open(str(tmp_path / "keep.sqlite"))
    webhooks.sync_config(
        db, {"crm": WebhookSettings(url=receiver.url, secret_env="UNIT_WEBHOOK_SECRET")}
    )
    store = FollowUpStore(db)
    for n in range(3):
        store.put(doc(f"r{n}", "x"))
    with db.sessions.begin() as session:
        kept = changes.prune(session, dt.timedelta(0), keep_after=webhooks.oldest_owed(session))
    assert kept == 0  # the subscription has not had any of them
    with db.sessions.begin() as session:
        row = session.get(webhooks.Subscription, "crm")
        assert row is not None
        row.delivered_through = 2
    with db.sessions.begin() as session:
        dropped = changes.prune(session, dt.timedelta(0), keep_after=webhooks.oldest_owed(session))
    assert dropped == 2
    with db.session() as session:
        assert [e.seq for e in changes.read(session, 2, limit=10).entries] == [3]
        with pytest.raises(changes.CursorExpired):
            changes.read(session, 1, limit=10)
    db.close()
