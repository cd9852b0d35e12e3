"""Two ``followup-sync sync`` processes on one account of one SQLite database.

Before ``sync.state.locks.SqliteFileLock`` both ran at once, and each took the other's fresh
writes for calendar edits (issue #15, item 2). Now the second is refused at once with a
message naming the first, changes nothing, and a run after the first has finished
finds nothing left to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sync.state.db import ConflictRecord, Database
from sync.state.followups import FollowUpStore
from sync.state.locks import SqliteFileLock
from sync.testing.followups import realistic_followups
from tests.reliability.helpers import agreement, direct
from tests.servers import RunningServer

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"
ACCOUNT = "shared"
SERIES = 300  # long enough a push that the second process starts while the first runs


def _sync(calendar_url: str, db_path: Path, kind: str, username: str | None) -> list[str]:
    argv = [
        sys.executable, "-m", "sync.cli.main", "sync", "--account", ACCOUNT, "--url", calendar_url,
        "--calendar-url", calendar_url, "--server-kind", kind, "--database", str(db_path),
    ]  # fmt: skip
    if username:
        argv += ["--username", username, "--password-env", PASSWORD_ENV]
    return argv


def test_a_second_pass_on_the_same_account_is_refused_while_the_first_runs(
    radicale_server: RunningServer, tmp_path: Path
) -> None:
    info = radicale_server.info()
    calendar_url = info.calendar_url_factory("two-passes")
    db_path = tmp_path / "state.sqlite"
    db = Database.open(str(db_path))
    FollowUpStore(db).import_followups(realistic_followups(SERIES, seed=2))
    env = {**os.environ, PASSWORD_ENV: info.password or "", "PYTHONPATH": str(ROOT)}
    argv = _sync(calendar_url, db_path, info.kind, info.username)
    lock = SqliteFileLock(db_path)

    first = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while lock.holder(ACCOUNT) != str(first.pid):
        assert first.poll() is None, "the first pass ended before it was seen holding the lock"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    second = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert first.poll() is None, "inconclusive: the first pass was over before the second ran"
    assert second.returncode == 1
    message = second.stderr.decode()
    assert f"account 'shared' is being synced by another process (pid {first.pid})" in message
    assert "nothing was done" in message
    _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err.decode()[-2000:]

    upstream = direct(calendar_url, info.username, info.password)
    result = agreement(db, upstream)
    assert result.ok and result.followups == SERIES, result.explain()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(ConflictRecord)) == 0
    third = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert third.returncode == 0, third.stderr.decode()[-2000:]
    assert lock.holder(ACCOUNT) is None, "the lock file names no holder once the pass is over"
    upstream.close()
    db.close()
