"""The sync worker end to end, against real Radicale and Xandikos servers.

Client edits are written as calendar clients write them: plain HTTP with the ETag they
read (tests/integration/client_edits.py), never through ``sync.stores.caldav`` or our renderer.
Every test starts from the same follow-up set, pushed once to a fresh calendar.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from mappings.documents import load_followup
from mappings.model import FollowUp, uid_for_id
from mappings.occurrences import occurrences
from sync.cli.main import cli as cli_main
from sync.config import Account
from sync.engine.merge import ConflictPolicy
from sync.engine.plan import OnServerDelete
from sync.errors import SideEmpty, TooManyDeletes
from sync.run import PassReport, run_pass
from sync.state import records
from sync.state.db import CollectionState, ConflictRecord, Database, PendingHref, SyncItem
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar
from sync.stores.capabilities import capabilities_for
from tests.dav_signin import dav_transport
from tests.factories import PASSWORD_ENV, account_for, weekly
from tests.integration import client_edits as ce
from tests.integration.client_edits import PlainClient, oslo
from tests.servers import RunningServer, ServerInfo

pytestmark = pytest.mark.server

WEEKLY, STANDUP, REVIEW, TASK, CALL = "2001", "2002", "2003", "2004", "2005"

FOLLOWUPS: list[dict[str, Any]] = [
    weekly(
        WEEKLY,
        title="Weekly status meeting",
        owner="alice",
        exceptions=[
            {
                "original_start": "2026-03-16T10:00:00",
                "start": "2026-03-16T14:00:00",
                "end": "2026-03-16T15:00:00",
            },
            {"original_start": "2026-04-06T10:00:00", "cancelled": True},
        ],
    ),
    {
        "id": STANDUP,
        "title": "Daily standup",
        "location": "Team room 3",
        "start": "2026-01-05T09:00:00",
        "end": "2026-01-05T09:15:00",
        "timezone": "Europe/Oslo",
        "recurrence": {
            "Pattern": "Daily",
            "DayPattern": {"Pattern": "EveryWorkday", "Cycle": 1},
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": 20,
        },
    },
    {
        "id": REVIEW,
        "title": "Monthly review",
        "start": "2026-01-22T13:00:00",
        "end": "2026-01-22T14:30:00",
        "timezone": "Europe/Oslo",
        "recurrence": {
            "Pattern": "Monthly",
            "MonthPattern": {
                "Pattern": "WeekdayOfMonth",
                "Cycle": 1,
                "Weekday": "Thursday",
                "WeekOfMonth": "Fourth",
            },
            "RecurrenceEndType": "EndDate",
            "EndDate": "2026-12-31",
        },
    },
    {
        "id": TASK,
        "kind": "task",
        "title": "Submit expense report",
        "start": "2026-01-30T15:00:00",
        "end": "2026-01-30T16:00:00",
        "timezone": "Europe/Oslo",
        "recurrence": {
            "Pattern": "Monthly",
            "MonthPattern": {"Pattern": "DayOfMonth", "Cycle": 1, "Day": 28},
            "RecurrenceEndType": "Counter",
            "RecurrenceCounter": 6,
        },
    },
    {
        "id": CALL,
        "kind": "call",
        "title": "Call with Nordic Freight",
        "start": "2026-02-03T11:00:00",
        "end": "2026-02-03T11:30:00",
        "timezone": "Europe/Oslo",
    },
]


def followup_set() -> list[FollowUp]:
    docs = [dict(doc) for doc in FOLLOWUPS]
    # The task's first date must be on its pattern (the 28th).
    docs[3] = {**docs[3], "start": "2026-01-28T15:00:00", "end": "2026-01-28T16:00:00"}
    return [load_followup(doc) for doc in docs]


@dataclass
class Env:
    """One account, one state database, one fresh calendar, and a plain client on it."""

    server: ServerInfo
    calendar_url: str
    account: Account
    db: Database
    store: FollowUpStore
    client: PlainClient
    db_path: Path

    def sync(self, **kwargs: Any) -> PassReport:
        report = run_pass(self.account, self.db, **kwargs)
        assert report.ok, report.errors
        return report

    def configure(self, **changes: Any) -> None:
        self.account = self.account.model_copy(update=changes)

    def followup(self, followup_id: str) -> FollowUp:
        found = self.store.get(followup_id)
        assert found is not None, f"follow-up {followup_id} is gone"
        return found

    def resource(self, followup_id: str) -> ce.Fetched:
        return self.client.by_uid(uid_for_id(followup_id))

    def edit_in_crm(self, followup_id: str, **changes: Any) -> FollowUp:
        doc = self.followup(followup_id).to_json_dict()
        doc.update(changes)
        followup = load_followup(doc)
        self.store.put(followup)
        return followup

    def connect(self) -> DavCalendar:
        return DavCalendar.connect(
            self.calendar_url,
            username=self.server.username,
            password=self.server.password,
            transport=dav_transport(self.server),
            server_kind=self.server.kind,
        )

    def conflicts(self) -> list[ConflictRecord]:
        with self.db.session() as session:
            return list(session.scalars(select(ConflictRecord)))

    def uids_on_server(self) -> list[str]:
        return sorted(ce.uid_of(f.data) for f in self.client.all())


@pytest.fixture
def env(
    dav_server: ServerInfo, calendar_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    account = account_for(dav_server, calendar_url, monkeypatch, default_timezone="Europe/Oslo")
    db_path = tmp_path / "state.sqlite"
    db = Database.open(str(db_path))
    yield Env(
        dav_server,
        calendar_url,
        account,
        db,
        FollowUpStore(db),
        PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth),
        db_path,
    )
    db.close()


@pytest.fixture
def synced(env: Env) -> Env:
    """The follow-up set, pushed to the calendar by one pass."""
    env.store.import_followups(followup_set())
    env.sync()
    return env


def starts(followup: FollowUp) -> list[dt.datetime]:
    """Where the follow-up's occurrences are now (moved ones at their new time)."""
    return [local(o.start) for o in occurrences(followup, include_cancelled=False)]  # type: ignore[arg-type]


