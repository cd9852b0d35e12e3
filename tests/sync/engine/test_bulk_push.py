"""The engine's bulk first push (``sync.engine.bulk``) on a memory store that offers it.

The store names the uploaded resources itself, as Radicale does; a refused upload (a
client's event appeared meanwhile) leaves the per-item push to do the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.model import FollowUp
from sync.config import Account
from sync.run import run_pass
from sync.state import repo
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.base import BulkUpload
from sync.stores.caldav.bulk import joined_calendar
from sync.stores.memory import MEMORY_CAPABILITIES, MemoryCalendar

URL = "http://calendar.invalid/alice/work/"
PASSWORD_ENV = "FOLLOWUP_SYNC_BULK_PASSWORD"
N = 12


class BulkMemory(MemoryCalendar):
    """A memory calendar taking a whole upload, naming resources ``up-<n>.ics``."""

    def __init__(self, *, meanwhile: bytes | None = None) -> None:
        super().__init__(URL, capabilities=MEMORY_CAPABILITIES.replace(bulk_upload_into_empty=True))
        self.meanwhile = meanwhile
        self.uploads = 0

    def upload_into_empty(self, resources: Sequence[bytes]) -> dict[str, str] | None:
        if self.meanwhile is not None:  # a client's event after the empty read
            self.put(f"{self.path}client.ics", self.meanwhile)
        if self.contents():
            return None
        self.uploads += 1
        for index, data in enumerate(resources):
            self.put(f"{self.path}up-{index}.ics", data)
        return self.list_etags()


def followup(i: int) -> FollowUp:
    data: dict[str, Any] = {
        "id": f"b{i:03d}",
        "title": f"Follow-up {i}",
        "start": f"2026-03-{2 + i:02d}T10:00:00",
        "end": f"2026-03-{2 + i:02d}T11:00:00",
        "timezone": "Europe/Oslo",
    }
    return load_followup(data)


def push(tmp: Path, calendar: MemoryCalendar) -> tuple[Database, Account]:
    db = Database.open(str(tmp / "state.sqlite"))
    FollowUpStore(db).import_followups([followup(i) for i in range(N)])
    account = Account(
        name="alice", url=URL, username="alice", password_env=PASSWORD_ENV, calendar_url=URL
    )
    report = run_pass(account, db, calendar=calendar)
    assert report.errors == [] and report.applied.done == {"server create": N}
    return db, account


def recorded(db: Database) -> dict[str, str]:
    with db.session() as session:
        return {href: etag for _, _, href, etag, _ in repo.state_rows(session, "alice")}


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "x")


def test_first_push_is_one_upload_and_the_state_holds_the_servers_names(tmp_path: Path) -> None:
    calendar = BulkMemory()
    assert isinstance(calendar, BulkUpload)
    db, account = push(tmp_path, calendar)
    assert calendar.uploads == 1
    assert recorded(db) == calendar.list_etags()
    assert all("/up-" in href for href in recorded(db))
    assert run_pass(account, db, calendar=calendar).plan.actions == ()
    db.close()


def test_a_refused_upload_falls_back_to_the_per_item_push(tmp_path: Path) -> None:
    event = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//c//EN\r\nBEGIN:VEVENT\r\nUID:client-1\r\n"
        b"DTSTAMP:20260101T000000Z\r\nDTSTART:20260301T100000Z\r\nSUMMARY:Dentist\r\n"
        b"END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    calendar = BulkMemory(meanwhile=event)
    db, _ = push(tmp_path, calendar)
    assert calendar.uploads == 0
    assert len(calendar.contents()) == N + 1
    state = recorded(db)
    assert len(state) == N and all(calendar.list_etags()[h] == e for h, e in state.items())
    db.close()


def test_joined_calendar_carries_each_time_zone_once() -> None:
    zone = b"BEGIN:VTIMEZONE\r\nTZID:Europe/Oslo\r\nEND:VTIMEZONE\r\n"

    def resource(uid: str) -> bytes:
        return (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + zone + b"BEGIN:VEVENT\r\nUID:"
            + uid.encode() + b"\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )  # fmt: skip

    text = joined_calendar([resource("a"), resource("b")], "Work, team", None).decode()
    assert text.count("BEGIN:VTIMEZONE") == 1 and text.count("BEGIN:VEVENT") == 2
    assert text.count("PRODID") == 1 and "X-WR-CALNAME:Work, team\r\n" in text
