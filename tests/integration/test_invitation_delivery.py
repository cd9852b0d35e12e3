"""Answers reach the service in the deployment docs/how-to/invitations.md describes, over real mail.

The pieces, all real and on loopback:

* the **mail server** of ``crm.example``: an SMTP server (aiosmtpd) that relays what
  the service submits to the participants' mailboxes and delivers mail for
  ``crm@crm.example`` into that user's IMAP mailbox (pymap), stamping each delivered
  message with ``Authentication-Results: mx.crm.example`` the way a receiving server
  does. Its SPF check is real, if small: each sending domain "publishes" the one
  loopback address it sends from (127.0.0.2, .3, …), and the client's source address
  must match the envelope domain; DMARC passes when that SPF pass is aligned with the
  ``From`` domain;
* the **service**, configured as the docs say (``[mail] from = crm@crm.example``,
  ``organizer = "service"`` by default, ``[mail.imap]`` the same mailbox,
  ``authserv_ids = ["mx.crm.example"]``), run through its CLI: ``sync``,
  ``invitations send``, ``invitations fetch``;
* the **participants' calendar programs**: each takes the invitation it received and
  answers the way it does, with the REPLY shape of tests/data/itip (Outlook, Gmail,
  Apple Calendar) sent from its own host to the ORGANIZER's address.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import json
import smtplib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from icalendar import Calendar

from mappings.documents import load_followup
from sync.cli.main import cli
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar
from tests.integration.test_invitations import (
    BOARD,
    DATA,
    PEOPLE,
    board,
    imap_port,
    smtp_serving,
)
from tests.servers import RunningServer

pytestmark = pytest.mark.server

__all__ = ["imap_port"]  # the pymap fixture, shared with test_invitations (user alice)

SERVICE = "crm@crm.example"
AUTHSERV = "mx.crm.example"
#: Each sending domain's "SPF record": the one loopback address its mail comes from.
SPF = {
    "crm.example": "127.0.0.1",
    "partner.example": "127.0.0.2",
    "gmail.example": "127.0.0.3",
    "icloud.example": "127.0.0.4",
    "evil.example": "127.0.0.9",
}
CLIENTS = {
    "outlook": "outlook-reply.eml",
    "gmail": "gmail-reply.eml",
    "apple": "apple-reply-occurrence.eml",
}


@dataclass
class MailServer:
    """crm.example's MX and submission server: hosts crm@'s mailbox, relays the rest."""

    imap_port: int
    relayed: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = bytes(envelope.content)
        for recipient in envelope.rcpt_tos:
            if recipient.casefold() == SERVICE:
                stamped = self.authentication_results(session.peer[0], envelope.mail_from, content)
                await asyncio.to_thread(self.deliver, stamped + content)
            else:
                self.relayed[recipient.casefold()].append(content)
        return "250 OK"

    def authentication_results(self, peer: str, mail_from: str, content: bytes) -> bytes:
        envelope_domain = mail_from.rpartition("@")[2].casefold()
        spf = "pass" if SPF.get(envelope_domain) == peer else "fail"
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        from_domain = parseaddr(str(parsed["From"]))[1].rpartition("@")[2].casefold()
        dmarc = "pass" if spf == "pass" and envelope_domain == from_domain else "fail"
        return (
            f"Authentication-Results: {AUTHSERV};\r\n spf={spf} smtp.mailfrom={mail_from};\r\n"
            f" dmarc={dmarc} header.from={from_domain}\r\n"
        ).encode()

    def deliver(self, data: bytes) -> None:
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port)
        conn.login("alice", "secret")  # the pymap fixture's one user holds crm@'s mailbox
        conn.append("INBOX", None, None, data)  # type: ignore[arg-type]
        conn.logout()

    def inbox_of(self, address: str) -> list[EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for raw in self.relayed.pop(address.casefold(), [])
        ]


@pytest.fixture
def mail_server(imap_port: int) -> Iterator[tuple[MailServer, int]]:
    server = MailServer(imap_port)
    with smtp_serving(server) as port:
        yield server, port


def write_config(
    path: Path, server: RunningServer, calendar_url: str, smtp_port: int, imap_port: int
) -> Path:
    """The configuration of docs/how-to/invitations.md, pointed at the loopback servers."""
    path.write_text(
        f"""
database = "sqlite:///{path.parent / "state.sqlite"}"

[accounts.alice]
url = "{server.base_url}"
calendar_url = "{calendar_url}"
username = "{server.username}"
password_env = "CALDAV_PASSWORD"
default_timezone = "Europe/Oslo"
scheduling = "email"

[mail]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "CRM <{SERVICE}>"

