"""Sync against a real local server, measured against the limit in the same run.

For each server (Radicale, Xandikos; started as processes on loopback, throw-away data):

* **initial push** of N series by ``followup-sync``'s pass (mapper, state database,
  conditional PUTs) against **the limit**: a minimal raw-HTTP loop PUTting the same
  bodies to the same server with one keep-alive connection. The ratio is
  ``limit seconds / our seconds`` (1.00 = no client-side cost at all).
* **idle reconcile** of all N: requests, bytes received, seconds, and writes (must be 0).
* **50 changes pulled** after a "client" rewrote 50 resources by plain HTTP: requests,
  seconds; then **one CRM change** pushed: exactly one PUT.

Run: ``python -m benchmarks.bench_sync --n 1000`` (``--n 5000`` for the README figures;
``--servers radicale``). The server's own time per PUT grows with the size of the
calendar, so the push ratio is what to read, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import niquests

from mappings.model import FollowUp, load_followup
from mappings.resource import render
from sync.config import Account
from sync.dav import DavCalendar
from sync.followups import FollowUpStore
from sync.runner import run_pass
from sync.state import Database

STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PATTERNS: list[dict[str, Any]] = [
    {"Pattern": "Daily", "DayPattern": {"Pattern": "EveryWorkday"}},
    {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Monday", "Cycle": 1}},
    {"Pattern": "Weekly", "WeekPattern": {"Weekdays": "Tuesday, Thursday", "Cycle": 2}},
    {"Pattern": "Monthly", "MonthPattern": {"Pattern": "WeekdayOfMonth", "Weekday": "Thursday", "WeekOfMonth": "Fourth", "Cycle": 1}},
    {"Pattern": "Monthly", "MonthPattern": {"Pattern": "DayOfMonth", "Day": 15, "Cycle": 1}},
    {"Pattern": "Yearly", "YearPattern": {"Pattern": "DayOfMonth", "Cycle": 9, "Day": 23}},
]


def realistic_followups(n: int, seed: int = 7) -> list[FollowUp]:
    """N recurring series like a CRM team's: mixed patterns, some with a moved or cancelled date."""
    rng = random.Random(seed)
    result = []
    for i in range(n):
        day = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(0, 60))
        hour = rng.choice([8, 9, 10, 13, 14, 15])
        start = dt.datetime.combine(day, dt.time(hour))
        pattern = dict(rng.choice(PATTERNS))
        pattern.update({"RecurrenceEndType": "Counter", "RecurrenceCounter": rng.randrange(5, 40)})
        doc: dict[str, Any] = {
            "id": f"bench-{i:06d}",
            "kind": rng.choice(["appointment", "appointment", "call", "task"]),
            "title": f"Follow-up {i} with customer {rng.randrange(1000)}",
            "description": "Agenda: status, open issues, next steps. " * rng.randrange(1, 4),
            "location": rng.choice([None, "Meeting room 2", "Teams"]),
            "start": start.isoformat(),
            "end": (start + dt.timedelta(minutes=rng.choice([15, 30, 60]))).isoformat(),
            "timezone": "Europe/Oslo",
            "recurrence": pattern,
        }
        followup = load_followup({k: v for k, v in doc.items() if v is not None})
        if rng.random() < 0.1:
            from mappings.occurrences import occurrences

            first = occurrences(followup)[1]
            original = first.original_start.replace(tzinfo=None)  # type: ignore[union-attr]
            followup = load_followup(
                {**followup.to_json_dict(), "exceptions": [{"original_start": original.isoformat(), "cancelled": True}]}
            )
        result.append(followup)
    return result


@dataclass
class Row:
    server: str
    what: str
    seconds: float
    requests: int | None = None
    bytes_received: int | None = None
    writes: int | None = None
    note: str = ""


def raw_put_loop(server_url: str, calendar_url: str, bodies: list[tuple[str, bytes]], auth: tuple[str, str] | None) -> float:
    """The limit: the same bodies PUT one after another on one keep-alive connection."""
    session = niquests.Session()
    if auth:
        session.auth = auth
    started = time.perf_counter()
    for name, body in bodies:
        response = session.put(
            calendar_url + name,
            data=body,
            headers={"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"},
        )
        if response.status_code not in (201, 204):
            raise RuntimeError(f"raw PUT {name}: {response.status_code}")
    return time.perf_counter() - started


