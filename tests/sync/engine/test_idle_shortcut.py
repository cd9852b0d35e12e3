"""Every CRM change made after an idle pass reaches the calendar at the next pass.

An idle pass that follows another idle pass reads no follow-up and no sync record: the
change counter (``sync.state.rows.ChangeCounter``), the account's settings and a server
listing no change together say there is nothing to do (``sync.engine.runner``). These
tests first show that the shortcut is in effect (the pass touched neither table), then
make one CRM change of each kind a user makes (an edit, an import, a deletion, a change
of direction, a reset, a pull by another account) and check what the calendar holds
after the next pass. A change the shortcut swallowed would leave the calendar as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.api.controls import request_reset, take_reset
from sync.config import Account
from sync.run import PassReport, run_pass
from sync.state import directions
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.memory import MemoryCalendar
from tests.rows_read import rows_read

PASSWORD_ENV = "FOLLOWUP_SYNC_IDLE_SHORTCUT_PASSWORD"


def followup(i: int, **changes: Any) -> FollowUp:
    data: dict[str, Any] = {
        "id": f"i{i:03d}",
        "title": f"Follow-up {i}",
        "start": f"2026-04-{2 + i:02d}T10:00:00",
        "end": f"2026-04-{2 + i:02d}T11:00:00",
        "timezone": "Europe/Oslo",
        **changes,
    }
    return load_followup(data)


def titles(calendar: MemoryCalendar) -> dict[str, str]:
    """The SUMMARY of every resource, by href."""
    found = {}
    for href, data in calendar.contents().items():
        match = re.search(rb"^SUMMARY:(.*?)\r?$", data, re.MULTILINE)
        assert match
        found[href] = match.group(1).decode()
    return found


class World:
    """One CRM (state database) synced with one or more memory calendars."""

    def __init__(self, tmp: Path) -> None:
        self.db = Database.open(str(tmp / "state.sqlite"))
        self.crm = FollowUpStore(self.db)
        self.calendars: dict[str, MemoryCalendar] = {}
        self.accounts: dict[str, Account] = {}
        self.add_account("alice")

    def add_account(self, name: str) -> None:
        url = f"http://calendar.invalid/{name}/work/"
        self.calendars[name] = MemoryCalendar(url)
        self.accounts[name] = Account(
            name=name, url=url, username=name, password_env=PASSWORD_ENV, calendar_url=url
        )

    def sync(self, account: str = "alice") -> PassReport:
        report = run_pass(self.accounts[account], self.db, calendar=self.calendars[account])
        assert report.errors == []
        return report

    def settle_idle(self, account: str = "alice") -> None:
        """Passes until one finds nothing to do, then one more that must take the shortcut."""
        for _ in range(3):
            if not self.sync(account).plan.actions:
                break
        else:
            raise AssertionError("the calendar did not settle")
        with rows_read(self.db) as touched:
            idle = self.sync(account)
        assert idle.plan.actions == () and idle.requests == 1
        assert touched == set(), "the idle pass read rows: the shortcut was not taken"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv(PASSWORD_ENV, "x")
    made = World(tmp_path)
    made.crm.import_followups([followup(1), followup(2)])
    made.sync()
    made.settle_idle()
    yield made
    made.db.close()


def test_a_crm_edit_after_an_idle_pass_is_pushed(world: World) -> None:
    world.crm.put(followup(1, title="Moved in the CRM"))
    report = world.sync()
    assert report.applied.done == {"server update": 1}
    assert sorted(titles(world.calendars["alice"]).values()) == ["Follow-up 2", "Moved in the CRM"]


def test_an_import_after_an_idle_pass_is_created_in_the_calendar(world: World) -> None:
    world.crm.import_followups([followup(1), followup(2), followup(3)])
    report = world.sync()
    assert report.applied.done == {"server create": 1}
    assert "Follow-up 3" in titles(world.calendars["alice"]).values()


def test_a_crm_deletion_after_an_idle_pass_deletes_the_event(world: World) -> None:
    world.crm.delete("i001")
    report = world.sync()
    assert report.applied.done == {"server delete": 1}
    assert list(titles(world.calendars["alice"]).values()) == ["Follow-up 2"]


def test_a_crm_edit_after_the_direction_became_to_crm_is_put_back(world: World) -> None:
    """The direction set over the API is not part of the shortcut's settings digest, and
    need not be: under every direction an idle pass means both sides agree. What a
    direction decides is what becomes of the next change, and that change moves the
    counter: here the CRM's edit is undone from the calendar's version."""
    with world.db.sessions.begin() as session:
        directions.set_override(session, "alice", "to-crm")
    world.settle_idle()
    world.crm.put(followup(1, title="Edited in the CRM"))
    report = world.sync()
    assert report.applied.done == {"crm update": 1}
    restored = world.crm.get("i001")
    assert restored is not None and restored.title == "Follow-up 1"
    assert sorted(titles(world.calendars["alice"]).values()) == ["Follow-up 1", "Follow-up 2"]


def test_a_followup_left_alone_under_to_crm_is_created_once_the_direction_is_both(
    world: World,
) -> None:
    with world.db.sessions.begin() as session:
        directions.set_override(session, "alice", "to-crm")
    world.crm.import_followups([followup(1), followup(2), followup(3)])
    for _ in range(2):  # left alone on every pass, however many there are
        left_alone = world.sync()
        assert [item for item, _ in left_alone.plan.skipped] == ["i003"]
    assert len(world.calendars["alice"].contents()) == 2
    with world.db.sessions.begin() as session:
        directions.set_override(session, "alice", None)  # back to the config's: both
    report = world.sync()
    assert report.applied.done == {"server create": 1}
    assert "Follow-up 3" in titles(world.calendars["alice"]).values()


def test_a_reset_after_idle_passes_relinks_without_duplicates(world: World) -> None:
    calendar = world.calendars["alice"]
    hrefs = set(calendar.contents())
    request_reset(world.db, "alice")
    assert take_reset(world.db, "alice")
    relinked = world.sync()
    assert "server create" not in relinked.applied.done
    assert set(calendar.contents()) == hrefs
    world.settle_idle()
    world.crm.put(followup(2, title="Edited after the reset"))
    assert world.sync().applied.done == {"server update": 1}
    assert set(calendar.contents()) == hrefs
    assert "Edited after the reset" in titles(calendar).values()


def test_a_pull_by_another_account_reaches_an_idle_account_calendar(world: World) -> None:
    """One CRM, two calendars: a client edit in Bob's calendar is pulled into the CRM by
    Bob's pass, and Alice's next pass (idle until then) pushes it to her calendar."""
    world.add_account("bob")
    world.sync("bob")
    world.settle_idle("bob")
    world.settle_idle("alice")
    bob = world.calendars["bob"]
    href = next(h for h, title in titles(bob).items() if title == "Follow-up 1")
    bob.put(href, bob.contents()[href].replace(b"SUMMARY:Follow-up 1", b"SUMMARY:Moved by Bob"))
    assert world.sync("bob").applied.done == {"crm update": 1}
    report = world.sync("alice")
    assert report.applied.done == {"server update": 1}
    assert sorted(titles(world.calendars["alice"]).values()) == ["Follow-up 2", "Moved by Bob"]
