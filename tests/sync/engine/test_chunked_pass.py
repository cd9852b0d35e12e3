"""A pass planned and applied in chunks does what the same pass in one piece does.

``sync.engine.runner`` plans and applies a pass ``chunk_size`` follow-ups at a time, so that its
memory does not grow with the calendar. Here the chunks are tiny (2 or 3) so that every
boundary is crossed, and each scenario runs twice side by side: once in chunks, once
in one piece (a chunk larger than the calendar), each against its own in-process CalDAV
store (``sync.testing.dav_server.InProcessDav``) and database, with the same edits on both.
Both must end with the same calendar, the same follow-ups and the same state, from the
same number of requests; the safety rails must still refuse a mass deletion before the
first write, whichever chunk the deletions fall in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.config import Account
from sync.engine.merge import ConflictPolicy
from sync.engine.runner import PassReport, SyncPass
from sync.errors import SideEmpty, TooManyDeletes
from sync.state.db import CollectionState, Database, FollowUpRow, PendingHref, SyncItem
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar
from sync.testing.dav_server import InProcessDav, in_process_calendar
from tests.factories import appointment, weekly_rule
from tests.integration import client_edits as ce

PATH = "/alice/cal/"
BASE = f"http://127.0.0.1:9{PATH}"
PASSWORD_ENV = "FOLLOWUP_SYNC_CHUNK_TEST_PASSWORD"
STAMP = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
UNCHUNKED = 10_000
N = 9


def followup(i: int, **changes: Any) -> FollowUp:
    """Series ``i``: a weekly meeting (every third one a single call)."""
    data = appointment(
        f"c{i:03d}", title=f"Follow-up {i}", start=f"2026-03-{2 + i % 20:02d}T10:00:00"
    )
    if i % 3:
        data["recurrence"] = weekly_rule(8, weekdays="Monday|Wednesday|Friday")
    else:
        data["kind"] = "call"
    data.update(changes)
    return load_followup(data)


@dataclass
class Side:
    """One database and one calendar, synced with a given chunk size."""

    db: Database
    store: FollowUpStore
    server: InProcessDav
    calendar: DavCalendar
    account: Account
    chunk_size: int

    def sync(
        self,
        *,
        should_stop: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
        **options: Any,
    ) -> PassReport:
        sync_pass = SyncPass(
            self.account,
            self.db,
            calendar=self.calendar,
            clock=lambda: STAMP,
            should_stop=should_stop,
            chunk_size=self.chunk_size,
        )
        return sync_pass.run(progress=progress, **options)

    def configure(self, **changes: Any) -> None:
        self.account = self.account.model_copy(update=changes)

    def href(self, followup_id: str) -> str:
        with self.db.session() as session:
            item = session.get(SyncItem, (self.account.name, followup_id))
            assert item is not None, followup_id
            return item.href

    def body(self, followup_id: str) -> bytes:
        found = self.server.get(self.href(followup_id))
        assert found is not None
        return found[1]

    def writes(self) -> int:
        by_method = self.calendar.stats.by_method
        return by_method.get("PUT", 0) + by_method.get("DELETE", 0)

    def snapshot(self) -> dict[str, Any]:
        """Everything a pass leaves behind, without timestamps and tokens."""
        with self.db.session() as session:
            followups = {
                row.id: (row.document, row.content_hash, row.deleted, row.origin_account)
                for row in session.scalars(select(FollowUpRow))
            }
            items = {
                row.followup_id: (row.uid, row.href, row.etag, row.synced_hash, row.detached)
                for row in session.scalars(select(SyncItem))
            }
            pending = sorted(session.scalars(select(PendingHref.href)))
        return {
            "calendar": self.server.contents(),
            "followups": followups,
            "state": items,
            "pending": pending,
        }

    def token(self) -> str | None:
        with self.db.session() as session:
            collection = session.get(CollectionState, self.account.name)
            return collection.sync_token if collection else None


def make_side(tmp: Path, chunk_size: int) -> Side:
    server = InProcessDav(PATH)
    calendar = in_process_calendar(server, BASE)
    db = Database.open(str(tmp / "state.sqlite"))
    account = Account(
        name="alice",
        url=BASE,
        username="alice",
        password_env=PASSWORD_ENV,
        calendar_url=BASE,
        server_kind="radicale",
        # Multigets of 2 on both sides (the same requests), so that the fetched resources
        # of a pass fall into several slices of the chunked side too.
        batch_size=2,
    )
    return Side(db, FollowUpStore(db), server, calendar, account, chunk_size)


@dataclass
class Pair:
    """The same world twice: in chunks (``chunked``) and in one piece (``whole``)."""

    chunked: Side
    whole: Side

    @property
    def sides(self) -> tuple[Side, Side]:
        return (self.chunked, self.whole)

    def do(self, edit: Callable[[Side], object]) -> None:
        for side in self.sides:
            edit(side)

    def client_edit(self, followup_id: str, change: Callable[[bytes], bytes]) -> None:
        """The same client edit on both calendars (computed once: same bytes on both)."""
        new = change(self.whole.body(followup_id))
        self.do(lambda side: side.server.put(side.href(followup_id), new))

    def sync(self, **options: Any) -> tuple[PassReport, PassReport]:
        """One pass on each side; both must plan, do and ask the same."""
        before = [side.calendar.stats.requests for side in self.sides]
        chunked, whole = (side.sync(**options) for side in self.sides)
        assert sorted(chunked.plan.actions, key=repr) == sorted(whole.plan.actions, key=repr)
        assert sorted(chunked.plan.skipped) == sorted(whole.plan.skipped)
        assert chunked.applied.done == whole.applied.done
        assert chunked.errors == whole.errors == []
        assert chunked.requests == whole.requests
        after = [side.calendar.stats.requests for side in self.sides]
        assert [a - b for a, b in zip(after, before, strict=True)] == [whole.requests] * 2
        assert self.chunked.snapshot() == self.whole.snapshot()
        return chunked, whole


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "x")


@pytest.fixture(params=[2, 3], ids=["chunks-of-2", "chunks-of-3"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    chunked = make_side(tmp_path / "chunked", request.param)
    whole = make_side(tmp_path / "whole", UNCHUNKED)
    for side in (chunked, whole):
        side.store.import_followups(followup(i) for i in range(N))
    yield Pair(chunked, whole)
    for side in (chunked, whole):
        side.db.close()
        side.server.close()


@pytest.fixture
def synced(pair: Pair) -> Pair:
    """Both sides pushed once and idle."""
    first, _ = pair.sync()
    assert first.applied.done == {"server create": N}
    idle, _ = pair.sync()
    assert idle.requests == 1 and idle.plan.actions == ()
    return pair


# --- the same result ------------------------------------------------------------------------


def test_push_in_chunks_creates_everything_with_the_same_requests(pair: Pair) -> None:
    chunked, whole = pair.sync()

    assert chunked.applied.done == {"server create": N}
    assert chunked.requests == whole.requests == N + 2  # listing, N PUTs, one fresh token
    assert len(pair.chunked.server.contents()) == N


def test_full_pass_lists_everything_and_changes_nothing(synced: Pair) -> None:
    chunked, _ = synced.sync(full=True)

    assert chunked.mode == "full" and chunked.plan.actions == () and chunked.requests == 1


def test_edits_on_both_sides_across_chunks(synced: Pair) -> None:
    # CRM: edit two, delete one, add two; calendar: a moved occurrence, a renamed series,
    # a deleted resource, an event made in the client; one series edited on both sides.
    synced.do(lambda s: s.store.put(followup(1, title="Edited in the CRM")))
    synced.do(lambda s: s.store.put(followup(7, location="Room 4")))
    synced.do(lambda s: s.store.delete(followup(5).id))
    synced.do(lambda s: s.store.put(followup(20)))
    synced.do(lambda s: s.store.put(followup(21)))
    synced.client_edit(
        followup(2).id,
        lambda data: ce.move_occurrence(
            data, ce.oslo(2026, 3, 6, 10), ce.oslo(2026, 3, 6, 14), ce.oslo(2026, 3, 6, 15)
        ),
    )
    synced.client_edit(followup(4).id, lambda data: ce.edit_series(data, summary="Renamed"))
    synced.client_edit(followup(7).id, lambda data: ce.edit_series(data, summary="Both sides"))
    synced.do(lambda s: s.server.remove(s.href(followup(8).id)))
    new = ce.new_event("client-made@example.org", "Lunch", ce.oslo(2026, 3, 10, 12),
                       ce.oslo(2026, 3, 10, 13))  # fmt: skip
    synced.do(lambda s: s.server.put(f"{PATH}client-made.ics", new))
    synced.do(lambda s: s.configure(import_new=True))

    chunked, _ = synced.sync()

    assert sorted(a.kind for a in chunked.plan.actions) == [
        "CreateFromServer",  # the client's event
        "CreateOnServer",  # the two new follow-ups
        "CreateOnServer",
        "DeleteInCrm",  # deleted in the calendar
        "DeleteOnServer",  # deleted in the CRM
        "Merge",  # edited on both sides: the title from the calendar, the room from the CRM
        "SaveFromServer",  # the moved occurrence
        "SaveFromServer",  # the renamed series
        "UpdateOnServer",  # the CRM edit
    ]
    assert chunked.requests == 1 + 2 + 5 + 1  # listing, 2 multigets of 2, 5 writes, token
    idle, _ = synced.sync()
    assert idle.plan.actions == () and idle.requests == 1


def test_this_and_following_split_crosses_chunks(synced: Pair) -> None:
    for i in (1, 4):
        synced.client_edit(
            followup(i).id,
            lambda data: ce.this_and_future_override(
                data,
                ce.oslo(2026, 3, 13, 10),
                ce.oslo(2026, 3, 13, 15),
                ce.oslo(2026, 3, 13, 16),
            ),
        )

    chunked, _ = synced.sync()

    created = [a for a in chunked.plan.actions if a.kind == "CreateFromServer"]
    assert len(created) == 2  # one tail per split series, pushed as a resource of its own
    assert chunked.applied.done["server create"] == 2
    synced.sync()
    idle, _ = synced.sync()
    assert idle.plan.actions == ()


def test_lost_state_adopts_every_resource_by_uid(synced: Pair) -> None:
    # The database was restored from before the first push: nothing recorded, every
    # resource there. Each follow-up finds its own by UID, whichever chunk it is in.
    def forget(side: Side) -> None:
        with side.db.sessions.begin() as session:
            session.execute(delete(SyncItem))
            session.execute(delete(CollectionState))

    synced.do(forget)
    synced.do(lambda s: s.store.put(followup(3, title="Edited since the backup")))

    chunked, _ = synced.sync()

    kinds = sorted(a.kind for a in chunked.plan.actions)
    assert kinds == ["Merge"] + ["RecordState"] * (N - 1)
    assert chunked.applied.done == {"server update": 1}  # the edited one; nothing created


def test_crashed_write_of_a_deleted_followup_is_finished_from_another_chunk(
    synced: Pair,
) -> None:
    # A resource written before a crash was never recorded, and the follow-up has been
    # deleted since: the pass deletes the resource (the unrecorded-resource loop).
    target = followup(6).id

    def crash_leftover(side: Side) -> None:
        with side.db.sessions.begin() as session:
            session.execute(delete(SyncItem).where(SyncItem.followup_id == target))
        side.store.delete(target)

    synced.do(crash_leftover)
    synced.do(lambda s: s.store.put(followup(0, title="Something else to do")))

    chunked, _ = synced.sync(full=True)

    assert [a.kind for a in chunked.plan.actions if a.followup_id == target] == ["DeleteOnServer"]
    assert chunked.applied.done == {"server delete": 1, "server update": 1}


def test_copy_of_a_recorded_resource_under_another_href_is_left_alone(synced: Pair) -> None:
    # A client copied one of our resources (same UID) to a name of its own: its owner is
    # recorded (in another chunk), so the copy is neither imported nor adopted.
    synced.do(lambda s: s.configure(import_new=True))
    synced.do(lambda s: s.server.put(f"{PATH}copy.ics", s.body(followup(2).id)))
    synced.do(lambda s: s.store.put(followup(8, title="Work in a later chunk")))

    chunked, _ = synced.sync()

    assert [(a.kind, a.followup_id) for a in chunked.plan.actions] == [
        ("UpdateOnServer", followup(8).id)
    ]
    assert chunked.plan.skipped == ()


def test_dry_run_plans_the_whole_pass_and_writes_nothing(synced: Pair) -> None:
    for i in range(N):
        synced.do(lambda s, i=i: s.store.put(followup(i, title=f"Renamed {i}")))
    writes = [side.writes() for side in synced.sides]

    chunked, whole = (side.sync(dry_run=True) for side in synced.sides)

    assert len(chunked.plan.actions) == N
    assert sorted(chunked.plan.actions, key=repr) == sorted(whole.plan.actions, key=repr)
    assert [side.writes() for side in synced.sides] == writes


# --- the safety rails over the whole pass ---------------------------------------------------


def test_mass_deletion_is_refused_before_the_first_write(synced: Pair) -> None:
    # Work the chunks would do first (CRM edits of the lowest ids, a client edit), then
    # six deletions of nine in later chunks: nothing at all is written.
    synced.do(lambda s: s.store.put(followup(0, title="Would be pushed first")))
    synced.client_edit(followup(1).id, lambda data: ce.edit_series(data, summary="Client"))
    for i in range(3, N):
        synced.do(lambda s, i=i: s.store.delete(followup(i).id))
    before = [side.snapshot() for side in synced.sides]
    writes = [side.writes() for side in synced.sides]
    tokens = [side.token() for side in synced.sides]

    refused = []
    for side in synced.sides:
        with pytest.raises(TooManyDeletes) as caught:
            side.sync()
        refused.append((caught.value.deletions, caught.value.total, str(caught.value)))

    assert refused[0] == refused[1]
    assert refused[0][:2] == (6, N)
    assert [side.writes() for side in synced.sides] == writes
    assert [side.snapshot() for side in synced.sides] == before
    assert [side.token() for side in synced.sides] == tokens
    # Confirmed, the same pass runs, in chunks as in one piece.
    chunked, _ = synced.sync(force_delete=True)
    assert chunked.applied.done["server delete"] == 6


def test_deletions_on_the_server_count_with_those_in_the_crm(synced: Pair) -> None:
    for i in (0, 1, 2):
        synced.do(lambda s, i=i: s.server.remove(s.href(followup(i).id)))
    for i in (6, 7):
        synced.do(lambda s, i=i: s.store.delete(followup(i).id))
    writes = [side.writes() for side in synced.sides]

    for side in synced.sides:
        with pytest.raises(TooManyDeletes):
            side.configure(max_delete_percent=40.0)
            side.sync()

    assert [side.writes() for side in synced.sides] == writes


def test_possible_mass_deletion_that_is_not_one_costs_no_extra_request(synced: Pair) -> None:
    # Six deleted in the CRM (over 50 %), but the calendar changed four of them and the
    # calendar wins: those are restored, two deleted. Only planning can tell, so the
    # pass is planned twice; what it fetched for the first plan serves the second.
    for i in range(3, N):
        synced.do(lambda s, i=i: s.store.delete(followup(i).id))
    for i in range(3, 7):
        synced.client_edit(
            followup(i).id, lambda data, i=i: ce.edit_series(data, summary=f"Kept {i}")
        )
    synced.do(lambda s: s.configure(conflict_policy=ConflictPolicy.server_wins))

    chunked, whole = synced.sync()

    assert chunked.applied.done == {"server delete": 2, "crm update": 4}
    assert chunked.requests == whole.requests == 1 + 2 + 2 + 1  # list, 2 multigets, 2 DELETE, token


def test_emptied_calendar_is_refused_before_any_write(synced: Pair) -> None:
    synced.do(lambda s: s.store.put(followup(0, title="Would be pushed first")))
    for i in range(N):
        synced.do(lambda s, i=i: s.server.remove(s.href(followup(i).id)))
    writes = [side.writes() for side in synced.sides]

    for side in synced.sides:
        with pytest.raises(SideEmpty):
            side.sync(full=True)

    assert [side.writes() for side in synced.sides] == writes


# --- progress and shutdown ------------------------------------------------------------------


def test_progress_counts_over_the_whole_pass(pair: Pair) -> None:
    calls: list[tuple[int, int]] = []

    pair.chunked.sync(progress=lambda done, total: calls.append((done, total)))

    assert calls == [(done, N) for done in range(1, N + 1)]


def test_shutdown_stops_between_actions_and_keeps_the_old_token(synced: Pair) -> None:
    for i in range(N):
        synced.do(lambda s, i=i: s.store.put(followup(i, title=f"Renamed {i}")))
    side = synced.chunked
    token = side.token()
    polls = 0

    def should_stop() -> bool:
        nonlocal polls
        polls += 1
        return polls > 4

    report = side.sync(should_stop=should_stop)

    assert report.stopped
    assert 0 < report.applied.done["server update"] < N
    assert side.token() == token
    rest = side.sync()
    assert rest.applied.done["server update"] == N - report.applied.done["server update"]
    synced.whole.sync()
    assert side.snapshot() == synced.whole.snapshot()
