"""Many accounts on one server: one idle round, in one daemon and shared by three.

``python -m benchmarks.bench_accounts [--accounts 1000] [--series 100] [--daemons 3]``

A CRM with a thousand users means a thousand calendars. This starts one Radicale and one
PostgreSQL on loopback (throw-away data), gives every account its own calendar holding
``--series`` realistic series (written into Radicale's storage folder, as
``bench_sync --idle-only`` does, since pushing 100,000 series would take days), records
the state a first pass leaves (the CRM rows and one sync record per series), lets each
account settle with one pass, and then times **one idle round over all accounts**:

* **one daemon**: one ``sync.service.daemon.Daemon`` in a process of its own running every
  account's scheduled pass (``run_account``, through its thread pool of
  ``max_concurrent_accounts``), as its interval timers would;
* **N daemons**: the same round shared by ``--daemons`` processes on the same
  PostgreSQL, each going through all accounts from its own starting point; the cluster
  lock and the shared schedule decide who runs what. Each account must be synced
  exactly once (counted from ``daemon_runs``).

Printed per round: seconds, requests (counted by a logging proxy in front of the
server), our CPU seconds per idle account pass (the daemon processes' own CPU time,
server excluded), each daemon's peak RSS, the passes each daemon ran and whether every
account ran exactly once; where the round's time went (CPU seconds of our processes, the
server, PostgreSQL and the whole machine, from ``/proc``, between the start signal and
the last report); the tries per outcome (passes, tries skipped because another daemon
held or had already run the account) with their CPU. The ratios, each against a
baseline of the same run: N daemons' time against one daemon's, with the two floors
under it (all the round's CPU on the machine's cores; the busiest daemon's own CPU), and
our CPU per idle pass against the time of its one request alone (the server's answer
to a PROPFIND Depth 0, median over 50 accounts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, update

from benchmarks.bench_sync import load_line
from benchmarks.peers import CountingProxy
from mappings.model import FollowUp
from mappings.resource import render
from sync.config import Account, DaemonSettings, Settings
from sync.state.db import (
    CollectionState,
    DaemonRun,
    Database,
    FollowUpRow,
    SyncItem,
    bump_revision,
    utcnow,
)
from sync.state.followups import content_hash
from sync.stores.caldav import DavCalendar
from sync.testing.followups import iter_followups

PASSWORD_ENV = "BENCH_ACCOUNTS_PW"
INTERVAL = 3600.0
STAMP = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def account_names(count: int) -> list[str]:
    return [f"user-{index:04d}" for index in range(count)]


def accounts_for(server: Any, proxy_url: str, count: int) -> dict[str, Account]:
    """One account per user, each on its own calendar, reached through the counting proxy."""
    accounts = {}
    for index, name in enumerate(account_names(count)):
        calendar_url = f"{proxy_url}{server.home_path}{name}/"
        accounts[name] = Account(
            name=name,
            url=proxy_url,
            username=server.username,
            password_env=PASSWORD_ENV if server.password else None,
            calendar_url=calendar_url,
            server_kind="radicale",
            owners=[f"owner-{index}"],
            interval_seconds=INTERVAL,
        )
    return accounts


def seed(server: Any, db: Database, accounts: int, series: int) -> None:
    """Calendars filled in Radicale's folder; CRM rows and sync records as a first pass leaves them.

    Rows are inserted in bulk (Core), so the change counter is moved once by hand.
    """
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def phase(label: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[label] = now - clock
        clock = now

    folders = {}
    names = account_names(accounts)
    for name in names:
        url = server.make_calendar(name)
        folders[name] = (url, server.log_path.parent / "collections" / "collection-root")
    phase("calendars")
    crm: list[dict[str, Any]] = []
    followups: list[tuple[str, FollowUp, bytes]] = []
    for index, followup in enumerate(iter_followups(accounts * series, owners=accounts)):
        name = names[index % accounts]
        body = render(followup, stamp=STAMP)
        assert body is not None
        url, root = folders[name]
        path = urlsplit(url).path.strip("/")
        (root / path / f"{followup.id}.ics").write_bytes(body)
        followups.append((name, followup, body))
        crm.append(
            {
                "id": followup.id,
                "uid": followup.effective_uid,
                "kind": followup.kind.value,
                "owner": followup.owner,
                "document": followup.to_json_dict(),
                "content_hash": content_hash(followup),
                "deleted": False,
                "updated_at": utcnow(),
                "origin_account": None,
                "has_participants": False,
            }
        )
    phase("series written")
    with db.sessions.begin() as session:
        for start in range(0, len(crm), 2000):
            session.execute(insert(FollowUpRow), crm[start : start + 2000])
    phase("CRM rows")
    # The ETags Radicale gives these files: one listing per calendar (a first pass's own).
    etags: dict[str, dict[str, str]] = {}
    for name, (url, _) in folders.items():
        with DavCalendar.connect(
            url, username=server.username, password=server.password, server_kind="radicale"
        ) as calendar:
            etags[name] = {
                href.rsplit("/", 1)[-1]: etag for href, etag in calendar.list_etags().items()
            }
    phase("listings (the server reads every file once)")
    records = []
    for name, followup, body in followups:
        url = folders[name][0]
        file = f"{followup.id}.ics"
        records.append(
            {
                "account": name,
                "followup_id": followup.id,
                "uid": followup.effective_uid,
                "href": urlsplit(url).path + file,
                "etag": etags[name][file],
                "synced_hash": content_hash(followup),
                "synced_document": followup.to_json_dict(),
                "server_data": body,
                "updated_at": utcnow(),
                "detached": False,
            }
        )
    with db.sessions.begin() as session:
        for start in range(0, len(records), 2000):
            session.execute(insert(SyncItem), records[start : start + 2000])
        bump_revision(session)
    age_storage(server.log_path.parent / "collections")
    phase("sync records")
    print("-- seeding: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()), flush=True)


def age_storage(root: Path, seconds: float = 3600) -> None:
    """Date the calendars back, as after a quiet hour (getlastmodified is then trusted)."""
    stamp = time.time() - seconds
    for folder, _dirs, files in os.walk(root):
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            os.utime(path, (stamp, stamp))


def make_due(db: Database) -> None:
    """Every account's interval has passed (its last pass an interval and a half ago)."""
    with db.sessions.begin() as session:
        session.execute(
            update(CollectionState).values(
                last_run_at=utcnow() - dt.timedelta(seconds=INTERVAL * 1.5)
            )
        )


