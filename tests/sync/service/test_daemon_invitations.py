# ruff: noqa: F811  (the imap_port fixture imported from test_invitations is a parameter here)
"""The daemon sends invitations and reads replies: a real daemon process, Radicale, aiosmtpd, pymap.

What a user would notice: the participant gets the invitation once, not again on the
next tick, not again after a restart, not twice after the SMTP server was down for a
while (and the daemon keeps running meanwhile); a message the daemon was killed in the
middle of sending is not sent again by itself; an answer in the mailbox shows up on the
follow-up and on the calendar without anyone running a command.
"""

from __future__ import annotations

import imaplib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from sync.config import load_settings
from sync.invitations import replies
from sync.run import run_pass
from sync.state.db import DaemonRun, Database
from sync.state.invitation_records import Invitation
from tests.factories import appointment
from tests.integration.test_invitations import DATA, SmtpSink, imap_port, itip_of  # noqa: F401
from tests.servers import RunningServer, free_port
from tests.sync.service.conftest import (
    DaemonProcess,
    alice_config,
    calendar_items,
    put_followups,
    run_cli,
    start_ready,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

#: Poll + debounce + one pass + sending, with room for a slow shared machine.
CONVERGE = 20.0
ORGANIZER = "alice@crm.example"
BJORN = "bjorn@partner.example"
CAROL = "carol@gmail.example"


class Smtp:
    """An aiosmtpd server on a fixed port that can be stopped and started again (an outage)."""

    def __init__(self) -> None:
        self.sink = SmtpSink()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[Smtp]:
    server = Smtp()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def meeting(fid: str, participant: str, **changes: Any) -> dict[str, Any]:
    """alice's kick-off in Room 2, one guest invited."""
    doc = appointment(
        fid,
        title="Kick-off",
        kind="appointment",
        owner="alice",
        location="Room 2",
        organizer={"name": "Alice", "email": ORGANIZER},
        participants=[{"name": "Guest", "email": participant}],
    )
    doc.update(changes)
    return doc


def configure(
    tmp_path: Path,
    server: RunningServer,
    smtp: Smtp,
    http_port: int,
    *,
    imap_port: int | None = None,
) -> tuple[Path, str]:
    # Radicale does not schedule: the probe says email.
    made = alice_config(tmp_path, server, http_port=http_port, prefix="inv", scheduling="auto")
    config, database = made.path, made.database
    mail = [
        "",
        "[mail]",
        'host = "127.0.0.1"',
        f"port = {smtp.port}",
        'security = "none"',
        f'from = "Alice <{ORGANIZER}>"',
    ]
    if imap_port is not None:
        mail += [
            "",
            "[mail.imap]",
            'host = "127.0.0.1"',
            f"port = {imap_port}",
            'security = "none"',
            'username = "alice"',
            'password_env = "IMAP_PASSWORD"',
            "poll_seconds = 0.5",
        ]
    config.write_text(config.read_text() + "\n".join(mail) + "\n")
    return config, database


def passes_done(database: str) -> int:
    db = Database(database)
    try:
        with db.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(DaemonRun)
                    .where(DaemonRun.account == "alice", DaemonRun.finished_at.is_not(None))
                )
                or 0
            )
    finally:
        db.close()


def wait_for_passes(database: str, more: int) -> None:
    """Until ``more`` further passes of alice have finished (each one a chance to resend)."""
    target = passes_done(database) + more
    wait_for(lambda: passes_done(database) >= target, CONVERGE, f"{more} more passes")


def outbox(database: str) -> list[dict[str, Any]]:
    db = Database(database)
    try:
        return replies.outbox(db)
    finally:
        db.close()


