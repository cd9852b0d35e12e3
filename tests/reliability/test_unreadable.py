"""An item Radicale hides after we failed to read it is unreadable, not deleted; retries back off.

Radicale skips a resource it cannot load (``skip_broken_item``): it drops out of the
listing, and the sync REPORT names it deleted. A follow-up must not be deleted because
its calendar copy became unreadable (issue #15, item 8). The corruption is written to
Radicale's storage directly, as a client working on the files (or a disk fault) would.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy import select

from sync.engine import unreadable
from sync.run import run_pass
from sync.state.db import Database, PendingHref, as_utc, utcnow
from sync.state.followups import FollowUpStore
from sync.testing.followups import realistic_followups
from tests.integration.client_edits import PlainClient, edit_series
from tests.reliability.test_crashes import PASSWORD_ENV, _account
from tests.servers import RunningServer

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]


def _pending(db: Database) -> list[PendingHref]:
    with db.session() as session:
        return list(session.scalars(select(PendingHref)))


def test_an_item_radicale_hides_after_a_failed_read_keeps_its_followup(
    radicale_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = radicale_server.info()
    monkeypatch.setenv(PASSWORD_ENV, info.password or "")
    calendar_url = info.calendar_url_factory("hidden")
    db = Database.open(str(tmp_path / "state.sqlite"))
    store = FollowUpStore(db)
    store.import_followups(realistic_followups(3, seed=4))
    account = _account(info, calendar_url)
    assert run_pass(account, db).ok
    client = PlainClient(calendar_url, info.username, info.password)
    victim = client.all()[0]
    name = unquote(victim.url.rsplit("/", 1)[1])  # Radicale lists "@" as "%40"
    victim_id = next(f.id for f in store.all() if f"UID:{f.effective_uid}".encode() in victim.data)

    # 1. A client stores a rule we do not read (Radicale accepts it): unreadable, reported.
    lines = [
        b"RRULE:FREQ=SECONDLY" if line.startswith(b"RRULE:") else line
        for line in victim.data.split(b"\r\n")
    ]
    client.replace(victim, b"\r\n".join(lines))
    first = run_pass(account, db)
    assert [href for href, _ in first.read_errors] == [unquote(urlsplit(victim.url).path)]
    assert store.get(victim_id) is not None

    # 2. The file is then corrupted on disk: Radicale hides it, its REPORT says "deleted".
    storage = radicale_server.log_path.parent / "collections" / "collection-root"
    [path] = list(storage.glob(f"*/hidden/{name}"))
    path.write_bytes(b"BEGIN:VCALENDAR\r\nthis is not iCalendar\r\n")
    second = run_pass(account, db)
    assert second.ok is False
    assert store.get(victim_id) is not None, "the follow-up was deleted"
    [(_href, reason)] = second.read_errors
    assert "vanished from the listing right after it could not be read" in reason
    assert not second.plan.deletions()

    # 3. It stays unreadable: after EVERY_PASS failures it is no longer fetched each pass.
    for _ in range(unreadable.EVERY_PASS - 1):
        run_pass(account, db)
    [row] = _pending(db)
    assert row.attempts == unreadable.EVERY_PASS + 1
    assert row.retry_at is not None and as_utc(row.retry_at) > utcnow()
    quiet = run_pass(account, db)
    [(_, reason)] = quiet.read_errors
    assert "next try after" in reason
    assert quiet.fetched == 0
    assert _pending(db)[0].attempts == row.attempts, "a pass that did not try counts no failure"
    assert store.get(victim_id) is not None

    # 4. A client writes it anew: read at once (its ETag moved), synced, no longer pending.
    fixed = edit_series(victim.data, summary="Fixed in the client")
    path.write_bytes(fixed)
    healed = run_pass(account, db)
    assert healed.ok, healed.errors
    after = store.get(victim_id)
    assert after is not None and after.title == "Fixed in the client"
    assert _pending(db) == []
