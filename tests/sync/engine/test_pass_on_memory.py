"""Whole sync passes against MemoryCalendar: the engine on the CalendarStore contract alone.

No server and no HTTP: what these tests see is what the engine asks of any store
(sync/stores/base.py) and what it makes of the answers, including the precondition
failures a client's write between our listing and our write causes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.config import Account
from sync.run import PassReport, run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.memory import MemoryCalendar

URL = "http://calendar.invalid/alice/work/"
PASSWORD_ENV = "FOLLOWUP_SYNC_MEMORY_PASS_PASSWORD"


def followup(i: int, **changes: Any) -> FollowUp:
    data: dict[str, Any] = {
        "id": f"m{i:03d}",
        "title": f"Follow-up {i}",
        "start": f"2026-03-{2 + i:02d}T10:00:00",
        "end": f"2026-03-{2 + i:02d}T11:00:00",
        "timezone": "Europe/Oslo",
        **changes,
    }
    return load_followup(data)


def summary_of(data: bytes) -> str:
    match = re.search(rb"^SUMMARY:(.*?)\r?$", data, re.MULTILINE)
    assert match
    return match.group(1).decode()


class World:
    def __init__(self, tmp: Path) -> None:
        self.calendar = MemoryCalendar(URL)
        self.db = Database.open(str(tmp / "state.sqlite"))
        self.crm = FollowUpStore(self.db)
        self.account = Account(
            name="alice",
            url=URL,
            username="alice",
            password_env=PASSWORD_ENV,
            calendar_url=URL,
        )

    def sync(self, **options: Any) -> PassReport:
        report = run_pass(self.account, self.db, calendar=self.calendar, **options)
        assert report.errors == []
        return report

    def only_resource(self) -> tuple[str, bytes]:
        ((href, data),) = self.calendar.contents().items()
        return href, data


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv(PASSWORD_ENV, "x")
    made = World(tmp_path)
    yield made
    made.db.close()


def test_a_push_then_an_idle_pass(world: World) -> None:
    world.crm.import_followups([followup(1), followup(2)])
    first = world.sync()
    assert first.applied.done == {"server create": 2}
    assert len(world.calendar.contents()) == 2
    before = world.calendar.stats.copy()
    idle = world.sync()
    assert idle.plan.actions == ()
    assert world.calendar.stats.since(before).by_method == {"REPORT": 1}  # one delta, empty


def test_a_client_edit_comes_back_to_the_crm(world: World) -> None:
    world.crm.import_followups([followup(1)])
    world.sync()
    href, data = world.only_resource()
    world.calendar.put(href, data.replace(b"SUMMARY:Follow-up 1", b"SUMMARY:Moved by a client"))
    report = world.sync()
    assert report.applied.done == {"crm update": 1}
    stored = world.crm.get("m001")
    assert stored is not None and stored.title == "Moved by a client"


def test_a_crm_delete_deletes_on_the_calendar(world: World) -> None:
    world.crm.import_followups([followup(1), followup(2)])
    world.sync()
    world.crm.delete("m001")
    report = world.sync()
    assert report.applied.done == {"server delete": 1}
    (_, data) = world.only_resource()
    assert summary_of(data) == "Follow-up 2"


class ClientWritesFirst(MemoryCalendar):
    """A store where a client writes ``race`` just before our next update reaches it."""

    race: bytes | None = None

    def update(self, href: str, data: bytes, etag: str) -> str:
        if self.race is not None:
            self.put(href, self.race)
            self.race = None
        return super().update(href, data, etag)


def test_a_client_write_between_listing_and_update_is_not_overwritten(world: World) -> None:
    """The store refuses our If-Match (WrongEtag); the pass merges and both edits survive."""
    world.calendar = calendar = ClientWritesFirst(URL)
    world.crm.import_followups([followup(1)])
    world.sync()
    _, data = world.only_resource()
    world.crm.put(followup(1, title="Renamed in the CRM"))
    calendar.race = data.replace(b"DTSTART", b"LOCATION:Room 9\r\nDTSTART", 1)
    raced = run_pass(world.account, world.db, calendar=calendar)
    assert calendar.race is None, "our update never reached the store"
    assert raced.errors == [] and raced.applied.done == {"server update": 1}
    _, stored = world.only_resource()
    assert summary_of(stored) == "Renamed in the CRM"
    assert b"LOCATION:Room 9" in stored