def test_each_invitation_goes_out_once_across_ticks_restarts_and_an_smtp_outage(
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
    smtp_server: Smtp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, database = configure(tmp_path, radicale_server, smtp_server, http_port)
    sink = smtp_server.sink
    put_followups(database, [meeting("i1", BJORN)])

    daemon = start_ready(daemons, config, tmp_path / "daemon.log", http_port=http_port)

    # The first pass records the invitation; the daemon sends it right after.
    wait_for(lambda: sink.messages, CONVERGE, "the invitation")
    (first,) = sink.messages
    assert first.recipients == [BJORN]
    request = itip_of(first, "REQUEST")
    assert int(request.walk("VEVENT")[0]["SEQUENCE"]) == 0

    # More ticks: nothing is sent again.
    wait_for_passes(database, 3)
    assert len(sink.messages) == 1

    # A restart: nothing is sent again either.
    assert daemon.terminate() == 0, daemon.log_text()[-3000:]
    daemon = start_ready(daemons, config, tmp_path / "daemon2.log", http_port=http_port)
    wait_for_passes(database, 3)
    assert len(sink.messages) == 1
    assert [r["status"] for r in outbox(database)] == ["sent"]

    # The SMTP server goes away and the meeting moves: the daemon logs the failure with
    # the account, keeps running, and keeps the update for later.
    smtp_server.stop()
    put_followups(database, [meeting("i1", BJORN, location="Room 9")])
    wait_for(
        lambda: any(
            r["level"] == "warning"
            and r.get("account") == "alice"
            and "invitations not sent" in r["msg"]
            for r in daemon.log_records()
        ),
        CONVERGE,
        "the SMTP failure in the log",
    )
    assert daemon.process.poll() is None
    assert daemon.get("/readyz")[0] == 200
    assert sorted(r["status"] for r in outbox(database)) == ["pending", "sent"]
    assert len(sink.messages) == 1

    # SMTP is back: the next tick sends the update, once.
    smtp_server.start()
    wait_for(lambda: len(sink.messages) >= 2, CONVERGE, "the update after the outage")
    wait_for_passes(database, 3)
    assert len(sink.messages) == 2
    update_request = itip_of(sink.messages[1], "REQUEST")
    event = update_request.walk("VEVENT")[0]
    assert int(event["SEQUENCE"]) == 1 and str(event["LOCATION"]) == "Room 9"
    assert sorted(r["status"] for r in outbox(database)) == ["sent", "sent"]
    assert daemon.terminate() == 0

    # Killed in the middle of a send (the row was marked "sending", SMTP may have it):
    # the restarted daemon does not send it again by itself; the operator decides.
    monkeypatch.setenv("DAV_PASSWORD", radicale_server.password or "")
    put_followups(database, [meeting("i1", BJORN, location="Room 12")])
    db = Database(database)
    try:
        report = run_pass(load_settings(str(config)).account("alice"), db)
        assert report.ok, report.errors
        with db.sessions.begin() as session:
            session.execute(
                update(Invitation).where(Invitation.status == "pending").values(status="sending")
            )
    finally:
        db.close()
    daemon = start_ready(daemons, config, tmp_path / "daemon3.log", http_port=http_port)
    wait_for_passes(database, 3)
    assert len(sink.messages) == 2
    assert sorted(r["status"] for r in outbox(database)) == ["sent", "sent", "uncertain"]
    assert daemon.terminate() == 0


def append_reply(port: int, name: str, **values: str) -> None:
    raw = (DATA / name).read_text(encoding="utf-8")
    for key, value in values.items():
        raw = raw.replace("{" + key + "}", value)
    conn = imaplib.IMAP4("127.0.0.1", port)
    conn.login("alice", "secret")
    status, _ = conn.append("INBOX", None, None, raw.replace("\n", "\r\n").encode("utf-8"))  # type: ignore[arg-type]
    assert status == "OK"
    conn.logout()


def test_the_daemon_reads_replies_and_the_answer_reaches_the_calendar(
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
    http_port: int,
    smtp_server: Smtp,
    imap_port: int,
) -> None:
    config, database = configure(
        tmp_path, radicale_server, smtp_server, http_port, imap_port=imap_port
    )
    put_followups(database, [meeting("r1", CAROL)])
    daemon = start_ready(
        daemons,
        config,
        tmp_path / "daemon.log",
        http_port=http_port,
        env={"IMAP_PASSWORD": "secret"},
    )
    wait_for(lambda: smtp_server.sink.messages, CONVERGE, "the invitation")

    # Carol declines from Gmail; nobody runs a command.
    append_reply(imap_port, "gmail-reply.eml", UID="followup-r1@followup-sync", SEQUENCE="0")

    def carol_on_calendar() -> str | None:
        for _, data in calendar_items(radicale_server, config_calendar(config)).values():
            text = data.decode().replace("\r\n ", "")
            for line in text.splitlines():
                if line.startswith("ATTENDEE") and CAROL in line:
                    return line.split("PARTSTAT=")[1].split(";")[0].split(":")[0]
        return None

    wait_for(lambda: carol_on_calendar() == "DECLINED", CONVERGE, "the answer on the calendar")
    shown = run_cli("invitations", "--json", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert {r["email"]: r["status"] for r in json.loads(shown.stdout)} == {CAROL: "declined"}
    assert any("invitation replies: 1 applied" in r["msg"] for r in daemon.log_records())
    assert len(smtp_server.sink.messages) == 1  # an answer is no reason to send anything
    assert daemon.terminate() == 0


def config_calendar(config: Path) -> str:
    url = load_settings(str(config)).account("alice").calendar_url
    assert url is not None
    return url
