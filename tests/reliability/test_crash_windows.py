"""A write we made is ours after any crash: no reverted edit, no lost CRM change, no fake conflict.

The sync worker (a real process) is SIGKILLed by its own hook right after its 20th PUT
has its answer: the server holds 20 of our writes that the state has not recorded (the
state records them in batches). Then a calendar client (plain HTTP) or the CRM edits
one of those series, and one normal pass runs under each conflict policy. The edit
must stand on both sides, and the conflict log must stay empty: nobody chose between
two people's edits. Issue #15, items 1 and 2; run on Radicale and Xandikos.
"""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sync.engine.merge import ConflictPolicy
from sync.run import run_pass
from sync.state.db import ConflictRecord, Database, PendingWrite, SyncItem, utcnow
from sync.state.followups import FollowUpStore
from sync.testing.followups import realistic_followups
from tests.integration.client_edits import PlainClient, edit_series
from tests.reliability.helpers import agreement, direct, fetch, server_followup
from tests.reliability.test_crashes import PASSWORD_ENV, _account, _worker
from tests.servers import RunningServer, ServerInfo

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

SERIES = 30
KILL_AFTER_WRITES = 20
CLIENT_TITLE = "Moved to the customer's office (client edit)"
CRM_TITLE = "Renamed in the CRM after the crash"


@pytest.fixture(params=["radicale", "xandikos"])
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerInfo]:
    info: ServerInfo = request.getfixturevalue(f"{request.param}_server").info()
    monkeypatch.setenv(PASSWORD_ENV, info.password or "")
    yield info


def _conflicts(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ConflictRecord)) or 0)


def _recorded_etag(db: Database, followup_id: str) -> str | None:
    with db.session() as session:
        item = session.get(SyncItem, ("worker", followup_id))
        return item.etag if item is not None else None


@pytest.mark.parametrize("policy", list(ConflictPolicy))
@pytest.mark.parametrize("write", ["create", "update"])
@pytest.mark.parametrize("edit", ["client", "crm"])
def test_an_edit_after_a_kill_between_our_write_and_its_record_stands(
    server: ServerInfo, tmp_path: Path, policy: ConflictPolicy, write: str, edit: str
) -> None:
    calendar_url = server.calendar_url_factory(f"window-{write}-{edit}-{policy.value}")
    db_path = tmp_path / "state.sqlite"
    db = Database.open(str(db_path))
    store = FollowUpStore(db)
    followups = realistic_followups(SERIES, seed=15)
    store.import_followups(followups)
    account = _account(server, calendar_url).model_copy(update={"conflict_policy": policy})
    upstream = direct(calendar_url, server.username, server.password)
    if write == "update":
        assert run_pass(account, db, calendar=upstream).ok
        for followup in store.all():
            store.put(followup.model_copy(update={"title": f"CRM v2: {followup.title}"}))
    ids = sorted(f.id for f in followups)
    # The plan writes in id order: the target is among the 20 the server took.
    target_id = next(f.id for f in sorted(followups, key=lambda f: f.id)[:15] if not f.exceptions)
    before = _recorded_etag(db, target_id)

    code, _ = _worker(server, calendar_url, db_path, ("AFTER_WRITES", KILL_AFTER_WRITES))
    assert code == -signal.SIGKILL

    target = store.get(target_id)
    assert target is not None
    ours = fetch(upstream, target.effective_uid)
    assert server_followup(ours, target).title == target.title, "our write is on the server"
    assert _recorded_etag(db, target_id) == before, "and not recorded: the crash window"
    assert len(ids) == SERIES

    if edit == "client":
        expected = CLIENT_TITLE
        client = PlainClient(calendar_url, server.username, server.password)
        fetched = client.by_uid(target.effective_uid)
        client.replace(fetched, edit_series(fetched.data, summary=CLIENT_TITLE))
    else:
        expected = CRM_TITLE
        store.put(target.model_copy(update={"title": CRM_TITLE}))

    report = run_pass(account, db, calendar=upstream)
    assert report.ok, report.errors[:5]
    after = store.get(target_id)
    assert after is not None and after.title == expected, f"{edit} edit reverted under {policy}"
    on_server = server_followup(fetch(upstream, target.effective_uid), after)
    assert on_server.title == expected
    assert _conflicts(db) == 0, "no two people's edits met: nothing to log"
    result = agreement(db, upstream)
    assert result.ok, result.explain()
    assert result.followups == SERIES
    again = run_pass(account, db, calendar=upstream)
    assert again.ok and not again.plan.actions, [str(a) for a in again.plan.actions[:5]]
    upstream.close()
    db.close()


def test_an_intent_whose_write_never_went_out_is_dropped_by_the_next_whole_pass(
    radicale_server: RunningServer, tmp_path: Path
) -> None:
    """A pass died after recording its intents, before the PUT; the CRM then went back.

    The next pass has nothing to do for that series and drops the intent, so a client's
    later edit is an edit, not a conflict with a write that never happened.
    """
    info = radicale_server.info()
    calendar_url = info.calendar_url_factory("never-sent")
    db = Database.open(str(tmp_path / "state.sqlite"))
    store = FollowUpStore(db)
    store.import_followups(realistic_followups(3, seed=8))
    account = _account(info, calendar_url)
    upstream = direct(calendar_url, info.username, info.password)
    assert run_pass(account, db, calendar=upstream).ok
    target = store.all()[0]
    with db.sessions.begin() as session:
        item = session.get(SyncItem, ("worker", target.id))
        assert item is not None
        session.add(
            PendingWrite(
                account="worker",
                followup_id=target.id,
                href=item.href,
                if_match=item.etag,
                document=target.model_copy(update={"title": "Never sent"}).to_json_dict(),
                created_at=utcnow() - dt.timedelta(minutes=1),
            )
        )

    assert run_pass(account, db, calendar=upstream).ok
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(PendingWrite)) == 0
    client = PlainClient(calendar_url, info.username, info.password)
    fetched = client.by_uid(target.effective_uid)
    client.replace(fetched, edit_series(fetched.data, summary=CLIENT_TITLE))
    assert run_pass(account, db, calendar=upstream).ok
    after = store.get(target.id)
    assert after is not None and after.title == CLIENT_TITLE
    assert _conflicts(db) == 0
    upstream.close()
    db.close()
