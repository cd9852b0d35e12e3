# ruff: noqa: F811  (the smtp fixture imported from test_invitations is a parameter here)
"""RFC 6638 server-side scheduling end to end: DAViCal delivers, we send no email. Never both.

Interop tier (DAViCal): runs when ``FOLLOWUP_SYNC_SERVERS`` lists davical (``make
test-interop``); the ``davical_server`` fixture skips it otherwise, as for every other
DAViCal test. alice is the organizer (her DAViCal calendar-user address is
mailto:alice@example.com, from the ``usr`` row tests/servers_debian.py creates), bob the
attendee (mailto:bob@example.com, with DAViCal's default calendar to be scheduled into).

Everything bob sees is read as bob, through caldav (not through our client): his
scheduling inbox and his calendar. Every mail we would send goes to a real SMTP server
(aiosmtpd on 127.0.0.1) that must stay empty in server mode, and in email mode it is the
only way bob hears of the meeting.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import caldav
import pytest
from caldav.lib.error import NotFoundError
from icalendar import Calendar

from mappings.documents import load_followup
from mappings.model import uid_for_id
from sync.config import Account
from sync.invitations import replies, scheduling, send
from sync.mail_config import MailSettings
from sync.run import PassReport, run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar
from tests.factories import weekly
from tests.integration.test_invitations import SmtpSink, itip_of, smtp  # noqa: F401
from tests.servers import RunningServer

pytestmark = pytest.mark.server

ALICE = "alice@example.com"
BOB = "bob@example.com"
PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"
OSLO = ZoneInfo("Europe/Oslo")


def series(fid: str, **changes: Any) -> dict[str, Any]:
    """Five Monday meetings, alice organizing, bob invited."""
    doc = weekly(
        fid,
        title="Planning",
        count=5,
        location="Room 2",
        organizer={"name": "Alice Example", "email": ALICE},
        participants=[{"name": "Bob Example", "email": BOB}],
    )
    doc.update(changes)
    return doc


@dataclass
class Scheduling:
    server: RunningServer
    account: Account
    db: Database
    store: FollowUpStore
    mail: MailSettings
    sink: SmtpSink
    calendar_url: str
    fid: str

    @property
    def uid(self) -> str:
        return uid_for_id(self.fid)

    def put(self, **changes: Any) -> None:
        """A CRM edit: the follow-up as it is now (answers included), with ``changes``."""
        current = self.store.get(self.fid)
        doc = current.to_json_dict() if current is not None else series(self.fid)
        self.store.put(load_followup({**doc, **changes}))

    def sync(self) -> PassReport:
        report = run_pass(self.account, self.db)
        assert report.ok, report.errors
        return report

    def send(self) -> list[Any]:
        send.send_pending(self.mail, self.db)
        return self.sink.take()

    def connect(self) -> DavCalendar:
        return DavCalendar.connect(
            self.calendar_url,
            username=self.server.username,
            password=self.server.password,
            server_kind="davical",
        )

    def alice_copy(self) -> Calendar:
        with self.connect() as calendar:
            found = calendar.find_by_uid(self.uid)
            assert found is not None
            return Calendar.from_ical(found.data)

    # --- bob, through caldav ---------------------------------------------------------------

    def bob(self) -> caldav.DAVClient:
        return caldav.DAVClient(
            self.server.base_url.rstrip("/") + "/caldav.php/",
            username="bob",
            password="secret",
            features="davical",
        )

    def bob_inbox(self) -> list[Calendar]:
        """The iTIP messages for this follow-up in bob's scheduling inbox, oldest first."""
        with self.bob() as client:
            items = list(client.principal().schedule_inbox().get_items())
            found = []
            for item in items:
                cal = Calendar.from_ical(item.data)
                if any(str(c.get("UID")) == self.uid for c in cal.walk("VEVENT")):
                    found.append(cal)
        return found

    def bob_copy(self) -> Calendar | None:
        """The event as it stands in bob's calendar (None: he has none)."""
        with self.bob() as client:
            for calendar in client.principal().calendars():
                try:
                    event = calendar.event_by_uid(self.uid)
                except NotFoundError:
                    continue
                return Calendar.from_ical(event.data)
        return None

    def bob_answers(self, partstat: str) -> None:
        """What bob's calendar program does: accept (or decline) the invitation in his inbox."""
        with self.bob() as client:
            inbox = client.principal().schedule_inbox()
            item = next(
                i for i in inbox.get_items() if self.uid in str(i.data) and i.is_invite_request()
            )
            {"ACCEPTED": item.accept_invite, "DECLINED": item.decline_invite}[partstat]()


