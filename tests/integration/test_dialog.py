"""The recurrence dialog's operations end to end, against real Radicale and Xandikos.

For each operation: store a weekly series, sync it, apply the operation, sync again, and
read the calendar the way a client does (plain HTTP, recurring-ical-events over the
fetched iCalendar): the occurrences must be what the operation meant. Then the same
edit is made the way a calendar client makes it, by plain HTTP on a second copy of the
series in a second calendar; pulling that back must give the same occurrences as the
operation did on the CRM side.

Conflict flags are checked with real busy events PUT on the server, once through a
free-busy-query and once through a time-range calendar-query (forced via capabilities).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import recurring_ical_events
from icalendar import Calendar

from mappings.documents import load_followup
from mappings.model import uid_for_id
from mappings.occurrences import occurrences
from sync.config import Account
from sync.dialog import DialogService, calculate_dates, validate_dates
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar, ResponseTooLarge
from tests.dav_signin import dav_transport
from tests.factories import account_for, weekly
from tests.integration import client_edits as ce
from tests.integration.client_edits import OSLO, PlainClient, oslo
from tests.servers import ServerInfo

pytestmark = pytest.mark.server

PASSWORD_ENV = "FOLLOWUP_SYNC_DIALOG_TEST_PASSWORD"
ID = "3001"

SERIES = weekly(ID, owner="alice")

#: The series' Mondays; 30 March is after the switch to summer time, still 10:00 local.
MONDAYS = [dt.datetime(2026, 3, 2, 10) + dt.timedelta(weeks=i) for i in range(10)]

Seen = list[tuple[dt.datetime, dt.datetime, str]]


@dataclass
class Side:
    """One calendar with its own state database: a CRM and the calendar it syncs to."""

    account: Account
    db: Database
    store: FollowUpStore
    client: PlainClient

    def sync(self) -> None:
        report = run_pass(self.account, self.db)
        assert report.ok, report.errors

    def seen_by_client(self) -> Seen:
        """Every occurrence in the calendar as a client expands it, Oslo wall-clock time."""
        seen: Seen = []
        for fetched in self.client.all():  # type: ignore[attr-defined]
            cal = Calendar.from_ical(fetched.data)
            for event in recurring_ical_events.of(cal).between(
                dt.datetime(2026, 1, 1), dt.datetime(2027, 1, 1)
            ):
                seen.append(
                    (
                        _local(event["DTSTART"].dt),
                        _local(event["DTEND"].dt),
                        str(event.get("SUMMARY", "")),
                    )
                )
        return sorted(seen)

    def seen_in_store(self) -> Seen:
        seen: Seen = []
        for followup in self.store.all():
            for o in occurrences(followup, include_cancelled=False):
                seen.append((_local(o.start), _local(o.end), o.title))  # type: ignore[arg-type]
        return sorted(seen)


def _local(value: dt.datetime) -> dt.datetime:
    return value.astimezone(OSLO).replace(tzinfo=None)


def _side(
    server: ServerInfo, calendar_url: str, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Side:
    account = account_for(
        server,
        calendar_url,
        monkeypatch,
        password_env=PASSWORD_ENV,
        default_timezone="Europe/Oslo",
        owners=["alice"],
    )
    db = Database.open(str(db_path))
    return Side(
        account,
        db,
        FollowUpStore(db),
        PlainClient(calendar_url, server.username, server.password, server.auth),
    )


@pytest.fixture
def sides(
    dav_server: ServerInfo,
    calendar_url: str,
    second_calendar: tuple[ServerInfo, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Side, Side]]:
    """Two copies of the series in two calendars: one for our operation, one for a client."""
    ours = _side(dav_server, calendar_url, tmp_path / "ours.sqlite", monkeypatch)
    theirs = _side(*second_calendar, tmp_path / "theirs.sqlite", monkeypatch)
    for side in (ours, theirs):
        side.store.put(load_followup(SERIES))
        side.sync()
    yield ours, theirs
    ours.db.close()
    theirs.db.close()


def at(day: int, month: int = 3, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute)


def series(
    starts: list[dt.datetime],
    *,
    length: dt.timedelta = dt.timedelta(hours=1),
    title: str = "Weekly status",
) -> Seen:
    return sorted((s, s + length, title) for s in starts)


# --- the client's edits, as bytes -> bytes ----------------------------------------------------


def client_add_rdate(data: bytes, when: dt.datetime) -> bytes:
    cal = Calendar.from_ical(data)
    master = ce.master_of(cal)
    master.add("rdate", [when])
    ce._touch(master)
    return bytes(cal.to_ical())


def client_until(data: bytes, last: dt.datetime) -> bytes:
    """'End the series' in a client: the rule gets an UNTIL instead of its COUNT."""
    until = last.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return ce.edit_series(data, rrule=f"FREQ=WEEKLY;BYDAY=MO;UNTIL={until}")


@dataclass(frozen=True)
class Case:
    name: str
    operation: Callable[[DialogService], object]
    expected: Seen
    client_edit: Callable[[bytes], bytes]


CASES = [
    Case(
        "move-later",
        lambda d: d.move(ID, dt.date(2026, 3, 9), +1),
        series([*MONDAYS[:1], at(10), *MONDAYS[2:]]),
        lambda data: ce.move_occurrence(
            data, oslo(2026, 3, 9, 10), oslo(2026, 3, 10, 10), oslo(2026, 3, 10, 11)
        ),
    ),
    Case(
        "add-date",
        lambda d: d.add_date(ID, dt.date(2026, 3, 11)),
        series([*MONDAYS, at(11)]),
        lambda data: client_add_rdate(data, oslo(2026, 3, 11, 10)),
    ),
    Case(
        "delete-date",
        lambda d: d.delete_date(ID, dt.date(2026, 3, 16)),
        series([m for m in MONDAYS if m != at(16)]),
        lambda data: ce.exdate_occurrence(data, oslo(2026, 3, 16, 10)),
    ),
    Case(
        "only-this",
        lambda d: d.change(
            ID, at(16), mode="only-this", start=at(16, hour=14), end=at(16, hour=15)
        ),
        series([*MONDAYS[:2], at(16, hour=14), *MONDAYS[3:]]),
        lambda data: ce.move_occurrence(
            data, oslo(2026, 3, 16, 10), oslo(2026, 3, 16, 14), oslo(2026, 3, 16, 15)
        ),
    ),
    Case(
        "this-and-following",
        lambda d: d.change(
            ID, at(16), mode="this-and-following", start=at(16, hour=14), end=at(16, hour=15)
        ),
        series([*MONDAYS[:2], *(m.replace(hour=14) for m in MONDAYS[2:])]),
        lambda data: ce.this_and_future_override(
            data, oslo(2026, 3, 16, 10), oslo(2026, 3, 16, 14), oslo(2026, 3, 16, 15)
        ),
    ),
    Case(
        "stop-repeating",
        lambda d: d.stop(ID, dt.date(2026, 3, 16)),
        series(MONDAYS[:3]),
        lambda data: client_until(data, oslo(2026, 3, 16, 10)),
    ),
    Case(
        "delete-only-this",
        lambda d: d.delete(ID, at(23), "only-this"),
        series([m for m in MONDAYS if m != at(23)]),
        lambda data: ce.cancel_occurrence(
            data, oslo(2026, 3, 23, 10), duration=dt.timedelta(hours=1)
        ),
    ),
    Case(
        "delete-this-and-following",
        lambda d: d.delete(ID, at(23), "this-and-following"),
        series(MONDAYS[:3]),
        lambda data: client_until(data, oslo(2026, 3, 16, 10)),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_operation_reaches_the_calendar_and_a_client_edit_comes_back_the_same(
    sides: tuple[Side, Side], case: Case
) -> None:
    ours, theirs = sides
    assert ours.seen_by_client() == series(MONDAYS)

    case.operation(DialogService(ours.db))
    assert ours.seen_in_store() == case.expected, "the stored result is what the operation meant"
    ours.sync()
    assert ours.seen_by_client() == case.expected, "a client reading the calendar sees the same"
    ours.sync()  # and it is stable: nothing comes back to change it
    assert ours.seen_in_store() == case.expected

    fetched = theirs.client.by_uid(uid_for_id(ID))
    theirs.client.replace(fetched, case.client_edit(fetched.data))
    theirs.sync()
    assert theirs.seen_in_store() == ours.seen_in_store(), (
        "the client's edit pulled back means the same"
    )
    assert [f.id for f in theirs.store.all()] == [f.id for f in ours.store.all()]


def test_stop_repeating_on_the_first_occurrence_leaves_one_event(sides: tuple[Side, Side]) -> None:
    ours, _ = sides
    DialogService(ours.db).stop(ID, at(2))
    ours.sync()
    [resource] = ours.client.all()  # type: ignore[attr-defined]
    [event] = [c for c in resource.calendar.walk("VEVENT")]
    assert "RRULE" not in event
    assert ours.seen_by_client() == series(MONDAYS[:1])


def test_deleting_the_whole_series_from_its_first_occurrence_empties_the_calendar(
    sides: tuple[Side, Side],
) -> None:
    ours, _ = sides
    outcome = DialogService(ours.db).delete(ID, at(2), "this-and-following")
    assert outcome.deleted == [ID]
    ours.sync()
    assert ours.client.all() == []


# --- conflicts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("free_busy", [True, False], ids=["free-busy-query", "calendar-query"])
def test_conflicts_come_from_busy_events_on_the_server_and_other_followups(
    sides: tuple[Side, Side], dav_server: ServerInfo, free_busy: bool
) -> None:
    if free_busy and dav_server.kind == "sogo":  # interop tier: SOGo answers 501
        pytest.skip("SOGo 5.8.0 has no free-busy-query (501); capabilities.free_busy_query")
    ours, _ = sides
    # A colleague's meeting in the calendar on 9 March, overlapping the 10:00 series...
    ours.client.create(
        "dentist.ics",
        ce.new_event("dentist-1", "Dentist", oslo(2026, 3, 9, 10, 30), oslo(2026, 3, 9, 11, 30)),
    )
    # ...an early gym session that does not overlap, and a transparent (free) event that does.
    ours.client.create(
        "gym.ics", ce.new_event("gym-1", "Gym", oslo(2026, 3, 16, 7), oslo(2026, 3, 16, 8))
    )
    ours.client.create(
        "free.ics", _transparent("free-1", "Reading", oslo(2026, 3, 16, 10), oslo(2026, 3, 16, 11))
    )
    # Another follow-up of the same owner in the store, synced too, on 23 March.
    ours.store.put(
        load_followup(
            {
                "id": "3002",
                "title": "Lunch with Bob",
                "start": "2026-03-23T10:45:00",
                "end": "2026-03-23T11:15:00",
                "timezone": "Europe/Oslo",
                "owner": "alice",
            }
        )
    )
    ours.sync()
    calendar = DavCalendar.connect(
        ours.account.calendar_url or "",
        username=dav_server.username,
        password=dav_server.password,
        transport=dav_transport(dav_server),
        server_kind=dav_server.kind,
        capability_overrides={"free_busy_query": free_busy},
    )
    followup = ours.store.get(ID)
    assert followup is not None
    before = calendar.stats.copy()
    infos = calculate_dates(followup, db=ours.db, calendar=calendar)
    assert calendar.stats.since(before).by_method == {"REPORT": 1}, (
        "one request for the whole series"
    )

    by_date = {i.Date: i for i in infos}
    assert [i.Date for i in infos] == [m.date() for m in MONDAYS]
    assert [i.Description for i in infos] == ["Monday"] * 10
    flagged = sorted(d for d, i in by_date.items() if i.IsConflict)
    assert flagged == [dt.date(2026, 3, 9), dt.date(2026, 3, 23)], "own occurrences never clash"
    dentist = by_date[dt.date(2026, 3, 9)].Tooltip or ""
    if free_busy:
        assert dentist.startswith("busy in the calendar ("), dentist
    else:
        assert dentist == "Dentist (10:30–11:30)"
    assert by_date[dt.date(2026, 3, 23)].Tooltip == "Lunch with Bob (10:45–11:15)", (
        "reported once, by name"
    )

    checked = validate_dates(
        followup, [dt.date(2026, 3, 9), dt.date(2026, 3, 10)], db=ours.db, calendar=calendar
    )
    assert [(i.Date, i.IsConflict) for i in checked] == [
        (dt.date(2026, 3, 9), True),
        (dt.date(2026, 3, 10), False),
    ]
    calendar.close()


def test_conflicts_through_the_account_find_the_calendar_themselves(
    sides: tuple[Side, Side],
) -> None:
    ours, _ = sides
    ours.client.create(
        "dentist.ics",
        ce.new_event("dentist-2", "Dentist", oslo(2026, 3, 30, 9, 30), oslo(2026, 3, 30, 10, 30)),
    )
    followup = ours.store.get(ID)
    assert followup is not None
    # The servers' calendar home is shared by the whole test session: the synced calendar only.
    ours.account.busy_calendars = []
    infos = calculate_dates(followup, db=ours.db, account=ours.account)
    assert [i.Date for i in infos if i.IsConflict] == [dt.date(2026, 3, 30)]


def test_conflicts_through_the_account_honour_its_max_response_bytes(
    sides: tuple[Side, Side],
) -> None:
    """The dialog connects like a sync pass (sync.stores.connect): the size limit holds too."""
    ours, _ = sides
    # Sixty busy periods that do not touch: an answer of a few KiB, free-busy or not.
    for day in range(2, 32):
        for hour in (12, 14):
            ours.client.create(
                f"busy-{day}-{hour}.ics",
                ce.new_event(
                    f"busy-{day}-{hour}", "Busy " + "x" * 60,
                    oslo(2026, 3, day, hour), oslo(2026, 3, day, hour, 30),
                ),
            )  # fmt: skip
    followup = ours.store.get(ID)
    assert followup is not None
    ours.account.busy_calendars = []
    assert calculate_dates(followup, db=ours.db, account=ours.account), "the default limit reads it"
    ours.account.max_response_bytes = 1024
    with pytest.raises(ResponseTooLarge):
        calculate_dates(followup, db=ours.db, account=ours.account)


def test_a_busy_event_in_another_calendar_of_the_owner_is_a_conflict(
    sides: tuple[Side, Side], dav_server: ServerInfo, request: pytest.FixtureRequest
) -> None:
    ours, theirs = sides  # theirs: a second calendar with a copy of the same series (same UID)
    private_url = dav_server.calendar_url_factory(f"private-{request.node.callspec.id}-{ID}")
    private_name = private_url.rstrip("/").rpartition("/")[2]
    private = PlainClient(private_url, dav_server.username, dav_server.password, dav_server.auth)
    private.create(
        "dentist.ics",
        ce.new_event("dentist-3", "Dentist", oslo(2026, 4, 6, 10, 30), oslo(2026, 4, 6, 11, 30)),
    )
    followup = ours.store.get(ID)
    assert followup is not None
    april_6 = dt.date(2026, 4, 6)

    # Not by default (every calendar of the home), nor when it is named, would the synced
    # series' copy in the other calendar count: it is the same UID.
    by_default = {i.Date: i for i in calculate_dates(followup, db=ours.db, account=ours.account)}
    assert by_default[april_6].IsConflict
    assert f"Dentist (10:30–11:30, in {private_name})" in (by_default[april_6].Tooltip or "")

    ours.account.busy_calendars = [private_name]
    named = calculate_dates(followup, db=ours.db, account=ours.account)
    assert [(i.Date, i.Tooltip) for i in named if i.IsConflict] == [
        (april_6, f"Dentist (10:30–11:30, in {private_name})")
    ]
    # Naming the calendar that holds the other copy of the series flags nothing.
    ours.account.busy_calendars = [theirs.account.calendar_url or ""]
    assert not any(
        i.IsConflict for i in calculate_dates(followup, db=ours.db, account=ours.account)
    )
    # An empty list: the synced calendar only.
    ours.account.busy_calendars = []
    assert not any(
        i.IsConflict for i in calculate_dates(followup, db=ours.db, account=ours.account)
    )


def _transparent(uid: str, summary: str, start: dt.datetime, end: dt.datetime) -> bytes:
    cal = Calendar.from_ical(ce.new_event(uid, summary, start, end))
    for event in cal.walk("VEVENT"):
        event.add("transp", "TRANSPARENT")
    return bytes(cal.to_ical())
