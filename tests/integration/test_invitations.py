"""Invitations end to end: real Radicale, a real SMTP server (aiosmtpd), a real IMAP server (pymap).

What went over SMTP is parsed back with ``email`` (policy=default) and icalendar and
checked against RFC 5546's rules for its method (``mappings.itip.problems``) plus the
iMIP shape of RFC 6047 (a ``text/calendar; method=…`` part whose method matches METHOD).
Replies are fed through IMAP in the shapes Outlook, Gmail, Apple Calendar and
Thunderbird send (tests/data/itip/).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import imaplib
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from icalendar import Calendar

from mappings import itip
from mappings.documents import load_followup
from sync.config import Account
from sync.invitations import messages, replies, scheduling, send
from sync.mail_config import ImapSettings, MailSettings
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar
from tests.factories import weekly
from tests.servers import RunningServer, free_port

pytestmark = pytest.mark.server

DATA = Path(__file__).parent.parent / "data" / "itip"
PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"
IMAP_PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_IMAP_PASSWORD"
ORGANIZER = "alice@crm.example"
PEOPLE = {
    "outlook": ("Bjørn Ekstern", "bjorn@partner.example"),
    "gmail": ("Carol Gmail", "carol@gmail.example"),
    "apple": ("Dag Apple", "dag@icloud.example"),
    "thunderbird": ("Eva Bird", "eva@bird.example"),
}
BOARD = "3001"


def board(**changes: Any) -> dict[str, Any]:
    """The board's five Monday meetings in Norwegian, alice organizing, everyone invited."""
    doc = weekly(
        BOARD,
        title="Styremøte",
        count=5,
        location="Møterom 2",
        language="nb",
        organizer={"name": "Alice Ørn", "email": ORGANIZER},
        participants=[{"name": name, "email": address} for name, address in PEOPLE.values()],
    )
    doc.update(changes)
    return doc


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Captured:
    envelope_from: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class SmtpSink:
    messages: list[Captured] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            Captured(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        )
        return "250 OK"

    def take(self) -> list[Captured]:
        taken, self.messages[:] = list(self.messages), []
        return taken


@contextlib.contextmanager
def smtp_serving(handler: Any) -> Iterator[int]:
    """aiosmtpd with ``handler`` on a free loopback port for the block; yields the port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    with smtp_serving(sink) as port:
        yield sink, port


@pytest.fixture(scope="module")
def imap_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """pymap's in-memory ``dict`` backend: a real IMAP4rev1 server with one user."""
    port = free_port()
    log = tmp_path_factory.mktemp("pymap") / "pymap.log"
    pymap = Path(sys.executable).parent / "pymap"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(pymap),
                "--no-service",
                "admin",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-tls",
                "dict",
                "--demo-user",
                "alice",
                "--demo-password",
                "secret",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                imaplib.IMAP4("127.0.0.1", port).logout()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"pymap did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@dataclass
class Env:
    account: Account
    db: Database
    store: FollowUpStore
    mail: MailSettings
    sink: SmtpSink
    calendar_url: str
    server: RunningServer

    def edit(self, **changes: Any) -> None:
        self.store.put(load_followup(board(**changes)))

    def sync_and_send(self) -> list[Captured]:
        report = run_pass(self.account, self.db)
        assert report.ok, report.errors
        send.send_pending(self.mail, self.db)
        return self.sink.take()

    def resource(self) -> Calendar:
        with DavCalendar.connect(
            self.calendar_url, username=self.server.username, password=self.server.password
        ) as calendar:
            found = calendar.find_by_uid(f"followup-{BOARD}@followup-sync")
            assert found is not None
            return Calendar.from_ical(found.data)


def make_env(
    server: RunningServer,
    tmp_path: Path,
    smtp: tuple[SmtpSink, int],
    imap_port: int,
    monkeypatch: pytest.MonkeyPatch,
    scheduling: str = "auto",
) -> Env:
    sink, port = smtp
    sink.take()
    monkeypatch.setenv(PASSWORD_ENV, server.password or "")
    monkeypatch.setenv(IMAP_PASSWORD_ENV, "secret")
    calendar_url = server.make_calendar()
    account = Account(
        name="alice",
        url=server.base_url,
        username=server.username,
        password_env=PASSWORD_ENV,
        calendar_url=calendar_url,
        server_kind=server.kind,
        default_timezone="Europe/Oslo",
        scheduling=scheduling,  # type: ignore[arg-type]
    )
    db = Database.open(str(tmp_path / "state.sqlite"))
    mail = MailSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from": "Alice Ørn <alice@crm.example>",
            "imap": ImapSettings(
                host="127.0.0.1",
                port=imap_port,
                security="none",
                username="alice",
                password_env=IMAP_PASSWORD_ENV,
            ),
        }
    )
    return Env(account, db, FollowUpStore(db), mail, sink, calendar_url, server)