def attendee(cal: Calendar, address: str, *, component: int = 0) -> Any:
    event = cal.walk("VEVENT")[component]
    found = [a for a in _as_list(event.get("ATTENDEE")) if str(a).lower() == f"mailto:{address}"]
    assert len(found) == 1, event.to_ical().decode()
    return found[0]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@pytest.fixture
def make(
    davical_server: RunningServer,
    tmp_path: Path,
    smtp: tuple[SmtpSink, int],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], Scheduling]]:
    sink, port = smtp
    monkeypatch.setenv(PASSWORD_ENV, davical_server.password or "")
    scheduling.forget_probes()
    made: list[Database] = []

    def factory(scheduling: str) -> Scheduling:
        sink.take()
        calendar_url = davical_server.make_calendar(f"sched-{uuid.uuid4().hex[:8]}")
        account = Account(
            name="alice",
            url=davical_server.base_url.rstrip("/") + "/caldav.php/",
            username=davical_server.username,
            password_env=PASSWORD_ENV,
            calendar_url=calendar_url,
            server_kind="davical",
            default_timezone="Europe/Oslo",
            scheduling=scheduling,  # type: ignore[arg-type]
        )
        db = Database.open(str(tmp_path / f"state-{scheduling}.sqlite"))
        made.append(db)
        mail = MailSettings.model_validate(
            {"host": "127.0.0.1", "port": port, "security": "none", "from": f"Alice <{ALICE}>"}
        )
        # A follow-up id no other test on this DAViCal uses: DAViCal finds the organizer's
        # copy of a REPLY by UID across all of alice's calendars.
        fid = f"s{uuid.uuid4().hex[:10]}"
        return Scheduling(
            davical_server, account, db, FollowUpStore(db), mail, sink, calendar_url, fid
        )

    yield factory
    for db in made:
        db.close()


def test_davical_schedules_the_invitation_and_no_email_is_sent(
    make: Callable[[str], Scheduling],
) -> None:
    env = make("auto")

    # (a) auto probes the server: DAViCal has a schedule-outbox and a mailto: address.
    with env.connect() as calendar:
        assert scheduling.scheduling_mode(env.account, calendar) == "server"
    scheduling.forget_probes()  # the pass probes again on its own

    env.put()
    env.sync()

    # Our copy leaves scheduling to the server: no SCHEDULE-AGENT=CLIENT, and DAViCal
    # answered for bob with SCHEDULE-STATUS 1.2 (delivered).
    bob_on_ours = attendee(env.alice_copy(), BOB)
    assert "SCHEDULE-AGENT" not in bob_on_ours.params
    assert str(bob_on_ours.params.get("SCHEDULE-STATUS")) == "1.2"

    # (b) No email, and nothing waits in the outbox.
    assert env.send() == []
    assert replies.outbox(env.db) == []

    # (c) bob has the invitation: a REQUEST in his inbox, the series in his calendar.
    (request,) = env.bob_inbox()
    assert str(request["METHOD"]) == "REQUEST"
    copy = env.bob_copy()
    assert copy is not None
    master = copy.walk("VEVENT")[0]
    assert master["DTSTART"].dt == dt.datetime(2026, 3, 2, 10, tzinfo=OSLO)
    assert "FREQ=WEEKLY" in master["RRULE"].to_ical().decode()
    assert str(attendee(copy, BOB).params["PARTSTAT"]) == "NEEDS-ACTION"

    # (d) bob accepts in his calendar program; the next pull brings his answer to the CRM.
    env.bob_answers("ACCEPTED")
    assert str(attendee(env.alice_copy(), BOB).params["PARTSTAT"]) == "ACCEPTED"
    env.sync()
    followup = env.store.get(env.fid)
    assert followup is not None
    assert followup.participant(BOB).status.value == "accepted"  # type: ignore[union-attr]
    assert env.send() == [] and replies.outbox(env.db) == []

    # (e) The series moves two hours later: the server tells bob (his copy moves), and
    # asks him again (PARTSTAT back to NEEDS-ACTION); the pull brings that back too.
    env.put(start="2026-03-02T12:00:00", end="2026-03-02T13:00:00")
    env.sync()
    copy = env.bob_copy()
    assert copy is not None
    assert copy.walk("VEVENT")[0]["DTSTART"].dt == dt.datetime(2026, 3, 2, 12, tzinfo=OSLO)
    assert str(attendee(copy, BOB).params["PARTSTAT"]) == "NEEDS-ACTION"
    env.sync()
    followup = env.store.get(env.fid)
    assert followup is not None
    assert followup.participant(BOB).status.value == "needs-action"  # type: ignore[union-attr]

    # The series is deleted: the server cancels it for bob.
    env.store.delete(env.fid)
    env.sync()
    assert env.bob_copy() is None
    assert any(str(cal["METHOD"]) == "CANCEL" for cal in env.bob_inbox())
    assert env.send() == [] and replies.outbox(env.db) == []


