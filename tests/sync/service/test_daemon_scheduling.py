"""The daemon's scheduling rules, in-process with a fake pass (no server): fast and exact.

The real pass is exercised end to end in test_daemon_process.py; here the runner is a
function that records when it ran, so the rules themselves can be measured: the bound on
concurrency, a slow account not delaying the others, back-off, one pass per account at
a time, the stop flag, and CRM changes triggering a pass within seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.config import Account, DaemonSettings, Settings, backoff_seconds
from sync.engine.actions import Plan
from sync.engine.runner import PassReport
from sync.errors import TransportError
from sync.service.daemon import Daemon
from sync.state.db import CollectionState, Database, utcnow
from tests.sync.service.conftest import followup, put_followups, wait_for

pytestmark = pytest.mark.timeout(60)


class FakeRunner:
    """Stands in for run_pass: records calls, sleeps or fails per account, writes last_run_at."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: list[tuple[str, float, float]] = []  # (account, start, end)
        self.active: dict[str, int] = {}
        self.peak = 0
        self.peak_same_account = 0
        self.delay: dict[str, float] = {}
        self.fail: set[str] = set()
        self.saw_stop: list[bool] = []
        self._lock = threading.Lock()

    def __call__(
        self, account: Account, db: Database, *, full: bool, should_stop: Callable[[], bool]
    ) -> PassReport:
        name = account.name
        with self._lock:
            self.active[name] = self.active.get(name, 0) + 1
            self.peak = max(self.peak, sum(self.active.values()))
            self.peak_same_account = max(self.peak_same_account, self.active[name])
        start = time.monotonic()
        try:
            deadline = start + self.delay.get(name, 0.0)
            while time.monotonic() < deadline:
                if should_stop():
                    self.saw_stop.append(True)
                    break
                time.sleep(0.01)
            if name in self.fail:
                raise TransportError("server down")
            with db.sessions.begin() as session:
                state = session.get(CollectionState, name) or CollectionState(
                    account=name, calendar_url="http://x/"
                )
                session.add(state)
                state.last_run_at = utcnow()
            return PassReport(name, "full" if full else "incremental", False, Plan((), ()))
        finally:
            with self._lock:
                self.active[name] -= 1
                self.calls.append((name, start, time.monotonic()))

    def count(self, name: str) -> int:
        return sum(1 for call in self.calls if call[0] == name)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(str(tmp_path / "state.sqlite"))
    yield database
    database.close()


def make_daemon(
    db: Database, names: list[str], *, workers: int = 4, interval: float = 0.3, **daemon: Any
) -> tuple[Daemon, FakeRunner]:
    settings = Settings(
        database=db.url,
        daemon=DaemonSettings(
            max_concurrent_accounts=workers,
            crm_poll_seconds=0.2,
            crm_debounce_seconds=0.1,
            **daemon,
        ),
        accounts={
            n: Account(
                name=n,
                url="http://127.0.0.1:9/",
                owners=[n],
                interval_seconds=interval,
                jitter_seconds=0,
                full_every=0,
            )
            for n in names
        },
    )
    runner = FakeRunner(db)
    return Daemon(settings, db, runner=runner), runner


def test_concurrency_is_bounded_and_a_slow_account_does_not_delay_the_others(db: Database) -> None:
    daemon, runner = make_daemon(db, ["slow", "a", "b", "c"], workers=2)
    runner.delay = {"slow": 2.5, "a": 0.05, "b": 0.05, "c": 0.05}
    daemon.start()
    try:
        time.sleep(2.0)
    finally:
        daemon.stop(timeout=5)
    assert runner.peak <= 2
    assert runner.count("slow") == 1
    for name in ("a", "b", "c"):
        assert runner.count(name) >= 3, (
            f"{name} ran {runner.count(name)} times while 'slow' held one worker"
        )


def test_a_failing_account_backs_off_and_is_reported(db: Database) -> None:
    daemon, runner = make_daemon(db, ["bad", "good"], interval=0.2, max_backoff_seconds=5)
    runner.fail = {"bad"}
    daemon.start()
    try:
        time.sleep(2.5)
    finally:
        daemon.stop(timeout=5)
    # Without back-off: ~12 tries in 2.5 s. With it: waits 0.2, 0.4, 0.8, 1.6 s -> at most 5.
    assert 2 <= runner.count("bad") <= 5, runner.count("bad")
    assert runner.count("good") >= 8
    with db.session() as session:
        state = session.get(CollectionState, "bad")
        assert state is not None and (state.consecutive_failures or 0) >= 2
        assert state.last_result is not None and state.last_result.startswith("failed")
        assert "server down" in state.last_result
    text = daemon.metrics.render().decode()
    assert 'followup_sync_runs_total{account="bad",mode="incremental",result="failed"}' in text
    assert backoff_seconds(daemon.accounts["bad"], 30, 5) == 5


def test_a_pass_that_succeeds_after_failures_ends_the_back_off(db: Database) -> None:
    daemon, runner = make_daemon(db, ["flaky"], interval=60, max_backoff_seconds=3600)

    def failures() -> int:
        with db.session() as session:
            state = session.get(CollectionState, "flaky")
            assert state is not None
            return state.consecutive_failures or 0

    runner.fail = {"flaky"}
    assert [daemon.run_account("flaky", reason="api") for _ in range(2)] == ["failed"] * 2
    assert failures() == 2
    assert daemon.run_account("flaky", reason="interval").startswith("backing off")
    runner.fail = set()
    assert daemon.run_account("flaky", reason="api") == "ok"
    assert failures() == 0
    # Backed off no more: only fresh (it just ran), and a success after a success keeps 0.
    assert daemon.run_account("flaky", reason="interval") == "fresh"
    assert daemon.run_account("flaky", reason="api") == "ok"
    assert failures() == 0


def test_one_pass_per_account_at_a_time(db: Database) -> None:
    daemon, runner = make_daemon(db, ["x"], interval=60)
    runner.delay = {"x": 0.5}
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(daemon.run_account("x", reason="manual")))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["busy"] * 4 + ["ok"]
    assert runner.peak_same_account == 1


def test_stop_reaches_the_pass_in_flight(db: Database) -> None:
    daemon, runner = make_daemon(db, ["long"], interval=60)
    runner.delay = {"long": 30}
    daemon.start()
    wait_for(lambda: runner.active.get("long"), 10, "the pass to start", 0.02)
    started = time.monotonic()
    assert daemon.stop(timeout=10)
    assert time.monotonic() - started < 5
    assert runner.saw_stop == [True]


def test_a_crm_write_triggers_its_accounts_within_seconds(db: Database) -> None:
    daemon, runner = make_daemon(db, ["alice", "bob"], interval=3600)
    daemon.start()
    try:
        wait_for(
            lambda: runner.count("alice") == 1 and runner.count("bob") == 1, 10, "the first passes"
        )
        put_followups(db.url, [followup("c1", "New", owner="alice")])
        started = time.monotonic()
        wait_for(lambda: runner.count("alice") == 2, 5, "a pass of alice after the CRM write", 0.02)
        latency = time.monotonic() - started
        time.sleep(0.5)
        assert runner.count("bob") == 1, "bob's follow-ups did not change"
        assert latency < 2.0
        assert "crm-poll" in daemon.job_ids() and "sync:alice" in daemon.job_ids()
    finally:
        daemon.stop(timeout=5)
