"""The engine's bulk first push (``sync.engine.bulk``) on a memory store that offers it.

The store names the uploaded resources itself, as Radicale does; a refused upload (a
client's event appeared meanwhile) leaves the per-item push to do the work; a time zone
the store rewrites, as Radicale does, has the resources it would move written again.
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
from sync.testing.followups import weekly_series

URL = "http://calendar.invalid/alice/work/"
PASSWORD_ENV = "FOLLOWUP_SYNC_BULK_PASSWORD"
N = 12


class BulkMemory(MemoryCalendar):
    """A memory calendar taking a whole upload, naming resources ``up-<n>.ics``."""

    def __init__(self, *, meanwhile: bytes | None = None, late_autumn: bool = False) -> None:
        super().__init__(URL, capabilities=MEMORY_CAPABILITIES.replace(bulk_upload_into_empty=True))
        self.meanwhile = meanwhile
        self.late_autumn = late_autumn
        self.uploads = 0

    def upload_into_empty(self, resources: Sequence[bytes]) -> dict[str, str] | None:
        if self.meanwhile is not None:  # a client's event after the empty read
            self.put(f"{self.path}client.ics", self.meanwhile)
        if self.contents():
            return None
        self.uploads += 1
        for index, data in enumerate(resources):
            if self.late_autumn:  # Radicale's rewritten zone: the autumn change an hour late
                data = data.replace(
                    b"T030000\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
                    b"T040000\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
                )
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


def push(
    tmp: Path, calendar: MemoryCalendar, more: Sequence[FollowUp] = ()
) -> tuple[Database, Account]:
    db = Database.open(str(tmp / "state.sqlite"))
    FollowUpStore(db).import_followups([followup(i) for i in range(N)] + list(more))
    account = Account(
        name="alice", url=URL, username="alice", password_env=PASSWORD_ENV, calendar_url=URL
    )
    report = run_pass(account, db, calendar=calendar)
    assert report.errors == [] and report.applied.done == {"server create": N + len(more)}
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


def test_a_resource_the_rewritten_time_zone_would_move_is_written_again(tmp_path: Path) -> None:
    calendar = BulkMemory(late_autumn=True)
    at_0330 = weekly_series("autumn", "2026-10-04T03:30:00", "Sunday", 6)
    db, account = push(tmp_path, calendar, [at_0330])
    assert calendar.uploads == 1
    held = {ce_uid(data): data for data in calendar.contents().values()}
    assert len(held) == N + 1
    # Only the series with an occurrence in the hour the rewritten zone gets wrong
    # (03:00-03:59 on 2026-10-25) holds our definition again; the rest keep the server's.
    assert b"20251026T030000" in held["followup-autumn@followup-sync"]
    others = [data for uid, data in held.items() if uid != "followup-autumn@followup-sync"]
    assert all(b"T040000" in data for data in others)
    assert recorded(db) == calendar.list_etags()
    assert run_pass(account, db, calendar=calendar).plan.actions == ()
    db.close()


def ce_uid(data: bytes) -> str:
    return next(
        line.split(":", 1)[1] for line in data.decode().splitlines() if line.startswith("UID:")
    )


def test_joined_calendar_keeps_the_earliest_starting_definition_of_a_zone() -> None:
    def resource(uid: str, first_year: int) -> bytes:
        return (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTIMEZONE\r\n"
            f"TZID:Europe/Oslo\r\nBEGIN:STANDARD\r\nDTSTART:{first_year}1026T030000\r\n"
            "END:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:" + uid
            + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        ).encode()  # fmt: skip

    text = joined_calendar(
        [resource("a", 2025), resource("b", 2018), resource("c", 2030)], None, None
    )
    # Radicale writes every resource's zone from the one definition it keeps per TZID.
    assert text.count(b"BEGIN:VTIMEZONE") == 1 and b"DTSTART:20181026T030000" in text