def test_occurrence_changes_davical_cannot_schedule_go_by_email_once(
    make: Callable[[str], Scheduling],
) -> None:
    """DAViCal carries only the series to an attendee who has it (no EXDATE, no overrides) and
    answers 500 to an override naming its own attendee; such a follow-up goes by email."""
    env = make("auto")
    env.put()
    env.sync()
    assert env.send() == []
    (delivered,) = env.bob_inbox()  # the invitation, from the server

    # One occurrence is cancelled: the write succeeds, the server is told to stay out of it
    # (SCHEDULE-AGENT=CLIENT), and bob gets one CANCEL for that date, by email.
    cancelled = [{"original_start": "2026-03-16T10:00:00", "cancelled": True}]
    env.put(exceptions=cancelled)
    env.sync()
    assert str(attendee(env.alice_copy(), BOB).params.get("SCHEDULE-AGENT")) == "CLIENT"
    (mail,) = env.send()
    assert mail.recipients == [BOB]
    cancel = itip_of(mail, "CANCEL", organizer=ALICE)
    (component,) = cancel.walk("VEVENT")
    assert component["RECURRENCE-ID"].dt == dt.datetime(2026, 3, 16, 10, tzinfo=OSLO)
    assert int(component["SEQUENCE"]) == 1
    assert [c.to_ical() for c in env.bob_inbox()] == [delivered.to_ical()]  # server: silent

    # One occurrence moves: one REQUEST with the override, by email; no 500 from DAViCal.
    moved = {
        "original_start": "2026-03-09T10:00:00",
        "start": "2026-03-09T13:00:00",
        "end": "2026-03-09T14:00:00",
    }
    env.put(exceptions=[*cancelled, moved])
    env.sync()
    (mail,) = env.send()
    request = itip_of(mail, "REQUEST", organizer=ALICE)
    override = next(c for c in request.walk("VEVENT") if "RECURRENCE-ID" in c)
    assert override["DTSTART"].dt == dt.datetime(2026, 3, 9, 13, tzinfo=OSLO)
    assert int(override["SEQUENCE"]) == 2
    assert [c.to_ical() for c in env.bob_inbox()] == [delivered.to_ical()]

    # Deleted: one CANCEL by email, none from the server.
    env.store.delete(env.fid)
    env.sync()
    (mail,) = env.send()
    assert "RECURRENCE-ID" not in itip_of(mail, "CANCEL", organizer=ALICE).walk("VEVENT")[0]
    assert [c.to_ical() for c in env.bob_inbox()] == [delivered.to_ical()]
    assert env.send() == []


def test_scheduling_email_overrides_the_probe_bob_gets_one_invitation_not_two(
    make: Callable[[str], Scheduling],
) -> None:
    env = make("email")
    env.put()
    env.sync()

    # Our copy tells DAViCal to keep out: it neither delivers nor answers for bob.
    on_ours = attendee(env.alice_copy(), BOB)
    assert str(on_ours.params["SCHEDULE-AGENT"]) == "CLIENT"
    assert "SCHEDULE-STATUS" not in on_ours.params
    # Exactly one invitation: ours, by email. Nothing in bob's inbox or calendar.
    (mail,) = env.send()
    assert mail.recipients == [BOB]
    assert int(itip_of(mail, "REQUEST", organizer=ALICE).walk("VEVENT")[0]["SEQUENCE"]) == 0
    assert env.bob_inbox() == []
    assert env.bob_copy() is None
    env.sync()
    assert env.send() == []

    # A reschedule and the deletion: one email each, still nothing from the server.
    env.put(start="2026-03-02T12:00:00", end="2026-03-02T13:00:00")
    env.sync()
    (mail,) = env.send()
    assert int(itip_of(mail, "REQUEST", organizer=ALICE).walk("VEVENT")[0]["SEQUENCE"]) == 1
    env.store.delete(env.fid)
    env.sync()
    (mail,) = env.send()
    itip_of(mail, "CANCEL", organizer=ALICE)
    assert env.bob_inbox() == []
    assert env.bob_copy() is None