@pytest.fixture
def env(
    radicale_server: RunningServer,
    tmp_path: Path,
    smtp: tuple[SmtpSink, int],
    imap_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    return make_env(radicale_server, tmp_path, smtp, imap_port, monkeypatch)


# --- checks on what was sent ------------------------------------------------------------------


def itip_of(captured: Captured, method: str, *, organizer: str = ORGANIZER) -> Calendar:
    """The iTIP part of one iMIP message, checked against RFC 6047 and RFC 5546."""
    msg = captured.message
    assert msg.get_content_type() == "multipart/mixed"
    alternative = next(p for p in msg.walk() if p.get_content_type() == "multipart/alternative")
    parts = [p for p in alternative.iter_parts()]
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/calendar"]
    calendar_part = parts[1]
    assert calendar_part.get_param("method") == method, "the MIME method parameter matches METHOD"
    assert str(calendar_part.get_content_charset()).lower() == "utf-8"
    attachment = next(p for p in msg.walk() if p.get_filename() == "invite.ics")
    assert attachment.get_content_type() == "application/ics"
    body = calendar_part.get_content()
    assert (
        attachment.get_content().decode() if isinstance(attachment.get_content(), bytes) else True
    )
    cal = Calendar.from_ical(body)
    assert str(cal["METHOD"]) == method
    assert itip.problems(cal) == [], itip.problems(cal)
    for component in cal.walk("VEVENT"):
        assert str(component["ORGANIZER"]) == f"mailto:{organizer}"
    assert captured.recipients and len(captured.recipients) == 1
    assert msg["To"].addresses[0].addr_spec == captured.recipients[0]
    return cal


def text_of(captured: Captured) -> str:
    plain = next(p for p in captured.message.walk() if p.get_content_type() == "text/plain")
    return str(plain.get_content()).replace("\r\n", "\n")


def by_recipient(messages: list[Captured]) -> dict[str, Captured]:
    result = {m.recipients[0]: m for m in messages}
    assert len(result) == len(messages), "one message per recipient, none twice"
    return result


def rid_of(component: Any) -> dt.datetime:
    return component["RECURRENCE-ID"].dt  # type: ignore[no-any-return]


def oslo(*args: int) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime(*args, tzinfo=ZoneInfo("Europe/Oslo"))


# --- the life of one series --------------------------------------------------------------------


def test_create_move_cancel_delete_each_send_the_right_message(env: Env) -> None:
    everyone = {address for _, address in PEOPLE.values()}

    # Created → REQUEST, SEQUENCE 0, the whole series, to each participant.
    env.edit()
    sent = by_recipient(env.sync_and_send())
    assert set(sent) == everyone
    for address, captured in sent.items():
        cal = itip_of(captured, "REQUEST")
        (master,) = cal.walk("VEVENT")
        assert int(master["SEQUENCE"]) == 0
        assert "RRULE" in master and cal.walk("VTIMEZONE")
        attendees = {str(a).removeprefix("mailto:") for a in master["ATTENDEE"]}
        assert attendees == everyone
        text = text_of(captured)
        assert "Du er invitert til Styremøte" in text
        assert "Hvor: Møterom 2" in text and "Arrangør: Alice Ørn <alice@crm.example>" in text
        assert (
            "Når: Ukentlig (02.03.2026 - 30.03.2026): Hver uke på mandag, 5 ganger, 10:00–11:00"
            in text
        ), text
        assert captured.message["Message-ID"] == messages.message_id(
            "", f"followup-{BOARD}@followup-sync", 0, "REQUEST", address, ""
        )
    # We send; the server must not: every ATTENDEE on the calendar says SCHEDULE-AGENT=CLIENT.
    stored = env.resource()
    for component in stored.walk("VEVENT"):
        for attendee in component["ATTENDEE"]:
            assert attendee.params["SCHEDULE-AGENT"] == "CLIENT"

    # Nothing changed → nothing sent (next pass, and sending again).
    assert env.sync_and_send() == []

    # Move one occurrence → REQUEST, SEQUENCE 1, with the override.
    moved = [
        {
            "original_start": "2026-03-09T10:00:00",
            "start": "2026-03-09T13:00:00",
            "end": "2026-03-09T14:00:00",
        }
    ]
    env.edit(exceptions=moved)
    sent = by_recipient(env.sync_and_send())
    assert set(sent) == everyone
    cal = itip_of(sent[PEOPLE["gmail"][1]], "REQUEST")
    master, override = cal.walk("VEVENT")
    assert int(master["SEQUENCE"]) == int(override["SEQUENCE"]) == 1
    assert rid_of(override) == oslo(2026, 3, 9, 10)
    assert override["DTSTART"].dt == oslo(2026, 3, 9, 13)

    # Title only → not significant: nothing sent.
    env.store.put(load_followup(board(exceptions=moved, title="Styremøte (ny tittel)")))
    assert env.sync_and_send() == []

    # Cancel one occurrence → CANCEL with RECURRENCE-ID, SEQUENCE 2.
    cancelled = [*moved, {"original_start": "2026-03-16T10:00:00", "cancelled": True}]
    env.store.put(load_followup(board(exceptions=cancelled, title="Styremøte (ny tittel)")))
    sent = by_recipient(env.sync_and_send())
    assert set(sent) == everyone
    for captured in sent.values():
        cal = itip_of(captured, "CANCEL")
        (component,) = cal.walk("VEVENT")
        assert rid_of(component) == oslo(2026, 3, 16, 10)
        assert str(component["STATUS"]) == "CANCELLED" and int(component["SEQUENCE"]) == 2
        assert "Bare forekomsten 16.03.2026 10:00" in text_of(captured)

    # Delete the series → CANCEL of the whole series, SEQUENCE 3, to every participant.
    env.store.delete(BOARD)
    sent = by_recipient(env.sync_and_send())
    assert set(sent) == everyone
    for captured in sent.values():
        cal = itip_of(captured, "CANCEL")
        (component,) = cal.walk("VEVENT")
        assert "RECURRENCE-ID" not in component
        assert str(component["STATUS"]) == "CANCELLED" and int(component["SEQUENCE"]) == 3
        assert {str(a).removeprefix("mailto:") for a in component["ATTENDEE"]} == everyone
    assert env.sync_and_send() == []


def test_added_and_removed_participants(env: Env) -> None:
    env.edit()
    env.sync_and_send()
    people = board()["participants"]
    frank = {"name": "Frank Ny", "email": "frank@new.example"}
    env.edit(participants=[*people[1:], frank])  # Bjørn out, Frank in
    sent = by_recipient(env.sync_and_send())
    assert set(sent) == {PEOPLE["outlook"][1], "frank@new.example"}
    itip_of(sent[PEOPLE["outlook"][1]], "CANCEL")
    request = itip_of(sent["frank@new.example"], "REQUEST")
    assert int(request.walk("VEVENT")[0]["SEQUENCE"]) == 1


# --- replies ---------------------------------------------------------------------------------


def append(env: Env, name: str, **values: str) -> None:
    raw = (DATA / name).read_text(encoding="utf-8")
    for key, value in values.items():
        raw = raw.replace("{" + key + "}", value)
    imap = env.mail.imap
    assert imap is not None
    conn = imaplib.IMAP4("127.0.0.1", imap.imap_port)
    conn.login("alice", "secret")
    status, _ = conn.append("INBOX", None, None, raw.replace("\n", "\r\n").encode("utf-8"))  # type: ignore[arg-type]
    assert status == "OK"
    conn.logout()


def test_each_client_reply_shape_updates_the_right_participant(env: Env) -> None:
    env.edit()
    env.sync_and_send()
    uid = f"followup-{BOARD}@followup-sync"
    append(env, "outlook-reply.eml", UID=uid, SEQUENCE="0")
    append(env, "gmail-reply.eml", UID=uid, SEQUENCE="0")
    append(env, "apple-reply-occurrence.eml", UID=uid, SEQUENCE="0", RID_LOCAL="20260323T100000")
    append(env, "thunderbird-reply.eml", UID=uid, SEQUENCE="0")
    # Ignored: an unknown UID, and a sender who is not a participant.
    append(env, "gmail-reply.eml", UID="someone-else@example.com", SEQUENCE="0")
    append(env, "thunderbird-reply.eml", UID=uid, SEQUENCE="0")  # same again: harmless

    outcomes = replies.fetch_replies(env.mail, env.db)
    applied = [o for o in outcomes if o.outcome == "applied"]
    ignored = [o for o in outcomes if o.outcome == "ignored"]
    assert len(applied) == 5 and len(ignored) == 1
    assert "unknown UID" in str(ignored[0].reason)

    followup = env.store.get(BOARD)
    assert followup is not None
    status = {p.email: p for p in followup.participants}
    assert status[PEOPLE["outlook"][1]].status.value == "accepted"
    assert status[PEOPLE["gmail"][1]].status.value == "declined"
    assert status[PEOPLE["apple"][1]].status.value == "needs-action"
    assert status[PEOPLE["apple"][1]].occurrence_status == {"2026-03-23T10:00:00": "declined"}
    assert status[PEOPLE["thunderbird"][1]].status.value == "tentative"

    # Fetching again reads nothing new (the messages are \Seen).
    assert replies.fetch_replies(env.mail, env.db) == []

    # The answers reach the calendar (PARTSTAT, and an override for Dag's one occurrence),
    # and an answer is no reason to send anything.
    assert env.sync_and_send() == []
    stored = env.resource()
    master = next(c for c in stored.walk("VEVENT") if "RECURRENCE-ID" not in c)
    partstats = {
        str(a).removeprefix("mailto:"): str(a.params["PARTSTAT"]) for a in master["ATTENDEE"]
    }
    assert partstats[PEOPLE["outlook"][1]] == "ACCEPTED"
    override = next(c for c in stored.walk("VEVENT") if "RECURRENCE-ID" in c)
    assert rid_of(override) == oslo(2026, 3, 23, 10)
    dag = next(a for a in override["ATTENDEE"] if PEOPLE["apple"][1] in str(a))
    assert str(dag.params["PARTSTAT"]) == "DECLINED"

    listing = replies.answers(env.db)
    assert {row["email"]: row["status"] for row in listing}[PEOPLE["gmail"][1]] == "declined"


def test_a_stranger_or_an_old_sequence_is_reported_and_ignored(env: Env) -> None:
    env.edit()
    env.sync_and_send()
    env.edit(location="Møterom 9")  # significant: SEQUENCE 1
    env.sync_and_send()
    uid = f"followup-{BOARD}@followup-sync"
    append(env, "gmail-reply.eml", UID=uid, SEQUENCE="0")  # answers the old invitation
    raw = (
        (DATA / "thunderbird-reply.eml")
        .read_text()
        .replace("{UID}", uid)
        .replace("{SEQUENCE}", "1")
    )
    raw = raw.replace("eva@bird.example", "mallory@evil.example")
    outcomes = replies.apply_reply_message(raw.encode(), env.db, message_key="stranger")
    outcomes += replies.fetch_replies(env.mail, env.db)
    reasons = sorted(str(o.reason) for o in outcomes)
    assert [o.outcome for o in outcomes] == ["ignored", "ignored"]
    assert "mallory@evil.example is not a participant" in reasons
    assert any("SEQUENCE 0 is older than the current 1" in r for r in reasons)
    followup = env.store.get(BOARD)
    assert followup is not None and all(
        p.status.value == "needs-action" for p in followup.participants
    )


# --- who may answer ---------------------------------------------------------------------------


def reply_mail(name: str, *, sender: str | None = None, headers: str = "", **values: str) -> str:
    """A client's reply (tests/data/itip) as it arrives: ``sender`` replaces the From line,
    ``headers`` are what the receiving server put on top (Authentication-Results)."""
    raw = (DATA / name).read_text(encoding="utf-8")
    for key, value in values.items():
        raw = raw.replace("{" + key + "}", value)
    if sender is not None:
        lines = raw.split("\n")
        lines = [f"From: {sender}" if line.startswith("From:") else line for line in lines]
        raw = "\n".join(lines)
    return headers + raw


def append_raw(env: Env, raw: str) -> None:
    imap = env.mail.imap
    assert imap is not None
    conn = imaplib.IMAP4("127.0.0.1", imap.imap_port)
    conn.login("alice", "secret")
    status, _ = conn.append("INBOX", None, None, raw.replace("\n", "\r\n").encode("utf-8"))  # type: ignore[arg-type]
    assert status == "OK"
    conn.logout()


def cli(env: Env, *args: str) -> Any:
    from click.testing import CliRunner

    from sync.cli.main import cli as group

    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        group, [*args, "--database", env.db.url], prog_name="followup-sync", catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result


def test_an_answer_from_someone_else_is_held_shown_and_decided_by_the_operator(env: Env) -> None:
    bjorn, carol, _, eva = (address for _, address in PEOPLE.values())
    env.edit()
    env.sync_and_send()
    uid = f"followup-{BOARD}@followup-sync"
    # Mallory, who got the invitation too, declines for Carol (Gmail's shape, her own From).
    append_raw(
        env, reply_mail("gmail-reply.eml", sender="mallory@evil.example", UID=uid, SEQUENCE="0")
    )
    # Carol's own address, but the receiving server found it forged.
    forged = (
        "Authentication-Results: mx.crm.example; dkim=fail header.d=gmail.example;\n"
        " spf=fail smtp.mailfrom=evil.example; dmarc=fail header.from=gmail.example\n"
    )
    append_raw(
        env, reply_mail("thunderbird-reply.eml", sender=eva, headers=forged, UID=uid, SEQUENCE="0")
    )
    # Bjørn himself: applied.
    append_raw(env, reply_mail("outlook-reply.eml", UID=uid, SEQUENCE="0"))

    outcomes = {o.attendee: o for o in replies.fetch_replies(env.mail, env.db)}
    assert outcomes[carol].outcome == "held"
    assert outcomes[carol].reason == f"sent by mallory@evil.example, not by {carol}"
    assert outcomes[eva].outcome == "held" and "dmarc=fail" in str(outcomes[eva].reason)
    assert outcomes[bjorn].outcome == "applied"
    assert answers_of(env)[carol] == ("needs-action", {})
    assert answers_of(env)[eva] == ("needs-action", {})
    assert answers_of(env)[bjorn] == ("accepted", {})
    # The calendar shows only what was applied.
    assert env.sync_and_send() == []
    master = next(c for c in env.resource().walk("VEVENT") if "RECURRENCE-ID" not in c)
    assert partstats(master)[carol][0] == "NEEDS-ACTION"

    # `invitations` shows the held answers beside the participants; `held` lists them.
    listing = cli(env, "invitations", "--json")
    import json

    rows = {r["email"]: r for r in json.loads(listing.output)}
    (carol_held,) = rows[carol]["held"]
    assert carol_held["answer"] == "declined" and carol_held["sender"] == "mallory@evil.example"
    assert rows[bjorn]["held"] == []
    table = cli(env, "invitations").output
    assert f"#{carol_held['id']} declined from" in table and "invitations accept ID" in table
    held = {r["attendee"]: r for r in json.loads(cli(env, "invitations", "held", "--json").output)}
    assert set(held) == {carol, eva}
    assert "dkim=fail" in held[eva]["authentication"]

    # The operator rejects Mallory's and accepts Eva's (she phoned to confirm).
    assert "rejected" in cli(env, "invitations", "reject", str(held[carol]["id"])).output
    assert "applied" in cli(env, "invitations", "accept", str(held[eva]["id"])).output
    assert answers_of(env)[carol] == ("needs-action", {})
    assert answers_of(env)[eva] == ("tentative", {})
    assert replies.held(env.db) == []
    env.sync_and_send()
    master = next(c for c in env.resource().walk("VEVENT") if "RECURRENCE-ID" not in c)
    assert partstats(master)[eva][0] == "TENTATIVE"
    assert partstats(master)[carol][0] == "NEEDS-ACTION"


def test_with_the_receiving_servers_id_only_its_aligned_pass_vouches(env: Env) -> None:
    bjorn, carol, _, eva = (address for _, address in PEOPLE.values())
    env.mail.imap.authserv_ids = ["mx.crm.example"]  # type: ignore[union-attr]
    env.edit()
    env.sync_and_send()
    uid = f"followup-{BOARD}@followup-sync"
    ours = (
        "Authentication-Results: mx.crm.example; dkim=pass header.d=partner.example;\n"
        " spf=pass smtp.mailfrom=bjorn@partner.example; dmarc=pass header.from=partner.example\n"
    )
    # A pass the sender wrote himself (another authserv-id) vouches for nothing.
    self_made = (
        "Authentication-Results: mx.evil.example; dkim=pass header.d=gmail.example;\n"
        " dmarc=pass header.from=gmail.example\n"
    )
    # DKIM passes, but for a domain that is not the From domain: not aligned.
    unaligned = (
        "Authentication-Results: mx.crm.example; dkim=pass header.d=evil.example; spf=none\n"
    )
    append_raw(env, reply_mail("outlook-reply.eml", headers=ours, UID=uid, SEQUENCE="0"))
    append_raw(env, reply_mail("gmail-reply.eml", headers=self_made, UID=uid, SEQUENCE="0"))
    append_raw(env, reply_mail("thunderbird-reply.eml", headers=unaligned, UID=uid, SEQUENCE="0"))
    outcomes = {o.attendee: o for o in replies.fetch_replies(env.mail, env.db)}
    assert outcomes[bjorn].outcome == "applied"
    assert outcomes[carol].outcome == "held"
    assert (
        outcomes[carol].reason
        == "no passing DKIM, SPF or DMARC result for gmail.example from mx.crm.example"
    )
    assert outcomes[eva].outcome == "held"
    assert answers_of(env)[bjorn] == ("accepted", {})
    assert answers_of(env)[carol] == ("needs-action", {})


def test_a_delegate_named_by_sent_by_answers_only_when_authenticated(env: Env) -> None:
    bjorn = PEOPLE["outlook"][1]
    env.mail.imap.authserv_ids = ["mx.crm.example"]  # type: ignore[union-attr]
    env.edit()
    env.sync_and_send()
    uid = f"followup-{BOARD}@followup-sync"
    delegate = "assistant@partner.example"
    raw = reply_mail("outlook-reply.eml", sender=delegate, UID=uid, SEQUENCE="0")
    raw = raw.replace("ATTENDEE;", f'ATTENDEE;SENT-BY="mailto:{delegate}";', 1)
    passed = "Authentication-Results: mx.crm.example; dkim=pass header.d=partner.example\n"
    outcomes = replies.apply_reply_message(
        raw.replace("\n", "\r\n").encode(),
        env.db,
        message_key="unauthenticated",
        authserv_ids=["mx.crm.example"],
    )
    assert [o.outcome for o in outcomes] == ["held"]
    outcomes = replies.apply_reply_message(
        (passed + raw).replace("\n", "\r\n").encode(),
        env.db,
        message_key="delegate",
        authserv_ids=["mx.crm.example"],
    )
    assert [o.outcome for o in outcomes] == ["applied"]
    assert answers_of(env)[bjorn] == ("accepted", {})


def test_an_answer_for_an_occurrence_the_series_does_not_have_is_ignored(env: Env) -> None:
    dag = PEOPLE["apple"][1]
    env.edit(exceptions=[{"original_start": "2026-03-16T10:00:00", "cancelled": True}])
    env.sync_and_send()
    uid = f"followup-{BOARD}@followup-sync"
    # A Thursday on a Monday series, a cancelled Monday, and a real one.
    for local in ("20260326T100000", "20260316T100000", "20260323T100000"):
        append(env, "apple-reply-occurrence.eml", UID=uid, SEQUENCE="0", RID_LOCAL=local)
    thursday, cancelled, real = replies.fetch_replies(env.mail, env.db)
    assert thursday.outcome == "ignored"
    assert thursday.reason == "the series has no occurrence 26.03.2026 10:00"
    assert cancelled.outcome == "ignored"
    assert cancelled.reason == "the series has no occurrence 16.03.2026 10:00"
    assert real.outcome == "applied"
    assert answers_of(env)[dag] == ("needs-action", {"2026-03-23T10:00:00": "declined"})


# --- what the messages say ----------------------------------------------------------------------


def test_messages_say_what_changed_name_the_date_people_know_and_carry_the_description(
    env: Env,
) -> None:
    carol = PEOPLE["gmail"][1]
    env.edit(description="Agenda: budget 2027")
    (invitation,) = [m for m in env.sync_and_send() if m.recipients == [carol]]
    assert "Agenda: budget 2027" in text_of(invitation)

    # One Monday moves to 13:00 and the series changes room: the update says both.
    moved = [
        {
            "original_start": "2026-03-09T10:00:00",
            "start": "2026-03-09T13:00:00",
            "end": "2026-03-09T14:00:00",
        }
    ]
    env.edit(description="Agenda: budget 2027", exceptions=moved)
    update = by_recipient(env.sync_and_send())[carol]
    text = text_of(update)
    assert update.message["Subject"].startswith("Endret: Styremøte")
    assert "Dette er endret:\n  Flyttet: 09.03.2026 10:00 → 09.03.2026 13:00\n" in text, text
    assert "Agenda: budget 2027" in text

    env.edit(description="Agenda: budget 2027", exceptions=moved, location="Møterom 9")
    text = text_of(by_recipient(env.sync_and_send())[carol])
    assert "  Hvor: Møterom 2 → Møterom 9\n" in text, text
    assert "Flyttet" not in text

    # The moved Monday is cancelled: the message names 13:00, the time Carol was told.
    cancelled = [{"original_start": "2026-03-09T10:00:00", "cancelled": True}]
    env.edit(description="Agenda: budget 2027", exceptions=cancelled, location="Møterom 9")
    cancel = by_recipient(env.sync_and_send())[carol]
    (component,) = itip_of(cancel, "CANCEL").walk("VEVENT")
    assert rid_of(component) == oslo(2026, 3, 9, 10)  # the iTIP data keys it by its original
    assert "Bare forekomsten 09.03.2026 13:00" in text_of(cancel)
    assert "09.03.2026 10:00" not in text_of(cancel)
    assert "(09.03.2026 13:00)" in cancel.message["Subject"]


def test_an_english_update_says_what_changed_in_english(env: Env) -> None:
    carol = PEOPLE["gmail"][1]
    env.edit(language="en")
    env.sync_and_send()
    env.edit(language="en", title="Board", start="2026-03-02T12:00:00", end="2026-03-02T13:00:00")
    update = by_recipient(env.sync_and_send())[carol]
    text = text_of(update)
    assert update.message["Subject"].startswith("Updated: Board")
    assert "This has changed:\n  Title: Styremøte → Board\n" in text, text
    assert "  When: Weekly" in text and "10:00–11:00 → Weekly" in text and "12:00–13:00" in text


# --- a reschedule asks again --------------------------------------------------------------------


def partstats(component: Any) -> dict[str, tuple[str, str]]:
    """address -> (PARTSTAT, RSVP) of every ATTENDEE of one component."""
    return {
        str(a).removeprefix("mailto:"): (str(a.params["PARTSTAT"]), str(a.params.get("RSVP")))
        for a in component["ATTENDEE"]
    }


def answers_of(env: Env) -> dict[str, tuple[str, dict[str, str]]]:
    followup = env.store.get(BOARD)
    assert followup is not None
    return {
        p.email: (p.status.value, {k: v.value for k, v in p.occurrence_status.items()})
        for p in followup.participants
    }


def test_a_reschedule_asks_every_participant_again_a_description_edit_does_not(env: Env) -> None:
    bjorn, carol, dag, eva = (address for _, address in PEOPLE.values())
    env.edit()
    env.sync_and_send()
    uid = f"followup-{BOARD}@followup-sync"
    append(env, "outlook-reply.eml", UID=uid, SEQUENCE="0")  # Bjørn: accepted
    append(env, "gmail-reply.eml", UID=uid, SEQUENCE="0")  # Carol: declined
    append(env, "apple-reply-occurrence.eml", UID=uid, SEQUENCE="0", RID_LOCAL="20260323T100000")
    append(env, "thunderbird-reply.eml", UID=uid, SEQUENCE="0")  # Eva: tentative
    replies.fetch_replies(env.mail, env.db)
    answered = {
        bjorn: ("accepted", {}),
        carol: ("declined", {}),
        dag: ("needs-action", {"2026-03-23T10:00:00": "declined"}),
        eva: ("tentative", {}),
    }
    assert answers_of(env) == answered
    assert env.sync_and_send() == []

    # A description edit is no reschedule: nothing is sent and every answer stands.
    keep_answers(env, description="Agenda: budget")
    assert env.sync_and_send() == []
    assert answers_of(env) == answered

    # One occurrence moves: SEQUENCE 1, and everyone is asked again for that occurrence
    # only. The REQUEST's override says NEEDS-ACTION and RSVP=TRUE for each attendee, the
    # master keeps the series answers; the follow-up records the same.
    moved = [
        {
            "original_start": "2026-03-09T10:00:00",
            "start": "2026-03-09T13:00:00",
            "end": "2026-03-09T14:00:00",
        }
    ]
    keep_answers(env, description="Agenda: budget", exceptions=moved)
    sent = by_recipient(env.sync_and_send())
    assert set(sent) == {bjorn, carol, dag, eva}
    cal = itip_of(sent[bjorn], "REQUEST")
    master = next(c for c in cal.walk("VEVENT") if "RECURRENCE-ID" not in c)
    override = next(
        c for c in cal.walk("VEVENT") if "RECURRENCE-ID" in c and rid_of(c) == oslo(2026, 3, 9, 10)
    )
    assert int(master["SEQUENCE"]) == int(override["SEQUENCE"]) == 1
    assert partstats(override) == {a: ("NEEDS-ACTION", "TRUE") for a in (bjorn, carol, dag, eva)}
    assert partstats(master)[bjorn] == ("ACCEPTED", "TRUE")
    assert partstats(master)[carol] == ("DECLINED", "TRUE")
    asked = "2026-03-09T10:00:00"
    assert answers_of(env) == {
        bjorn: ("accepted", {asked: "needs-action"}),
        carol: ("declined", {asked: "needs-action"}),
        dag: ("needs-action", {"2026-03-23T10:00:00": "declined"}),
        eva: ("tentative", {asked: "needs-action"}),
    }
    # The calendar copy follows on the next pass (the follow-up changed); nothing is sent again.
    assert env.sync_and_send() == []
    stored = env.resource()
    on_calendar = next(
        c
        for c in stored.walk("VEVENT")
        if "RECURRENCE-ID" in c and rid_of(c) == oslo(2026, 3, 9, 10)
    )
    assert partstats(on_calendar)[bjorn] == ("NEEDS-ACTION", "TRUE")

    # The whole series moves (the moved occurrence with it): SEQUENCE 2, every answer,
    # series and occurrence, is void.
    keep_answers(
        env, description="Agenda: budget", start="2026-03-02T12:00:00", end="2026-03-02T13:00:00"
    )
    sent = by_recipient(env.sync_and_send())
    assert set(sent) == {bjorn, carol, dag, eva}
    cal = itip_of(sent[carol], "REQUEST")
    for component in cal.walk("VEVENT"):
        assert int(component["SEQUENCE"]) == 2
        assert partstats(component) == {
            a: ("NEEDS-ACTION", "TRUE") for a in (bjorn, carol, dag, eva)
        }
    assert answers_of(env) == {a: ("needs-action", {}) for a in (bjorn, carol, dag, eva)}
    # An answer to the old time (SEQUENCE 1) no longer counts.
    append(env, "outlook-reply.eml", UID=uid, SEQUENCE="1")
    (late,) = replies.fetch_replies(env.mail, env.db)
    assert late.outcome == "ignored" and "older than the current 2" in str(late.reason)
    assert answers_of(env)[bjorn] == ("needs-action", {})


def keep_answers(env: Env, **changes: Any) -> None:
    """A CRM edit of the board meeting: ``changes``, the participants' answers as they are."""
    followup = env.store.get(BOARD)
    assert followup is not None
    participants = [p.model_dump(mode="json") for p in followup.participants]
    env.store.put(load_followup(board(participants=participants, **changes)))


# --- who schedules ----------------------------------------------------------------------------


def test_an_account_where_the_server_schedules_sends_no_email(
    radicale_server: RunningServer,
    tmp_path: Path,
    smtp: tuple[SmtpSink, int],
    imap_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = make_env(radicale_server, tmp_path, smtp, imap_port, monkeypatch, scheduling="server")
    env.edit()
    assert env.sync_and_send() == []
    env.edit(location="Møterom 9")
    env.store.delete(BOARD)
    assert env.sync_and_send() == []
    assert replies.outbox(env.db) == []


def test_auto_on_a_server_without_scheduling_means_email(env: Env) -> None:
    # Radicale has no schedule-outbox: the probe says "email" and the attendees are marked CLIENT.
    assert (
        scheduling.scheduling_mode(
            env.account,
            DavCalendar.connect(
                env.calendar_url, username=env.server.username, password=env.server.password
            ),
        )
        == "email"
    )


# --- crash between SMTP and the record -----------------------------------------------------------


SENDER_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from sync.invitations.send import send_pending
    from sync.mail_config import MailSettings
    from sync.state.db import Database

    def die_after_second(row_id: int, position: int) -> None:
        if position == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    mail = MailSettings.model_validate_json(sys.argv[2])
    send_pending(mail, Database.open(sys.argv[1]), after_smtp=die_after_second)
    """
)


def test_killed_between_send_and_record_sends_nothing_twice(env: Env, tmp_path: Path) -> None:
    env.edit()
    report = run_pass(env.account, env.db)
    assert report.ok
    pending = [r for r in replies.outbox(env.db) if r["status"] == "pending"]
    assert len(pending) == 4

    # A real sending process, SIGKILLed right after the SMTP server accepted message 2.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SENDER_SCRIPT,
            env.db.url.removeprefix("sqlite:///"),
            env.mail.model_dump_json(by_alias=True),
        ],
        cwd=Path(__file__).parent.parent.parent,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == -9, result.stderr.decode()
    first = env.sink.take()
    assert len(first) == 2

    # Run again (and again): the two not yet sent go out; the one in the crash window does not.
    send.send_pending(env.mail, env.db)
    send.send_pending(env.mail, env.db)
    rest = env.sink.take()
    assert len(rest) == 2
    ids = [m.message["Message-ID"] for m in first + rest]
    assert len(set(ids)) == 4, "nothing was sent twice"
    statuses = sorted(r["status"] for r in replies.outbox(env.db))
    assert statuses == ["sent", "sent", "sent", "uncertain"]

    # Resending the uncertain one on purpose sends the identical message (same Message-ID).
    uncertain = next(r for r in replies.outbox(env.db) if r["status"] == "uncertain")
    send.send_pending(env.mail, env.db, only=[uncertain["id"]])
    (again,) = env.sink.take()
    assert again.message["Message-ID"] in ids[:2]
    assert again.data == next(
        m.data for m in first if m.message["Message-ID"] == again.message["Message-ID"]
    )
