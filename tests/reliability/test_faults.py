"""Two-way sync through a faulty network converges, loses nothing and duplicates nothing.

The sync worker talks to a real server through ``FaultProxy`` at a 10 % fault rate (5xx
with and without Retry-After, resets before and after the server applied a write, stalls
past the client timeout, truncated bodies, malformed XML, malformed iCalendar). Client
edits are made straight on the server, behind the proxy. Passes repeat until one is clean
(at most ``MAX_PASSES``); then a pass without the proxy must have nothing left to do and
the server and the store must agree item for item.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from mappings.errors import FollowupSyncError
from mappings.model import FollowUp
from sync.config import Account
from sync.run import PassReport, run_pass
from sync.state.db import Database, PendingHref, SyncItem
from sync.state.followups import FollowUpStore
from sync.stores.caldav import DavCalendar, RetryPolicy
from sync.testing.followups import realistic_followups
from tests.reliability.fault_proxy import FaultProxy
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

pytestmark = [pytest.mark.server, pytest.mark.timeout(7200 if FULL else 600)]

MAX_PASSES = 15
TIMEOUT = 3.0  # client timeout; the proxy stalls longer than this
POLICY = RetryPolicy(attempts=4, backoff_initial=0.05, backoff_max=0.4, retry_after_max=2.0)
PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"


class Sleeps:
    """The calendar's sleep: records every wait (so Retry-After can be checked) and waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def _through(
    proxy: FaultProxy, server: ServerInfo, calendar_url: str, sleeps: Sleeps
) -> DavCalendar:
    calendar = DavCalendar.connect(
        proxy.url_for(calendar_url),
        username=server.username,
        password=server.password,
        timeout=TIMEOUT,
        server_kind=server.kind,
        retry=POLICY,
        sleep=sleeps,  # the test's clock; production uses time.sleep
        # One PUT per series: the faults need the push's many requests to mean something
        # (a bulk first push is one; its failures are tested in test_crashes).
        capability_overrides={"bulk_upload_into_empty": False},
    )
    return calendar


def _account(server: ServerInfo, calendar_url: str, monkeypatch: pytest.MonkeyPatch) -> Account:
    monkeypatch.setenv(PASSWORD_ENV, server.password or "")
    return Account(
        name=f"faults-{server.kind}",
        url=server.url,
        username=server.username,
        password_env=PASSWORD_ENV if server.password else None,
        calendar_url=calendar_url,
        server_kind=server.kind,
        import_new=True,
        timeout=TIMEOUT,
        batch_size=10,  # more multigets, so more of them meet a fault
    )


def converge(
    account: Account, db: Database, calendar: DavCalendar, *, log: Callable[[str], None] = print
) -> tuple[int, list[PassReport]]:
    """Run passes until one has no error and nothing to do; (passes used, their reports)."""
    reports: list[PassReport] = []
    for number in range(1, MAX_PASSES + 1):
        try:
            report = run_pass(account, db, calendar=calendar)
        except FollowupSyncError as exc:  # a failed listing ends a pass before planning
            log(f"  pass {number}: stopped: {exc}")
            continue
        reports.append(report)
        log(
            f"  pass {number}: {len(report.plan.actions)} actions, {report.applied.done}, "
            f"{len(report.errors)} errors"
        )
        if report.ok and not report.plan.actions:
            return number, reports
    raise AssertionError(f"no clean pass within {MAX_PASSES} passes")