# --- the daemon processes -------------------------------------------------------------------------


def worker(spec_path: str) -> int:
    """One daemon process: run every account's scheduled pass once, print what it cost."""
    spec = json.loads(Path(spec_path).read_text())
    from sync.service.daemon import Daemon
    from tests.reliability.worker import peak_rss_kb  # VmHWM: this daemon's own peak

    settings = Settings(
        database=spec["database"],
        daemon=DaemonSettings(http_port=0, max_concurrent_accounts=spec["concurrency"]),
        accounts={name: Account(**value) for name, value in spec["accounts"].items()},
    )
    db = Database(spec["database"])
    daemon = Daemon(settings, db)
    names = sorted(daemon.accounts)
    start = spec["offset"] % len(names)
    order = names[start:] + names[:start]
    print("ready", flush=True)
    sys.stdin.readline()  # every daemon starts the round together, start-up not counted
    cpu = time.process_time()
    started = time.time()
    profiler = None
    if spec.get("profile"):
        import cProfile

        # CPU time, not wall time: the goal is our own CPU per pass, and a wall-time profile
        # is mostly waiting for PostgreSQL and the server.
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()

    def timed(name: str) -> tuple[str, float, float]:
        """One scheduled try: its outcome, wall seconds and this thread's CPU seconds."""
        wall, thread_cpu = time.perf_counter(), time.thread_time()
        outcome = daemon.run_account(name, reason="interval")
        return outcome, time.perf_counter() - wall, time.thread_time() - thread_cpu

    if profiler is not None:  # cProfile sees one thread: the profiled round runs in this one
        tries = [timed(n) for n in order]
    else:
        with ThreadPoolExecutor(spec["concurrency"]) as pool:
            tries = list(pool.map(timed, order))
    outcomes = [outcome for outcome, _, _ in tries]
    by_outcome: dict[str, list[float]] = {}
    for outcome, wall, thread_cpu in tries:
        counted = by_outcome.setdefault(outcome, [0, 0.0, 0.0])
        counted[0] += 1
        counted[1] += wall
        counted[2] += thread_cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    ended = time.time()
    cpu = time.process_time() - cpu
    ran = sum(1 for outcome in outcomes if outcome == "ok")
    print(
        json.dumps(
            {
                "started": started,
                "ended": ended,
                "cpu": cpu,
                "passes": ran,
                "skipped": len(outcomes) - ran,
                "outcomes": sorted(set(outcomes)),
                "by_outcome": by_outcome,
                "maxrss_mb": peak_rss_kb() / 1024,
            }
        )
    )
    db.close()
    return 0


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its live descendants and the children it has reaped.

    PostgreSQL runs one backend process per connection (the postmaster reaps them), and
    Radicale one process with threads: this counts either whole, from ``/proc``.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue  # ended meanwhile: its parent's reaped-children time has it
        # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after "pid (comm)".
        total += sum(int(value) for value in fields[11:15]) / ticks
        pending.extend(int(child) for child in children)
    return total


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, every core (``/proc/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / ticks, sum(values) / ticks


@dataclass
class CpuMeter:
    """CPU seconds spent by the server, PostgreSQL and the whole machine over one round."""

    server_pid: int
    postgres_pid: int

    def read(self) -> dict[str, float]:
        busy, everything = machine_cpu_seconds()
        return {
            "server": tree_cpu_seconds(self.server_pid),
            "postgres": tree_cpu_seconds(self.postgres_pid),
            "machine_busy": busy,
            "machine_all": everything,
        }


def run_daemons(
    spec: dict[str, Any], count: int, tmp: Path, meter: CpuMeter
) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    """``count`` daemon processes started together; wall time of the round, their reports,
    and the CPU the server, PostgreSQL and the machine spent from the start signal to the
    last report (process start-up and exit left out).

    Every daemon gets the start signal before any report is read: waiting for one daemon
    to finish before starting the next (``communicate`` one after another) let the first
    run every account and the others only skip them, which measured a sequence, not a
    shared round.
    """
    procs = []
    for index in range(count):
        path = tmp / f"spec-{index}.json"
        path.write_text(json.dumps(spec | {"offset": index * len(spec["accounts"]) // count}))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_accounts", "--worker", str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=os.environ.copy(),
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit("a daemon process did not start")
    before = meter.read()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    lines = []
    for proc in procs:
        assert proc.stdout is not None
        lines.append(proc.stdout.readline())  # the report is the worker's last line
    after = meter.read()
    for proc in procs:
        proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a daemon process failed ({proc.returncode})")
    reports = [json.loads(line.decode()) for line in lines]
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    return seconds, reports, {key: after[key] - before[key] for key in after}


def runs_per_account(db: Database, since: dt.datetime) -> dict[str, int]:
    with db.session() as session:
        rows = session.execute(
            select(DaemonRun.account, func.count())
            .where(DaemonRun.started_at >= since)
            .group_by(DaemonRun.account)
        )
        return {row[0]: int(row[1]) for row in rows}


def round_of(
    label: str,
    db: Database,
    proxy: CountingProxy,
    spec: dict[str, Any],
    daemons: int,
    tmp: Path,
    meter: CpuMeter,
) -> dict[str, Any]:
    make_due(db)
    since = utcnow()
    before = proxy.traffic.requests
    seconds, reports, spent = run_daemons(spec, daemons, tmp, meter)
    runs = runs_per_account(db, since)
    passes = sum(r["passes"] for r in reports)
    by_outcome: dict[str, list[float]] = {}
    for report in reports:
        for outcome, values in report["by_outcome"].items():
            total = by_outcome.setdefault(outcome, [0, 0.0, 0.0])
            for index, value in enumerate(values):
                total[index] += value
    result = {
        "label": label,
        "seconds": seconds,
        "requests": proxy.traffic.requests - before,
        "passes": passes,
        "cpu": sum(r["cpu"] for r in reports),
        "maxrss_mb": max(r["maxrss_mb"] for r in reports),
        "accounts_run": len(runs),
        "most_runs_of_one_account": max(runs.values(), default=0),
        "outcomes": sorted({o for r in reports for o in r["outcomes"]}),
        "by_outcome": by_outcome,
        "passes_per_daemon": [r["passes"] for r in reports],
        "cpu_per_daemon": [r["cpu"] for r in reports],
        "cpu_server": spent["server"],
        "cpu_postgres": spent["postgres"],
        "cpu_machine": spent["machine_busy"],
        "cores_seconds": spent["machine_all"],
    }
    return result


def request_alone(server: Any, accounts: dict[str, Account], sample: int = 50) -> float:
    """The idle pass's one request (PROPFIND Depth 0, getlastmodified) alone: median seconds."""
    timings = []
    for account in list(accounts.values())[:sample]:
        direct = server.home_url + account.name + "/"
        with DavCalendar.connect(
            direct, username=server.username, password=server.password, server_kind="radicale"
        ) as calendar:
            started = time.perf_counter()
            calendar.last_modified()
            timings.append(time.perf_counter() - started)
    return sorted(timings)[len(timings) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--series", type=int, default=100, help="series per account")
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="max_concurrent_accounts")
    parser.add_argument("--n", type=int, help="total series (run.py's size): sets --series")
    parser.add_argument(
        "--profile",
        help="after the measured rounds, one more one-daemon round (passes one after "
        "another) profiled into this file",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.n:
        args.series = max(1, args.n // args.accounts)
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from tests.pg import running_postgres
    from tests.servers import running

    print(
        f"-- {args.accounts} accounts x {args.series} series on one Radicale, PostgreSQL; "
        f"{load_line()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="followup-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "radicale").mkdir()
        with running("radicale", tmp / "radicale") as server, running_postgres() as pg:
            os.environ[PASSWORD_ENV] = server.password or ""
            url = pg.create_database("bench")
            db = Database.open(url)
            proxy = CountingProxy(server.base_url)
            proxy_url = f"http://127.0.0.1:{proxy.port}"
            accounts = accounts_for(server, proxy_url, args.accounts)
            started = time.perf_counter()
            seed(server, db, args.accounts, args.series)
            print(f"-- seeded in {time.perf_counter() - started:.0f} s; settling …", flush=True)
            spec = {
                "database": url,
                "concurrency": args.concurrency,
                "accounts": {n: a.model_dump(mode="json") for n, a in accounts.items()},
            }
            meter = CpuMeter(server.process.pid, pg.process.pid)
            settle = round_of("settling round (first pass of each)", db, proxy, spec, 1, tmp, meter)
            print(f"-- {settle}", flush=True)
            one = round_of("idle round, one daemon", db, proxy, spec, 1, tmp, meter)
            many = round_of(
                f"idle round, {args.daemons} daemons", db, proxy, spec, args.daemons, tmp, meter
            )
            if args.profile:  # a round of its own: profiled passes run one after another
                profiled = spec | {"profile": args.profile}
                round_of("profiled", db, proxy, profiled, 1, tmp, meter)
            alone = request_alone(server, accounts)
            proxy.close()
            db.close()
    print_results(args, [one, many], alone)
    print(load_line())
    return 0


def print_results(args: argparse.Namespace, rounds: list[dict[str, Any]], alone: float) -> None:
    one = rounds[0]
    cores = os.cpu_count() or 1
    print(f"\n{args.accounts} accounts x {args.series} series, one Radicale, PostgreSQL")
    print(
        "| round | seconds | requests | passes | requests/pass | our CPU ms/pass "
        "| peak RSS MB | each account run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rounds:
        passes = max(1, r["passes"])
        once = (
            "once"
            if r["accounts_run"] == args.accounts and r["most_runs_of_one_account"] == 1
            else f"{r['accounts_run']} run, at most {r['most_runs_of_one_account']}x"
        )
        print(
            f"| {r['label']} | {r['seconds']:.1f} | {r['requests']} | {r['passes']} | "
            f"{r['requests'] / passes:.2f} | {1000 * r['cpu'] / passes:.1f} | "
            f"{r['maxrss_mb']:.0f} | {once} |"
        )
    print(f"\nwhere the time goes ({cores} cores; CPU seconds over the round)")
    print(
        "| round | seconds | ours | server | PostgreSQL | machine busy | busy share of "
        "cores x seconds | floor: (ours + server + PostgreSQL) / cores |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rounds:
        floor = (r["cpu"] + r["cpu_server"] + r["cpu_postgres"]) / cores
        print(
            f"| {r['label']} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['cpu_server']:.1f} | "
            f"{r['cpu_postgres']:.1f} | {r['cpu_machine']:.1f} | "
            f"{100 * r['cpu_machine'] / max(r['cores_seconds'], 1e-9):.0f} % | {floor:.1f} s |"
        )
    print(
        "\ntries per outcome (a skipped try: another daemon holds the account's lock, "
        "or already ran it)"
    )
    print("| round | outcome | tries | wall s (summed over workers) | CPU s |")
    print("|---|---|---|---|---|")
    for r in rounds:
        for outcome, (count, wall, cpu) in sorted(r["by_outcome"].items()):
            print(f"| {r['label']} | {outcome} | {count:.0f} | {wall:.1f} | {cpu:.2f} |")
    for r in rounds:
        print(f"{r['label']}: passes per daemon {r['passes_per_daemon']}")
    print(f"\naccounts run: {one['accounts_run']} of {args.accounts} asked")
    for r in rounds[1:]:
        print(
            f"{r['label']}: {r['seconds'] / one['seconds']:.2f}x one daemon's time (goal <= 0.5x)"
        )
        # Two floors under the shared round, from its own CPU figures: all the work on the
        # machine's cores, and the busiest daemon alone (one process runs Python on one
        # core at a time, so it cannot be quicker than its own CPU time).
        all_work = (r["cpu"] + r["cpu_server"] + r["cpu_postgres"]) / cores
        busiest = max(r["cpu_per_daemon"])
        others = r["cpu_machine"] - r["cpu"] - r["cpu_server"] - r["cpu_postgres"]
        print(
            f"  at best on these {cores} cores: {all_work:.1f} s "
            f"({all_work / one['seconds']:.2f}x); with a free core per process: "
            f"{busiest:.1f} s, the busiest daemon's own CPU ({busiest / one['seconds']:.2f}x); "
            f"the machine was busy {100 * r['cpu_machine'] / max(r['cores_seconds'], 1e-9):.0f} "
            f"% of the round, {others:.1f} CPU s of it by other jobs"
        )
    per_pass = one["seconds"] / max(1, one["passes"])
    cpu_per_pass = one["cpu"] / max(1, one["passes"])
    print(
        f"our CPU per idle account pass: {1000 * cpu_per_pass:.1f} ms (goal <= 10), "
        f"{cpu_per_pass / alone:.1f}x the time of its one request alone "
        f"({1000 * alone:.1f} ms, PROPFIND Depth 0, median of 50)"
    )
    print(
        f"one idle account pass: {1000 * per_pass:.1f} ms of wall time in the one-daemon round "
        f"(with {args.concurrency} workers), {per_pass / alone:.1f}x its one request alone"
    )
    print(
        f"requests per idle account pass: {one['requests'] / max(1, one['passes']):.2f} "
        f"(goal <= 2); daemon peak RSS: {one['maxrss_mb']:.0f} MB (goal <= 300)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