def bench_server(kind: str, n: int, tmp: Path) -> list[Row]:
    from tests.servers import running

    rows: list[Row] = []
    followups = realistic_followups(n)
    (tmp / kind).mkdir(parents=True, exist_ok=True)
    with running(kind, tmp / kind) as server:
        auth = (server.username, server.password) if server.username and server.password else None
        # The limit, on its own calendar.
        bodies = []
        for followup in followups:
            body = render(followup, stamp=STAMP)
            assert body is not None
            bodies.append((f"{followup.id}.ics", body))
        limit_url = server.make_calendar("limit")
        limit = raw_put_loop(server.base_url, limit_url, bodies, auth)
        rows.append(Row(kind, f"raw PUT loop, {n} series (the limit)", limit, n, None, n))

        # Ours, on a fresh calendar of the same server.
        os.environ["BENCH_PW"] = server.password or ""
        calendar_url = server.make_calendar("ours")
        account = Account(
            name=kind, url=server.base_url, username=server.username,
            password_env="BENCH_PW" if server.password else None,
            calendar_url=calendar_url, server_kind=kind,
        )
        db = Database.open(str(tmp / f"{kind}.sqlite"))
        FollowUpStore(db).import_followups(followups)
        calendar = DavCalendar.connect(calendar_url, username=server.username, password=server.password, server_kind=kind)
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar)
        ours = time.perf_counter() - started
        assert not report.errors, report.errors[:3]
        rows.append(Row(kind, f"followup-sync initial push, {n} series", ours, report.requests, None,
                        report.applied.done.get("server create", 0), note=f"{limit / ours:.2f}x the limit"))

        # The first pass after a push still lists our own writes (the token predates them);
        # one settling pass, then the idle reconcile is measured in its steady state.
        run_pass(account, db, calendar=calendar)
        before = calendar.stats.copy()
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar)
        idle = time.perf_counter() - started
        spent = calendar.stats.since(before)
        writes = spent.by_method.get("PUT", 0) + spent.by_method.get("DELETE", 0)
        rows.append(Row(kind, f"idle reconcile of {n}", idle, spent.requests, spent.bytes_received, writes))

        # 50 client-side changes pulled.
        session = niquests.Session()
        if auth:
            session.auth = auth
        changed = followups[:: max(1, n // 50)][:50]
        for followup in changed:
            url = calendar_url + calendar.href_for_uid(followup.effective_uid).rsplit("/", 1)[1]
            current = session.get(url)
            body = current.content.replace(b"SUMMARY:", b"SUMMARY:Moved by client: ", 1)
            session.put(url, data=body, headers={"If-Match": current.headers["ETag"], "Content-Type": "text/calendar"})
        before = calendar.stats.copy()
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar)
        pulled = time.perf_counter() - started
        spent = calendar.stats.since(before)
        rows.append(Row(kind, f"pull {len(changed)} client changes", pulled, spent.requests, spent.bytes_received,
                        spent.by_method.get("PUT", 0), note=f"{report.applied.done.get('crm update', 0)} follow-ups updated"))

        # One CRM change pushes exactly one resource.
        store = FollowUpStore(db)
        one = store.get(followups[-1].id)
        assert one is not None
        store.put(one.model_copy(update={"title": one.title + " (renamed)"}))
        before = calendar.stats.copy()
        started = time.perf_counter()
        run_pass(account, db, calendar=calendar)
        spent = calendar.stats.since(before)
        rows.append(Row(kind, "one CRM change pushed", time.perf_counter() - started, spent.requests, None,
                        spent.by_method.get("PUT", 0)))
        calendar.close()
        db.close()
    return rows


def print_rows(rows: list[Row]) -> None:
    print(f"{'server':9} {'measure':44} {'seconds':>9} {'requests':>9} {'bytes in':>10} {'writes':>7}  note")
    for r in rows:
        print(
            f"{r.server:9} {r.what:44} {r.seconds:9.2f} {'' if r.requests is None else r.requests:>9} "
            f"{'' if r.bytes_received is None else r.bytes_received:>10} {'' if r.writes is None else r.writes:>7}  {r.note}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="series to push (default 1000; 5000 for the README)")
    parser.add_argument("--servers", default="radicale,xandikos", help="comma-separated: radicale,xandikos")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="followup-bench-") as tmp:
        for kind in args.servers.split(","):
            print(f"-- {kind}: pushing {args.n} series …", flush=True)
            rows.extend(bench_server(kind.strip(), args.n, Path(tmp)))
    print_rows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
