"""One follow-up that cannot be rendered must not stop its account (issue #15, item 3).

Rows written before the store validated what rendering needs (or by any other way in)
are put straight into the table here: a weekly ``Cycle`` of 10^9 and a series that
runs off the end of the calendar in year 9999. The pass must sync every other
follow-up, name the bad ones in its errors, and go on doing so pass after pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.model import uid_for_id
from sync.run import run_pass
from sync.state.db import Database, FollowUpRow, SyncItem
from sync.state.followups import FollowUpStore
from tests import factories
from tests.factories import account_for
from tests.integration import client_edits as ce
from tests.integration.client_edits import PlainClient
from tests.servers import ServerInfo

pytestmark = pytest.mark.server


def weekly(fid: str, *, start: str = "2026-03-02T10:00:00", cycle: int = 1) -> dict[str, Any]:
    return factories.weekly(fid, title=f"Meeting {fid}", start=start, count=3, cycle=cycle)


POISONED = {
    "cycle": weekly("bad-cycle", cycle=10**9),
    "year-9999": weekly("bad-9999", start="9999-12-27T10:00:00"),
}


def _store_raw(db: Database, document: dict[str, Any]) -> None:
    """Bypass the store's checks, as a row from an older version would have."""
    with db.sessions.begin() as session:
        session.add(
            FollowUpRow(
                id=document["id"],
                uid=uid_for_id(document["id"]),
                kind="appointment",
                owner=None,
                document=document,
                content_hash="poisoned-" + document["id"],
                deleted=False,
            )
        )


@pytest.mark.parametrize("poison", sorted(POISONED))
def test_one_poisoned_followup_does_not_stop_the_others(
    poison: str,
    dav_server: ServerInfo,
    calendar_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = account_for(dav_server, calendar_url, monkeypatch)
    db = Database.open(str(tmp_path / "state.sqlite"))
    good = [weekly("good-1"), weekly("good-2"), weekly("good-3")]
    FollowUpStore(db).import_followups([load_followup(d) for d in good[:2]])
    bad = POISONED[poison]
    _store_raw(db, bad)
    FollowUpStore(db).import_followups([load_followup(good[2])])

    for _ in range(2):  # the next pass goes on the same way: nothing is stuck
        report = run_pass(account, db)
        assert [item for item, _ in report.errors] == [bad["id"]], report.errors
        message = report.errors[0][1]
        assert "cannot be rendered" in message and "OverflowError" in message, message

    client = PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    on_server = sorted(ce.uid_of(f.data) for f in client.all())
    assert on_server == sorted(uid_for_id(d["id"]) for d in good)
    with db.session() as session:
        synced = {row.followup_id for row in session.query(SyncItem)}
    assert synced == {d["id"] for d in good}
    db.close()


def test_a_synced_followup_poisoned_later_fails_alone_and_keeps_its_calendar_copy(
    dav_server: ServerInfo, calendar_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The update path: the row changes under the store (cycle 10^9, then an unreadable
    document); the calendar keeps the last good copy, the others still sync."""
    account = account_for(dav_server, calendar_url, monkeypatch)
    db = Database.open(str(tmp_path / "state.sqlite"))
    store = FollowUpStore(db)
    store.import_followups([load_followup(weekly(f"f{i}")) for i in range(3)])
    assert run_pass(account, db).ok
    client = PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    before = client.by_uid(uid_for_id("f1")).data

    for broken in (weekly("f1", cycle=10**9), {**weekly("f1"), "start": 5}):
        with db.sessions.begin() as session:
            row = session.get(FollowUpRow, "f1")
            assert row is not None
            row.document = broken
            row.content_hash = f"broken-{len(str(broken))}"
        store.put(load_followup({**weekly("f2"), "title": f"Renamed {len(str(broken))}"}))
        report = run_pass(account, db)
        assert [item for item, _ in report.errors] == ["f1"], report.errors
        assert report.applied.done.get("server update") == 1  # f2's rename went through
        assert client.by_uid(uid_for_id("f1")).data == before
        assert f"Renamed {len(str(broken))}" in client.by_uid(uid_for_id("f2")).data.decode()
    db.close()


def test_a_poisoned_followup_edited_on_both_sides_fails_in_planning_alone(
    dav_server: ServerInfo, calendar_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge path: a client retitled the series while the CRM row became unrenderable;
    comparing the two fails for that item only, and nothing of it is written anywhere."""
    account = account_for(dav_server, calendar_url, monkeypatch)
    db = Database.open(str(tmp_path / "state.sqlite"))
    store = FollowUpStore(db)
    store.import_followups([load_followup(weekly(f"m{i}")) for i in range(3)])
    assert run_pass(account, db).ok
    client = PlainClient(calendar_url, dav_server.username, dav_server.password, dav_server.auth)
    fetched = client.by_uid(uid_for_id("m1"))
    client.replace(fetched, ce.edit_series(fetched.data, summary="Retitled in a client"))
    with db.sessions.begin() as session:
        row = session.get(FollowUpRow, "m1")
        assert row is not None
        row.document = weekly("m1", cycle=10**9)
        row.content_hash = "poisoned"
    store.put(load_followup({**weekly("m2"), "title": "Renamed in the CRM"}))

    report = run_pass(account, db)
    assert [item for item, _ in report.errors] == ["m1"], report.errors
    assert "cannot be planned" in report.errors[0][1], report.errors
    assert "Retitled in a client" in client.by_uid(uid_for_id("m1")).text
    assert "Renamed in the CRM" in client.by_uid(uid_for_id("m2")).text
    with db.session() as session:
        row = session.get(FollowUpRow, "m1")
        assert row is not None and row.document == weekly("m1", cycle=10**9)
    db.close()