[mail.imap]
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "alice"
password_env = "IMAP_PASSWORD"
authserv_ids = ["{AUTHSERV}"]
"""
    )
    return path


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), prog_name="followup-sync", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def answer_as(client: str, invitation: EmailMessage, attendee: str, **values: str) -> bytes:
    """The REPLY ``client`` sends for ``attendee``: to the ORGANIZER the invitation names."""
    cal = Calendar.from_ical(
        next(p for p in invitation.walk() if p.get_content_type() == "text/calendar").get_content()
    )
    event = cal.walk("VEVENT")[0]
    organizer = str(event["ORGANIZER"]).removeprefix("mailto:")
    raw = (DATA / CLIENTS[client]).read_text(encoding="utf-8")
    raw = raw.replace("alice@crm.example", organizer)  # To: and the echoed ORGANIZER
    values = {"UID": str(event["UID"]), "SEQUENCE": str(event["SEQUENCE"]), **values}
    for key, value in values.items():
        raw = raw.replace("{" + key + "}", value)
    assert attendee in raw
    return raw.replace("\n", "\r\n").encode("utf-8")


def send_from(host: str, smtp_port: int, mail_from: str, to: str, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_port, source_address=(host, 0)) as smtp:
        smtp.sendmail(mail_from, [to], data)


def test_each_clients_answer_reaches_the_service_and_a_forged_one_is_held(
    radicale_server: RunningServer,
    mail_server: tuple[MailServer, int],
    imap_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mx, smtp_port = mail_server
    monkeypatch.setenv("CALDAV_PASSWORD", radicale_server.password or "")
    monkeypatch.setenv("IMAP_PASSWORD", "secret")
    calendar_url = radicale_server.make_calendar()
    config = str(
        write_config(tmp_path / "config.toml", radicale_server, calendar_url, smtp_port, imap_port)
    )
    db = Database.open(f"sqlite:///{tmp_path / 'state.sqlite'}")
    participants = [{"name": n, "email": a} for key, (n, a) in PEOPLE.items() if key in CLIENTS]
    FollowUpStore(db).put(load_followup(board(participants=participants)))

    run("sync", "--config", config)
    assert "sent 3" in run("invitations", "send", "--config", config)

    # What each participant got: from the service's address in Alice's name, answers to
    # the service (ORGANIZER), a hand-written reply to Alice (Reply-To).
    received = {}
    for key in CLIENTS:
        address = PEOPLE[key][1]
        (invitation,) = mx.inbox_of(address)
        assert invitation["From"].addresses[0].addr_spec == SERVICE
        assert invitation["From"].addresses[0].display_name == "Alice Ørn"
        assert invitation["Reply-To"].addresses[0].addr_spec == "alice@crm.example"
        event = Calendar.from_ical(
            next(
                p for p in invitation.walk() if p.get_content_type() == "text/calendar"
            ).get_content()
        ).walk("VEVENT")[0]
        assert str(event["ORGANIZER"]) == f"mailto:{SERVICE}"
        assert str(event["ORGANIZER"].params["CN"]) == "Alice Ørn"
        received[key] = invitation
    # The owner's own calendar still shows her as the organizer.
    with DavCalendar.connect(
        calendar_url, username=radicale_server.username, password=radicale_server.password
    ) as calendar:
        stored = calendar.find_by_uid(f"followup-{BOARD}@followup-sync")
        assert stored is not None
        assert "ORGANIZER;CN=Alice Ørn:mailto:alice@crm.example" in stored.data.decode().replace(
            '"', ""
        )

    # Each program answers from its own host, to the ORGANIZER address.
    bjorn, carol, dag = (PEOPLE[key][1] for key in CLIENTS)
    send_from(
        "127.0.0.2", smtp_port, bjorn, SERVICE, answer_as("outlook", received["outlook"], bjorn)
    )
    send_from("127.0.0.3", smtp_port, carol, SERVICE, answer_as("gmail", received["gmail"], carol))
    send_from(
        "127.0.0.4",
        smtp_port,
        dag,
        SERVICE,
        answer_as("apple", received["apple"], dag, RID_LOCAL="20260323T100000"),
    )
    # Mallory forges Carol's accepting answer from his own host: SPF and DMARC fail.
    forged = answer_as("gmail", received["gmail"], carol).replace(
        b"PARTSTAT=DECLINED", b"PARTSTAT=ACCEPTED"
    )
    send_from("127.0.0.9", smtp_port, carol, SERVICE, forged)

    outcomes = json.loads(run("invitations", "fetch", "--json", "--config", config))
    by_outcome = sorted((o["attendee"], o["partstat"], o["outcome"]) for o in outcomes)
    assert by_outcome == [
        (bjorn, "accepted", "applied"),
        (carol, "accepted", "held"),
        (carol, "declined", "applied"),
        (dag, "declined", "applied"),
    ]
    rows = {r["email"]: r for r in json.loads(run("invitations", "--json", "--config", config))}
    assert rows[bjorn]["status"] == "accepted"
    assert rows[carol]["status"] == "declined"
    assert rows[dag]["occurrences"] == {"2026-03-23T10:00:00": "declined"}
    (held,) = rows[carol]["held"]
    assert "spf=fail" in held["reason"] and "dmarc=fail" in held["reason"]

    # The next pass takes the answers to the owner's calendar.
    run("sync", "--config", config)
    with DavCalendar.connect(
        calendar_url, username=radicale_server.username, password=radicale_server.password
    ) as calendar:
        stored = calendar.find_by_uid(f"followup-{BOARD}@followup-sync")
        assert stored is not None
        master = next(
            c for c in Calendar.from_ical(stored.data).walk("VEVENT") if "RECURRENCE-ID" not in c
        )
        partstat = {
            str(a).removeprefix("mailto:"): str(a.params["PARTSTAT"]) for a in master["ATTENDEE"]
        }
        assert partstat == {bjorn: "ACCEPTED", carol: "DECLINED", dag: "NEEDS-ACTION"}