def exception_at(followup: FollowUp, original: dt.datetime) -> Any:
    for exception in followup.exceptions:
        if exception.original_start == original:
            return exception
    return None


def local(value: dt.datetime) -> dt.datetime:
    """Naive Oslo wall-clock time, the form follow-up documents use."""
    if value.tzinfo is not None:
        value = value.astimezone(ce.OSLO)
    return value.replace(tzinfo=None)


# ======================================================================== push


def test_new_followups_become_one_resource_per_series(env: Env) -> None:
    env.store.import_followups(followup_set())
    report = env.sync()

    assert report.applied.done == {"server create": 5}
    assert env.uids_on_server() == sorted(uid_for_id(f.id) for f in followup_set())
    weekly = env.resource(WEEKLY).calendar
    events = [c for c in weekly.walk("VEVENT")]
    assert len(events) == 2, "master and the moved occurrence travel together"
    override = ce.override_of(weekly, oslo(2026, 3, 16, 10))
    assert override is not None and override["DTSTART"].dt == oslo(2026, 3, 16, 14)
    assert ce.exdates_of(ce.master_of(weekly)) == {oslo(2026, 4, 6, 10).astimezone(dt.UTC)}
    assert [c.name for c in ce.components(env.resource(TASK).data)] == ["VTODO"]

    second = env.sync()
    assert second.plan.actions == ()