def test_two_way_sync_through_ten_percent_faults_converges(
    dav_server: ServerInfo, calendar_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = seed_for("faults")
    rng = random.Random(seed)
    n = series_count()
    db = Database.open(str(tmp_path / "state.sqlite"))
    store = FollowUpStore(db)
    store.import_followups(realistic_followups(n, seed=seed))
    account = _account(dav_server, calendar_url, monkeypatch)
    upstream = direct(calendar_url, dav_server.username, dav_server.password)
    sleeps = Sleeps()
    started = time.monotonic()

    with FaultProxy(dav_server.url, rate=0.10, seed=seed, lifetime=1200) as proxy:
        calendar = _through(proxy, dav_server, calendar_url, sleeps)
        print(f"phase 1: push {n} CRM-created series")
        passes_push, _ = converge(account, db, calendar)

        # Phase 2: both sides change, on disjoint items, while the faults go on.
        ids = sorted(f.id for f in store.all())
        rng.shuffle(ids)
        tenth = max(2, n // 10)
        client_edited, crm_edited, crm_deleted = (
            ids[:tenth],
            ids[tenth : 2 * tenth],
            ids[2 * tenth : 2 * tenth + tenth // 5],
        )
        client_titles: dict[str, str] = {}
        for followup_id in client_edited:
            doc = store.get(followup_id)
            assert doc is not None
            client_titles[followup_id] = f"Client renamed {followup_id}"
            client_retitle(upstream, fetch(upstream, doc.effective_uid), client_titles[followup_id])
        client_made = {
            f"client-{seed}-{i}@example.org": f"Made in a client {i}"
            for i in range(max(2, n // 20))
        }
        for i, (uid, title) in enumerate(client_made.items()):
            client_create(
                upstream,
                uid,
                title,
                dt.datetime(2026, 2, 2, 8, tzinfo=dt.UTC) + dt.timedelta(hours=i),
            )
        crm_titles: dict[str, str] = {}
        for followup_id in crm_edited:
            doc = store.get(followup_id)
            assert doc is not None
            crm_titles[followup_id] = f"CRM renamed {followup_id}"
            store.put(doc.model_copy(update={"title": crm_titles[followup_id]}))
        for followup_id in crm_deleted:
            store.delete(followup_id)
        print(
            f"phase 2: {len(client_edited)} client edits, {len(client_made)} client creations, "
            f"{len(crm_edited)} CRM edits, {len(crm_deleted)} CRM deletions"
        )
        passes_both, _ = converge(account, db, calendar)
        proxy.stop()

    # A pass with no proxy at all finds nothing left to do.
    clean = run_pass(account, db, calendar=upstream)
    assert clean.ok, clean.errors[:5]
    assert not clean.plan.actions, [str(a) for a in clean.plan.actions[:5]]

    result = agreement(db, upstream)
    stats = proxy.stats
    unconditional = stats.unconditional_writes()
    waits_after = [w for w in sleeps.waits if w == 1.0]
    print(
        f"faults injected: {stats.injected} of {len(stats.requests)} requests "
        f"{dict(stats.faults)}; "
        f"Retry-After sent {stats.retry_after_sent}, waited 1.0 s {len(waits_after)} times; "
        f"passes: push {passes_push}, two-way {passes_both}; {result.explain()}; "
        f"{time.monotonic() - started:.1f} s"
    )
    assert stats.injected >= len(stats.requests) * 0.05, (
        "the proxy injected too few faults to mean anything"
    )
    assert result.ok, result.explain()
    followups = {f.id: f for f in FollowUpStore(db).all()}
    lost = [i for i, title in client_titles.items() if followups[i].title != title]
    lost += [i for i, title in crm_titles.items() if followups[i].title != title]
    assert not lost, f"edits lost: {lost[:5]}"
    assert not set(crm_deleted) & set(followups), "a deleted follow-up came back"
    by_uid = {f.effective_uid: f for f in followups.values()}
    assert all(uid in by_uid and by_uid[uid].title == title for uid, title in client_made.items())
    assert result.followups == n - len(crm_deleted) + len(client_made)
    # Only requests that are safe to repeat were repeated: every write was conditional.
    assert unconditional == [], unconditional[:5]
    # Retry-After was honoured (1 s asked, 1 s waited) and no wait ever passed the cap.
    assert max(sleeps.waits, default=0.0) <= POLICY.retry_after_max
    if stats.retry_after_sent:
        assert waits_after, "the client never waited the Retry-After the server asked for"
    print(f"items lost: 0, items duplicated: 0 ({n} series, seed {seed})")


def test_retry_after_is_honoured_and_capped(dav_server: ServerInfo, calendar_url: str) -> None:
    """503 + Retry-After on the first request: the client waits that long, at most the cap."""
    for asked, expected in (("1", 1.0), ("600", POLICY.retry_after_max)):
        first = {"done": False}

        def once(method: str, path: str, body: bytes, first: dict[str, bool] = first) -> str | None:
            if first["done"]:
                return None
            first["done"] = True
            return "status"

        sleeps = Sleeps()
        with FaultProxy(
            dav_server.url, rate=0.0, seed=1, retry_after=asked, force=once, lifetime=60
        ) as proxy:
            proxy.status_fault = lambda: (503, True)  # type: ignore[method-assign]
            calendar = _through(proxy, dav_server, calendar_url, sleeps)
            calendar.list_etags()
        print(f"Retry-After: {asked} -> waited {sleeps.waits}")
        assert sleeps.waits == [expected]


def test_a_run_that_keeps_failing_names_the_items_and_keeps_state_consistent(
    dav_server: ServerInfo, calendar_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = seed_for("keeps-failing")
    followups: list[FollowUp] = realistic_followups(20, seed=seed)
    db = Database.open(str(tmp_path / "state.sqlite"))
    FollowUpStore(db).import_followups(followups)
    account = _account(dav_server, calendar_url, monkeypatch)
    upstream = direct(calendar_url, dav_server.username, dav_server.password)
    broken_uid = f"always-broken-{seed}@example.org"
    client_create(
        upstream,
        broken_uid,
        "Unreadable through the proxy",
        dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC),
    )
    refused = {f.id for f in followups[:3]}
    refused_paths = {upstream.href_for_uid(f.effective_uid) for f in followups[:3]}
    armed = {"on": True}

    def always(method: str, path: str, body: bytes) -> str | None:
        if not armed["on"]:
            return None
        if method == "PUT" and path in refused_paths:
            return "status"
        if method == "REPORT" and b"calendar-data" in body and b"sync-collection" not in body:
            return f"bad_ical={broken_uid}"
        return None

    sleeps = Sleeps()
    with FaultProxy(dav_server.url, rate=0.0, seed=seed, force=always, lifetime=300) as proxy:
        calendar = _through(proxy, dav_server, calendar_url, sleeps)
        for number in range(1, 4):
            report = run_pass(account, db, calendar=calendar)
            failed = dict(report.errors)
            print(f"  pass {number}: {len(failed)} failed: {sorted(failed)}")
            assert set(failed) >= refused, "a refused write was not reported by name"
            assert all("server answered 50" in failed[i] for i in refused), [
                failed[i] for i in refused
            ]
            read_errors = [reason for href, reason in report.read_errors]
            assert any(broken_uid in reason for reason in read_errors), read_errors
            assert len(failed) == len(refused) + 1, "an item that did not fail was reported"
            with db.session() as session:
                recorded = set(session.scalars(select(SyncItem.followup_id)))
                pending = {p.href: p for p in session.scalars(select(PendingHref))}
            # Consistent: refused items are not recorded as synced, the others are; the
            # unreadable resource waits in pending_hrefs with its reason and attempts.
            assert not recorded & refused
            assert recorded >= {f.id for f in followups} - refused
            assert [p.attempts for p in pending.values()] == [number]
            assert broken_uid in next(iter(pending.values())).reason
        armed["on"] = False
        passes, _ = converge(account, db, calendar)
    result = agreement(db, upstream)
    print(f"after the faults stopped: clean in {passes} pass(es); {result.explain()}")
    assert result.ok, result.explain()
    with db.session() as session:
        assert not list(session.scalars(select(PendingHref)))
