"""SIGKILL the sync worker at random points, then sync normally: nothing lost, nothing doubled.

The worker is a real process (``tests/reliability/worker.py``) killed by its own crash hook
at a random HTTP request (before it is sent, or right after the server answered and before
anything was recorded), after a random number of applied actions, or by the test after a
random delay. Every kill point comes from the printed seed. After each kill one normal
pass runs, then: exactly one resource per follow-up, the same occurrences on both sides,
every client edit in the store, and a further pass with nothing left to do.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.config import Account
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar
from sync.testing.followups import realistic_followups
from tests.reliability.helpers import (
    FULL,
    agreement,
    client_create,
    client_retitle,
    direct,
    fetch,
    seed_for,
    series_count,
)
from tests.servers import ServerInfo

pytestmark = [pytest.mark.server, pytest.mark.timeout(7200 if FULL else 900)]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"
PUSH_KILLS = 25 if FULL else 10
PULL_KILLS = 25 if FULL else 12


@pytest.fixture(params=["radicale", "xandikos"] if FULL else ["radicale"])
def server(request: pytest.FixtureRequest) -> ServerInfo:
    info: ServerInfo = request.getfixturevalue(f"{request.param}_server").info()
    return info


def _worker(
    server: ServerInfo,
    calendar_url: str,
    database: Path,
    hook: tuple[str, int] | None,
    *,
    kill_after: float | None = None,
    import_new: bool = False,
    policy: str = "crm-wins",
    first_push: str = "per-item",
) -> tuple[int, str]:
    env = {**os.environ, PASSWORD_ENV: server.password or "", "PYTHONPATH": str(ROOT)}
    for name in ("AFTER_REQUESTS", "BEFORE_REQUESTS", "AFTER_WRITES", "AFTER_ACTIONS"):
        env.pop(f"FOLLOWUP_SYNC_TEST_CRASH_{name}", None)
    if hook is not None:
        env[f"FOLLOWUP_SYNC_TEST_CRASH_{hook[0]}"] = str(hook[1])
    argv = [
        sys.executable, "-m", "tests.reliability.worker", "--database", str(database),
        "--calendar-url", calendar_url, "--server-kind", server.kind,
    ]  # fmt: skip
    if server.username:
        argv += ["--username", server.username, "--password-env", PASSWORD_ENV]
    if import_new:
        argv.append("--import-new")
    argv += ["--conflict-policy", policy, "--first-push", first_push]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"worker failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return proc.returncode, out.decode()


def _account(server: ServerInfo, calendar_url: str, *, import_new: bool = False) -> Account:
    return Account(
        name="worker",  # the same account name as the worker: the same state rows
        url=calendar_url,
        username=server.username,
        password_env=PASSWORD_ENV if server.password else None,
        calendar_url=calendar_url,
        server_kind=server.kind,
        import_new=import_new,
    )


def _recover_and_check(account: Account, db: Database, upstream: DavCalendar) -> None:
    report = run_pass(account, db, calendar=upstream)
    assert report.ok, report.errors[:5]
    result = agreement(db, upstream)
    assert result.ok, result.explain()
    again = run_pass(account, db, calendar=upstream)
    assert again.ok and not again.plan.actions, [str(a) for a in again.plan.actions[:5]]


@pytest.fixture
def password_env(server: ServerInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(PASSWORD_ENV, server.password or "")
    yield


def test_killed_during_a_push(server: ServerInfo, tmp_path: Path, password_env: None) -> None:
    seed = seed_for("crash-push")
    rng = random.Random(seed)
    # Every kill point needs a fresh push; the quick run pushes a quarter of N each time.
    n = series_count() if FULL else series_count() // 4
    followups = realistic_followups(n, seed=seed)
    points: list[str] = []
    killed = 0
    started = time.monotonic()
    for round_number in range(PUSH_KILLS):
        calendar_url = server.calendar_url_factory(f"crash-push-{seed}-{round_number}")
        db_path = tmp_path / f"push-{round_number}.sqlite"
        db = Database.open(str(db_path))
        FollowUpStore(db).import_followups(followups)
        # The push costs about n + 3 requests: a listing, one PUT per series, a token refresh.
        how = rng.choice(["AFTER_WRITES", "AFTER_REQUESTS", "BEFORE_REQUESTS", "delay"])
        if how == "delay":
            delay = round(rng.uniform(1.0, 1.0 + n * 0.01), 2)
            code, _ = _worker(server, calendar_url, db_path, None, kill_after=delay)
            point = f"after {delay} s"
        else:
            count = rng.randint(1, n)
            code, _ = _worker(server, calendar_url, db_path, (how, count))
            point = f"{how.lower()}={count}"
        killed += code == -signal.SIGKILL
        points.append(point)
        upstream = direct(calendar_url, server.username, server.password)
        _recover_and_check(_account(server, calendar_url), db, upstream)
        assert agreement(db, upstream).followups == n
        upstream.close()
        db.close()
    print(
        f"push of {n} series: {len(points)} kill points, {killed} processes killed mid-pass "
        f"({', '.join(points)}); items lost: 0, items duplicated: 0; "
        f"{time.monotonic() - started:.1f} s"
    )
    assert killed >= PUSH_KILLS * 0.8, "most workers must really have been killed mid-pass"


@pytest.mark.parametrize(
    "kill",
    # The push's requests: 1-2 listing, 3 the collection read empty, 4 the upload (PUT),
    # 5 the listing of what landed, 6 the read-back (multiget), 7 the new sync token.
    [("BEFORE_REQUESTS", 4), ("AFTER_WRITES", 1), ("AFTER_REQUESTS", 5), ("AFTER_REQUESTS", 6)],
    ids=["before-upload", "after-upload", "during-read-back", "after-read-back"],
)
def test_killed_around_a_bulk_first_push(
    radicale_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill: tuple[str, int]
) -> None:
    """A first push into an empty Radicale goes in one upload; a kill at any point of it
    (before the upload, right after its answer, while reading it back) loses nothing and
    puts nothing twice: the next pass links what landed by UID and pushes the rest."""
    server: ServerInfo = radicale_server.info()
    monkeypatch.setenv(PASSWORD_ENV, server.password or "")
    n = 40
    followups = realistic_followups(n, seed=seed_for("crash-bulk"))
    calendar_url = server.calendar_url_factory(f"crash-bulk-{kill[0].lower()}-{kill[1]}")
    db_path = tmp_path / "bulk.sqlite"
    db = Database.open(str(db_path))
    FollowUpStore(db).import_followups(followups)
    code, _ = _worker(server, calendar_url, db_path, kill, first_push="bulk")
    assert code == -signal.SIGKILL
    upstream = direct(calendar_url, server.username, server.password)
    _recover_and_check(_account(server, calendar_url), db, upstream)
    assert agreement(db, upstream).followups == n
    assert len(upstream.list_etags()) == n, "one resource per series, none twice"
    upstream.close()
    db.close()


def test_killed_during_a_pull_with_client_edits(
    server: ServerInfo, tmp_path: Path, password_env: None
) -> None:
    seed = seed_for("crash-pull")
    rng = random.Random(seed)
    n = series_count() if FULL else series_count() // 4  # as for the push: one pass per kill
    calendar_url = server.calendar_url_factory(f"crash-pull-{seed}")
    db_path = tmp_path / "pull.sqlite"
    db = Database.open(str(db_path))
    store = FollowUpStore(db)
    store.import_followups(realistic_followups(n, seed=seed))
    account = _account(server, calendar_url, import_new=True)
    upstream = direct(calendar_url, server.username, server.password)
    assert run_pass(account, db, calendar=upstream).ok
    expected_titles: dict[str, str] = {}
    made: dict[str, str] = {}
    points: list[str] = []
    killed = 0
    started = time.monotonic()
    ids = sorted(f.id for f in store.all())
    for round_number in range(PULL_KILLS):
        edited = rng.sample(ids, max(5, n // 10))
        for followup_id in edited:
            doc = store.get(followup_id)
            assert doc is not None
            title = f"Client edit {round_number} of {followup_id}"
            client_retitle(upstream, fetch(upstream, doc.effective_uid), title)
            expected_titles[followup_id] = title
        for i in range(2):
            uid = f"client-{seed}-{round_number}-{i}@example.org"
            made[uid] = f"Client event {round_number}.{i}"
            client_create(upstream, uid, made[uid], _moment(round_number, i))
        actions = len(edited) + 2
        # Kill points are counted in actions and requests, not seconds: a pull of this size
        # now finishes in well under a second, so a timed kill mostly hit a finished
        # worker (timed kills stay in the push test above, whose pass is long enough).
        how = rng.choice(["AFTER_ACTIONS", "AFTER_ACTIONS", "AFTER_REQUESTS"])
        if how == "AFTER_ACTIONS":
            hook = (how, rng.randint(1, actions - 1))
        else:
            hook = (how, rng.randint(1, 2))  # the listing, or the multiget
        code, _ = _worker(server, calendar_url, db_path, hook, import_new=True)
        killed += code == -signal.SIGKILL
        points.append(f"{hook[0].lower()}={hook[1]}")
        _recover_and_check(account, db, upstream)
        current = {f.id: f for f in store.all()}
        lost = [i for i, title in expected_titles.items() if current[i].title != title]
        assert not lost, f"client edits lost after kill {points[-1]}: {lost[:5]}"
        by_uid = {f.effective_uid: f for f in current.values()}
        missing = [
            uid for uid, title in made.items() if uid not in by_uid or by_uid[uid].title != title
        ]
        assert not missing, f"client events lost after kill {points[-1]}: {missing}"
        assert len(current) == n + len(made), "a follow-up was duplicated or lost"
    print(
        f"pull with client edits on {n} series: {len(points)} kill points, "
        f"{killed} processes killed "
        f"mid-pass ({', '.join(points)}); {len(expected_titles)} edited, "
        f"{len(made)} client events; "
        f"items lost: 0, items duplicated: 0; {time.monotonic() - started:.1f} s"
    )
    assert killed >= PULL_KILLS * 0.6, "most workers must really have been killed mid-pass"


def _moment(round_number: int, i: int) -> dt.datetime:
    return dt.datetime(2026, 4, 6, 8, tzinfo=dt.UTC) + dt.timedelta(days=round_number, hours=i)