def test_changed_followup_is_updated_on_the_server_with_if_match(
    synced: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = synced.resource(STANDUP)
    seen: list[str] = []
    original_update = DavCalendar.update

    def spy(self: DavCalendar, href: str, data: bytes, etag: str) -> str:
        seen.append(etag)
        return original_update(self, href, data, etag)

    monkeypatch.setattr(DavCalendar, "update", spy)
    synced.edit_in_crm(STANDUP, title="Daily standup (new room)", location="Team room 5")
    report = synced.sync()

    assert report.applied.done == {"server update": 1}
    assert seen == [before.etag]
    master = ce.master_of(synced.resource(STANDUP).calendar)
    assert str(master["SUMMARY"]) == "Daily standup (new room)"
    assert str(master["LOCATION"]) == "Team room 5"


def test_followup_deleted_in_crm_is_deleted_on_the_server(synced: Env) -> None:
    synced.store.delete(CALL)
    report = synced.sync()

    assert report.applied.done == {"server delete": 1}
    assert uid_for_id(CALL) not in synced.uids_on_server()
    assert len(synced.uids_on_server()) == 4
    assert synced.sync().plan.actions == ()


# ======================================================================== pull


@pytest.mark.parametrize("style", ["thunderbird", "apple"])
def test_moved_instance_in_a_client_becomes_an_exception(synced: Env, style: str) -> None:
    resource = synced.resource(WEEKLY)
    synced.client.replace(
        resource,
        ce.move_occurrence(
            resource.data,
            oslo(2026, 3, 23, 10),
            oslo(2026, 3, 24, 11),
            oslo(2026, 3, 24, 12),
            style=style,
        ),
    )
    report = synced.sync()

    assert report.applied.done == {"crm update": 1}
    weekly = synced.followup(WEEKLY)
    moved = exception_at(weekly, dt.datetime(2026, 3, 23, 10))
    assert moved is not None and not moved.cancelled
    assert moved.start == dt.datetime(2026, 3, 24, 11)
    assert moved.end in (None, dt.datetime(2026, 3, 24, 12))
    # The exceptions the CRM already had are still there.
    assert exception_at(weekly, dt.datetime(2026, 3, 16, 10)).start == dt.datetime(2026, 3, 16, 14)
    assert exception_at(weekly, dt.datetime(2026, 4, 6, 10)).cancelled
    assert synced.sync().plan.actions == ()


def test_instance_deleted_with_exdate_becomes_a_cancelled_exception(synced: Env) -> None:
    resource = synced.resource(STANDUP)
    synced.client.replace(resource, ce.exdate_occurrence(resource.data, oslo(2026, 1, 7, 9)))
    synced.sync()

    standup = synced.followup(STANDUP)
    assert exception_at(standup, dt.datetime(2026, 1, 7, 9)).cancelled
    assert dt.datetime(2026, 1, 7, 9) not in starts(standup)
    assert synced.sync().plan.actions == ()


def test_instance_cancelled_as_override_becomes_a_cancelled_exception(synced: Env) -> None:
    resource = synced.resource(STANDUP)
    synced.client.replace(
        resource,
        ce.cancel_occurrence(resource.data, oslo(2026, 1, 8, 9), duration=dt.timedelta(minutes=15)),
    )
    synced.sync()

    standup = synced.followup(STANDUP)
    assert exception_at(standup, dt.datetime(2026, 1, 8, 9)).cancelled
    assert dt.datetime(2026, 1, 8, 9) not in starts(standup)
    assert synced.sync().plan.actions == ()


def test_series_edited_in_a_client_updates_the_followup(synced: Env) -> None:
    resource = synced.resource(REVIEW)
    synced.client.replace(
        resource,
        ce.edit_series(
            resource.data,
            summary="Quarterly review",
            start=oslo(2026, 1, 22, 15),
            end=oslo(2026, 1, 22, 16),
            rrule="FREQ=MONTHLY;INTERVAL=3;BYDAY=4TH;COUNT=4",
        ),
    )
    synced.sync()

    review = synced.followup(REVIEW)
    assert review.title == "Quarterly review"
    assert starts(review) == [
        dt.datetime(2026, 1, 22, 15),
        dt.datetime(2026, 4, 23, 15),
        dt.datetime(2026, 7, 23, 15),
        dt.datetime(2026, 10, 22, 15),
    ]
    assert review.end - review.start == dt.timedelta(hours=1)
    assert synced.sync().plan.actions == ()


def test_resource_deleted_in_a_client_deletes_the_followup(synced: Env) -> None:
    resource = synced.resource(CALL)
    synced.client.delete(resource.url, resource.etag)
    report = synced.sync()

    assert report.applied.done == {"crm delete": 1}
    assert synced.store.get(CALL) is None
    assert len(synced.store.all()) == 4
    assert synced.sync().plan.actions == ()


def test_resource_deleted_in_a_client_with_detach_keeps_the_followup_unsynced(synced: Env) -> None:
    synced.configure(on_server_delete=OnServerDelete.detach)
    resource = synced.resource(CALL)
    synced.client.delete(resource.url, resource.etag)
    synced.sync()

    assert synced.followup(CALL).title == "Call with Nordic Freight"
    synced.edit_in_crm(CALL, title="Call with Nordic Freight (rescheduled)")
    synced.sync()
    synced.sync(full=True)
    assert uid_for_id(CALL) not in synced.uids_on_server(), "a detached follow-up is not re-created"
    assert synced.followup(CALL).title == "Call with Nordic Freight (rescheduled)"


def test_event_created_in_a_client_is_imported_only_with_import_new(synced: Env) -> None:
    ignored_uid = "3b0c6e1e-thunderbird-new@example.com"
    synced.client.create(
        "3b0c6e1e.ics",
        ce.new_event(ignored_uid, "Lunch with Carol", oslo(2026, 2, 10, 12), oslo(2026, 2, 10, 13)),
    )
    report = synced.sync()
    assert any("import_new" in reason for _, reason in report.plan.skipped)
    assert synced.sync().plan.actions == ()
    assert [f.id for f in synced.store.all()] == sorted(f.id for f in followup_set())
    assert len(synced.client.list()) == 6, "an ignored event is left alone in the calendar"

    synced.configure(import_new=True)
    wanted_uid = "9f1d-apple-new@example.com"
    synced.client.create(
        "9f1d.ics",
        ce.new_event(
            wanted_uid, "Dinner with Dave", oslo(2026, 2, 11, 18), oslo(2026, 2, 11, 20),
            rrule="FREQ=WEEKLY;COUNT=3",
        ),
    )  # fmt: skip
    report = synced.sync()
    if capabilities_for(synced.server.kind).sync_token:
        assert report.applied.done == {"crm create": 1}
    else:  # no sync-collection (SabreDAV 1.8): every pass is a full one, taking both
        assert report.applied.done == {"crm create": 2}
    imported = [f for f in synced.store.all() if f.effective_uid == wanted_uid]
    assert len(imported) == 1
    assert imported[0].title == "Dinner with Dave"
    assert starts(imported[0]) == [dt.datetime(2026, 2, d, 18) for d in (11, 18, 25)]
    # An event ignored while import_new was off is picked up by the next full pass.
    synced.sync(full=True)
    assert [f.title for f in synced.store.all() if f.effective_uid == ignored_uid] == [
        "Lunch with Carol"
    ]
    assert synced.sync().plan.actions == ()
    assert len(synced.client.list()) == 7, "imported events are not pushed a second time"


def _occurrence_starts_on_server(env: Env) -> list[dt.datetime]:
    """Every occurrence start in the calendar, as local Oslo wall-clock time."""
    import recurring_ical_events

    found: list[dt.datetime] = []
    for fetched in env.client.all():
        for event in recurring_ical_events.of(
            fetched.calendar, components=["VEVENT", "VTODO"]
        ).between(dt.date(2025, 1, 1), dt.date(2028, 1, 1)):
            start = event["DTSTART"].dt
            found.append(local(start.astimezone(ce.OSLO)))
    return sorted(found)


def split_standup_in_a_client(env: Env) -> None:
    """A client moves the standup from 19 January on to 09:30 (RANGE=THISANDFUTURE)."""
    resource = env.resource(STANDUP)
    env.client.replace(
        resource,
        ce.this_and_future_override(
            resource.data, oslo(2026, 1, 19, 9), oslo(2026, 1, 19, 9, 30), oslo(2026, 1, 19, 9, 45)
        ),
    )


def test_this_and_following_as_range_override_splits_the_followup(synced: Env) -> None:
    split_standup_in_a_client(synced)
    synced.sync()

    standups = [f for f in synced.store.all() if f.title == "Daily standup"]
    assert len(standups) == 2, [f.id for f in standups]
    head = synced.followup(STANDUP)
    tail = next(f for f in standups if f.id != STANDUP)
    assert starts(head) == [dt.datetime(2026, 1, d, 9) for d in (5, 6, 7, 8, 9, 12, 13, 14, 15, 16)]
    assert starts(tail)[0] == dt.datetime(2026, 1, 19, 9, 30)
    assert len(starts(tail)) == 10

    # The calendar shows each standup once, however many passes run.
    synced.sync()
    synced.sync()
    on_server = [
        s for s in _occurrence_starts_on_server(synced) if s.time() in (dt.time(9), dt.time(9, 30))
    ]
    assert on_server == sorted(starts(head) + starts(tail))
    assert synced.sync().plan.actions == ()


def test_split_by_the_client_and_a_crm_edit_in_the_same_pass_keeps_both(synced: Env) -> None:
    split_standup_in_a_client(synced)
    head_before = synced.followup(STANDUP)
    synced.store.put(head_before.model_copy(update={"location": "Room 4"}))
    synced.sync()

    head = synced.followup(STANDUP)
    assert head.location == "Room 4"
    assert starts(head) == [dt.datetime(2026, 1, d, 9) for d in (5, 6, 7, 8, 9, 12, 13, 14, 15, 16)]
    tail = next(f for f in synced.store.all() if f.title == "Daily standup" and f.id != STANDUP)
    assert starts(tail)[0] == dt.datetime(2026, 1, 19, 9, 30)
    assert len(starts(tail)) == 10
    synced.sync()
    on_server = [
        s for s in _occurrence_starts_on_server(synced) if s.time() in (dt.time(9), dt.time(9, 30))
    ]
    assert on_server == sorted(starts(head) + starts(tail))
    assert synced.sync().plan.actions == ()


def test_this_and_following_as_google_split_ends_the_old_followup(synced: Env) -> None:
    synced.configure(import_new=True)
    resource = synced.resource(STANDUP)
    old, new = ce.google_split(
        resource.data,
        oslo(2026, 1, 19, 9),
        "standup-tail-google@google.com",
        oslo(2026, 1, 19, 9, 30),
        oslo(2026, 1, 19, 9, 45),
    )
    synced.client.replace(resource, old)
    synced.client.create("standup-tail-google.ics", new)
    synced.sync()

    head = synced.followup(STANDUP)
    assert starts(head) == [dt.datetime(2026, 1, d, 9) for d in (5, 6, 7, 8, 9, 12, 13, 14, 15, 16)]
    tail = next(
        f for f in synced.store.all() if f.effective_uid == "standup-tail-google@google.com"
    )
    assert starts(tail)[0] == dt.datetime(2026, 1, 19, 9, 30)
    assert starts(tail)[-1] == dt.datetime(2026, 1, 30, 9, 30)
    assert synced.sync().plan.actions == ()


# ======================================================================== write-back fidelity


def test_crm_change_after_a_pull_keeps_the_clients_overrides_and_properties(synced: Env) -> None:
    resource = synced.resource(WEEKLY)
    data = ce.move_occurrence(
        resource.data, oslo(2026, 3, 23, 10), oslo(2026, 3, 24, 11), oslo(2026, 3, 24, 12)
    )
    data = ce.cancel_occurrence(data, oslo(2026, 3, 30, 10), duration=dt.timedelta(hours=1))
    data = ce.add_attendee_and_alarm(data)
    synced.client.replace(resource, data)
    synced.sync()
    assert exception_at(synced.followup(WEEKLY), dt.datetime(2026, 3, 30, 10)).cancelled

    synced.edit_in_crm(WEEKLY, title="Weekly status meeting (renamed in CRM)")
    report = synced.sync()
    assert report.applied.done == {"server update": 1}

    after = synced.resource(WEEKLY)
    cal = after.calendar
    master = ce.master_of(cal)
    assert str(master["SUMMARY"]) == "Weekly status meeting (renamed in CRM)"
    moved = ce.override_of(cal, oslo(2026, 3, 23, 10))
    assert moved is not None, "the moved occurrence is still a RECURRENCE-ID override"
    assert moved["DTSTART"].dt == oslo(2026, 3, 24, 11)
    assert "RDATE" not in master
    assert oslo(2026, 3, 23, 10).astimezone(dt.UTC) not in ce.exdates_of(master)
    cancelled = ce.override_of(cal, oslo(2026, 3, 30, 10))
    assert cancelled is not None and str(cancelled["STATUS"]) == "CANCELLED"
    assert oslo(2026, 3, 30, 10).astimezone(dt.UTC) not in ce.exdates_of(master)
    # Unknown properties survive: alarms, X- properties, attendees with their parameters.
    text = after.text.replace("\r\n ", "").replace("\n ", "")
    assert "BEGIN:VALARM" in str(master.to_ical().decode())
    assert "X-MOZ-GENERATION" in str(moved.to_ical().decode())
    assert "BEGIN:VALARM" in str(moved.to_ical().decode())
    assert "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR" in str(master.to_ical().decode())
    attendees = [c.get("ATTENDEE") for c in (master, moved)]
    assert all(a is not None for a in attendees), text
    for attendee in attendees:
        assert str(attendee) == "mailto:bob@example.com"
        assert {k: str(attendee.params[k]) for k in ("CN", "PARTSTAT", "ROLE", "RSVP")} == {
            "CN": "Bob Example",
            "PARTSTAT": "NEEDS-ACTION",
            "ROLE": "REQ-PARTICIPANT",
            "RSVP": "TRUE",
        }
    assert synced.sync().plan.actions == ()


# ======================================================================== conflicts


def test_edits_of_different_occurrences_on_both_sides_are_both_kept(synced: Env) -> None:
    resource = synced.resource(WEEKLY)
    synced.client.replace(
        resource,
        ce.move_occurrence(
            resource.data, oslo(2026, 3, 23, 10), oslo(2026, 3, 23, 13), oslo(2026, 3, 23, 14)
        ),
    )
    weekly = synced.followup(WEEKLY)
    synced.edit_in_crm(
        WEEKLY,
        exceptions=[
            *[e.model_dump(mode="json", exclude_none=True) for e in weekly.exceptions],
            {"original_start": "2026-04-13T10:00:00", "cancelled": True},
        ],
    )
    report = synced.sync()

    assert report.applied.conflicts == 0
    assert synced.conflicts() == []
    merged = synced.followup(WEEKLY)
    assert exception_at(merged, dt.datetime(2026, 3, 23, 10)).start == dt.datetime(2026, 3, 23, 13)
    assert exception_at(merged, dt.datetime(2026, 4, 13, 10)).cancelled
    cal = synced.resource(WEEKLY).calendar
    assert ce.override_of(cal, oslo(2026, 3, 23, 10)) is not None
    assert oslo(2026, 4, 13, 10).astimezone(dt.UTC) in ce.exdates_of(ce.master_of(cal))
    assert synced.sync().plan.actions == ()


@pytest.mark.parametrize(
    ("policy", "client_is_newer", "winner"),
    [
        (ConflictPolicy.crm_wins, True, "crm"),
        (ConflictPolicy.server_wins, False, "server"),
        (ConflictPolicy.newest_wins, True, "server"),
        (ConflictPolicy.newest_wins, False, "crm"),
    ],
)
def test_same_field_edited_on_both_sides_follows_the_policy_and_logs_the_loser(
    synced: Env, policy: ConflictPolicy, client_is_newer: bool, winner: str
) -> None:
    synced.configure(conflict_policy=policy)
    synced.edit_in_crm(CALL, title="Call (CRM title)")
    resource = synced.resource(CALL)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    modified = now + dt.timedelta(minutes=5) if client_is_newer else now - dt.timedelta(hours=2)
    synced.client.replace(
        resource, ce.edit_series(resource.data, summary="Call (client title)", modified=modified)
    )
    report = synced.sync()

    kept, lost = ("Call (CRM title)", "Call (client title)")
    if winner == "server":
        kept, lost = lost, kept
    assert report.applied.conflicts == 1
    assert synced.followup(CALL).title == kept
    assert str(ce.master_of(synced.resource(CALL).calendar)["SUMMARY"]) == kept

    result = CliRunner().invoke(
        cli_main, ["conflicts", "--json", "--database", str(synced.db_path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [(r["followup_id"], r["part"], r["winner"], r["kept"], r["lost"]) for r in records] == [
        (CALL, "title", winner, kept, lost)
    ]
    assert records[0]["policy"] == policy.value
    assert synced.sync().plan.actions == ()


def test_resource_changed_between_plan_and_write_is_reread_and_converges(
    synced: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced.edit_in_crm(WEEKLY, title="Weekly status meeting (CRM)")
    original_update = DavCalendar.update
    interfered: list[str] = []
    writes: list[str] = []

    def client_writes_first(self: DavCalendar, href: str, data: bytes, etag: str) -> str:
        writes.append(etag)
        if not interfered:
            current = synced.resource(WEEKLY)
            synced.client.replace(
                current,
                ce.move_occurrence(
                    current.data,
                    oslo(2026, 3, 23, 10),
                    oslo(2026, 3, 23, 15),
                    oslo(2026, 3, 23, 16),
                ),
            )
            interfered.append(current.etag)
        return original_update(self, href, data, etag)

    monkeypatch.setattr(DavCalendar, "update", client_writes_first)
    report = synced.sync()

    assert interfered, "the plan wrote to the server"
    assert len(writes) == 2 and writes[0] == interfered[0], "refused once (412), then re-planned"
    assert writes[1] != writes[0]
    weekly = synced.followup(WEEKLY)
    assert weekly.title == "Weekly status meeting (CRM)"
    assert exception_at(weekly, dt.datetime(2026, 3, 23, 10)).start == dt.datetime(2026, 3, 23, 15)
    cal = synced.resource(WEEKLY).calendar
    assert str(ce.master_of(cal)["SUMMARY"]) == "Weekly status meeting (CRM)"
    moved = ce.override_of(cal, oslo(2026, 3, 23, 10))
    assert moved is not None and moved["DTSTART"].dt == oslo(2026, 3, 23, 15)
    assert report.applied.conflicts == 0
    monkeypatch.setattr(DavCalendar, "update", original_update)
    assert synced.sync().plan.actions == ()


# ======================================================================== incremental


def test_idle_pass_costs_at_most_two_requests_and_writes_nothing(synced: Env) -> None:
    with synced.connect() as calendar:
        report = run_pass(synced.account, synced.db, calendar=calendar)
        assert report.ok
        assert calendar.stats.requests <= 2, calendar.stats
        assert not {"PUT", "DELETE"} & set(calendar.stats.by_method)
    assert report.plan.actions == ()


def test_changed_series_is_fetched_with_multiget_not_one_get_per_object(synced: Env) -> None:
    for followup_id in (WEEKLY, STANDUP):
        resource = synced.resource(followup_id)
        synced.client.replace(
            resource, ce.edit_series(resource.data, summary=f"Edited {followup_id}")
        )
    with synced.connect() as calendar:
        report = run_pass(synced.account, synced.db, calendar=calendar)
        methods = dict(calendar.stats.by_method)
        caps = calendar.capabilities
        # Radicale: getlastmodified first (capabilities.lastmodified_covers_members).
        probe = {"PROPFIND": 1} if caps.lastmodified_covers_members else {}
        # sync-collection REPORT, or (SabreDAV 1.8: none) the href/ETag PROPFIND Depth 1.
        listing = {"REPORT": 1} if caps.sync_token else {"PROPFIND": 1}
    assert report.ok
    assert report.fetched == 2
    assert "GET" not in methods
    # The listing, then one calendar-multiget for both.
    expected = Counter(probe) + Counter(listing) + Counter({"REPORT": 1})
    assert methods == dict(expected), methods
    assert synced.followup(WEEKLY).title == f"Edited {WEEKLY}"


def test_invalid_stored_sync_token_leads_to_a_full_listing(synced: Env) -> None:
    if not capabilities_for(synced.server.kind).sync_token:
        pytest.skip(f"{synced.server.kind} has no sync-collection: every pass is a full one")
    with synced.db.sessions.begin() as session:
        state = session.get(CollectionState, synced.account.name)
        assert state is not None and state.sync_token
        state.sync_token = "http://radicale.org/ns/sync/garbage-token-0000"
    resource = synced.resource(CALL)
    synced.client.replace(resource, ce.edit_series(resource.data, summary="Call (edited)"))
    report = synced.sync()

    assert report.mode == "full"
    assert synced.followup(CALL).title == "Call (edited)"
    again = synced.sync()
    assert again.mode == "incremental" and again.plan.actions == ()


# ======================================================================== safety


def test_calendar_emptied_by_a_client_stops_the_pass_and_keeps_every_followup(synced: Env) -> None:
    for url, etag in synced.client.list().items():
        synced.client.delete(url, etag)
    with pytest.raises(SideEmpty):
        run_pass(synced.account, synced.db)
    assert len(synced.store.all()) == 5
    with pytest.raises(SideEmpty):
        run_pass(synced.account, synced.db, full=True)
    assert len(synced.store.all()) == 5


def test_too_many_deletions_stop_the_pass_until_forced(env: Env) -> None:
    calls = [
        load_followup(
            {
                "id": f"call-{n}",
                "kind": "call",
                "title": f"Call {n}",
                "start": f"2026-02-{n + 1:02d}T11:00:00",
                "end": f"2026-02-{n + 1:02d}T11:30:00",
                "timezone": "Europe/Oslo",
            }
        )
        for n in range(5)
    ]
    env.store.import_followups([*followup_set(), *calls])
    env.sync()
    for followup_id in [f"call-{n}" for n in range(5)] + [CALL]:
        resource = env.resource(followup_id)
        env.client.delete(resource.url, resource.etag)

    with pytest.raises(TooManyDeletes):
        run_pass(env.account, env.db)
    assert len(env.store.all()) == 10
    with pytest.raises(TooManyDeletes):
        run_pass(env.account, env.db)

    report = env.sync(force_delete=True)
    assert report.applied.done == {"crm delete": 6}
    assert sorted(f.id for f in env.store.all()) == sorted(
        f.id for f in followup_set() if f.id != CALL
    )


def test_unreadable_resource_is_reported_retried_and_picked_up_once_fixed(synced: Env) -> None:
    weekly = synced.resource(WEEKLY)
    synced.client.replace(weekly, ce.break_resource(weekly.data, server_kind=synced.server.kind))
    call = synced.resource(CALL)
    synced.client.replace(call, ce.edit_series(call.data, summary="Call (edited)"))

    report = run_pass(synced.account, synced.db)
    assert not report.ok
    assert [href for href, _ in report.read_errors] == [ce_path(weekly.url)]
    assert synced.followup(CALL).title == "Call (edited)", "the rest of the pass goes on"
    assert synced.followup(WEEKLY).title == "Weekly status meeting", "nothing taken from a bad item"
    with synced.db.session() as session:
        pending = list(session.scalars(select(PendingHref.href)))
    assert pending == [ce_path(weekly.url)]

    report = run_pass(synced.account, synced.db)
    assert [href for href, _ in report.read_errors] == [ce_path(weekly.url)], "retried next pass"

    broken = synced.resource(WEEKLY)
    fixed = ce.edit_series(
        broken.data, start=oslo(2026, 3, 2, 10), end=oslo(2026, 3, 2, 11), summary="Weekly (fixed)"
    )
    synced.client.replace(broken, fixed)
    synced.sync()
    assert synced.followup(WEEKLY).title == "Weekly (fixed)"
    with synced.db.session() as session:
        assert list(session.scalars(select(PendingHref.href))) == []


def ce_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)


# ======================================================================== crash recovery


def test_lost_state_row_after_a_write_is_recognised_without_a_duplicate(synced: Env) -> None:
    with synced.db.sessions.begin() as session:
        session.execute(delete(SyncItem).where(SyncItem.followup_id.in_([WEEKLY, TASK])))
    synced.sync(full=True)
    assert synced.uids_on_server() == sorted(uid_for_id(f.id) for f in followup_set())
    with synced.db.session() as session:
        assert len(list(session.scalars(select(SyncItem)))) == 5
    assert synced.sync().plan.actions == ()


def test_crash_between_create_and_record_leaves_no_duplicate(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.store.import_followups(followup_set())

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("process killed after the PUT")

    # Every record goes through sync.state.records: the record after the PUTs fails there.
    with monkeypatch.context() as patched:
        patched.setattr(records, "record_agreed", crash)
        patched.setattr(records, "record_agreed_many", crash)
        with pytest.raises(KeyboardInterrupt):
            run_pass(env.account, env.db)
    # The writes of one batch are on the server, none recorded (sync.engine.apply.RECORD_BATCH).
    assert len(env.client.list()) == len(followup_set())
    with env.db.session() as session:
        assert list(session.scalars(select(SyncItem))) == []

    env.sync()
    assert env.uids_on_server() == sorted(uid_for_id(f.id) for f in followup_set())
    assert env.sync().plan.actions == ()


# ======================================================================== command line


def test_cli_import_sync_dry_run_export_and_conflicts(
    radicale_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line once, against Radicale."""
    dav_server = radicale_server.info()
    calendar_url = radicale_server.make_calendar(f"cli-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv(PASSWORD_ENV, dav_server.password or "")
    database = str(tmp_path / "cli.sqlite")
    source = tmp_path / "followups.json"
    source.write_text(json.dumps([f.to_json_dict() for f in followup_set()]))
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(cli_main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    server_args = [
        "--url", dav_server.url, "--username", dav_server.username or "",
        "--password-env", PASSWORD_ENV, "--calendar-url", calendar_url,
        "--server-kind", dav_server.kind, "--database", database,
    ]  # fmt: skip
    assert "5 new" in run("import", str(source), "--database", database).output
    client = PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)

    dry = run("sync", *server_args, "--dry-run")
    assert "dry run" in dry.output
    assert dry.output.count("create in the calendar:") == 5
    assert client.list() == {}

    done = run("sync", *server_args)
    assert "5 created" in done.output
    assert len(client.list()) == 5

    call = client.by_uid(uid_for_id(CALL))
    client.replace(call, ce.edit_series(call.data, summary="Call (from Thunderbird)"))
    run("sync", *server_args)
    exported = json.loads(run("export", "--database", database).output)
    assert {d["id"]: d["title"] for d in exported}[CALL] == "Call (from Thunderbird)"

    assert json.loads(run("conflicts", "--json", "--database", database).output) == []
    assert "no conflicts" in run("conflicts", "--database", database).output
