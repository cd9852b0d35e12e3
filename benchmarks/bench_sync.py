"""Sync against a real local server, measured against the limit in the same run.

For each server (Radicale, Xandikos; started as processes on loopback, throw-away data):

* **initial push** of N series by ``followup-sync``'s pass (mapper, state database,
  conditional PUTs) against **the limit**: a minimal raw-HTTP loop PUTting the same
  bodies to the same kind of server with one keep-alive connection, once before ours and
  once after. The ratio is ``mean limit seconds / our seconds`` (1.00 = no client-side
  cost at all). Each loop gets a server process of its own with empty storage, so no
  loop inherits another's N series. The time our pass spent outside HTTP exchanges is
  printed too: the client-side share, which the server's drift does not blur.
* **idle reconcile** of all N: requests, bytes received, seconds, and writes (must be 0).
* **50 changes pulled** after a "client" rewrote 50 resources by plain HTTP: requests,
  seconds; then **one CRM change** pushed: exactly one PUT.
* **vdirsyncer** (``.bench-venv``; ``--vdirsyncer off`` to skip): its initial push of a
  folder of the same .ics files, and its idle run (traffic counted by a logging proxy,
  ``benchmarks/peers.py``), in the same table.
* **spreading** the same N over ``--spread`` calendars, one per owner, against one calendar.
* **peak RSS** for ``--rss-series`` (50,000) series: ``benchmarks/memory.py`` in a child
  process, our pass against an in-process store (no server: our side only).
* ``--profile``: cProfile of our push against the in-process store.
* ``--idle-only`` (Radicale): only the idle runs, ours and vdirsyncer's, on calendars
  filled with the same N series by writing them into Radicale's storage folder; the
  idle figure at N=5,000 in minutes rather than after the push's hour and a half, with
  the idle pass's local time (outside its one HTTP exchange) in milliseconds.
  ``--profile-idle`` adds a cProfile of one more idle pass (``benchmarks/idle_profile.py``).

Run: ``python -m benchmarks.bench_sync --n 1000`` (``--n 5000`` for the documented figures;
``--servers radicale``). The server's own time per PUT grows with the size of the
calendar, so the push ratio is what to read, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import niquests

from benchmarks.idle_profile import local_milliseconds, profile_idle_pass
from benchmarks.peers import CountingProxy, Vdirsyncer, find_vdirsyncer
from benchmarks.phases import PHASES, phase_rows, with_prepare
from mappings.model import FollowUp
from mappings.resource import render
from sync.config import Account
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.stores.base import resource_name
from sync.stores.caldav import DavCalendar, RequestStats
from sync.testing.dav_server import BASE, InProcessDav, in_process_calendar
from sync.testing.followups import STAMP, realistic_followups


@dataclass
class Row:
    server: str
    what: str
    seconds: float
    requests: int | None = None
    bytes_received: int | None = None
    writes: int | None = None
    note: str = ""


def raw_put_loop(
    server_url: str,
    calendar_url: str,
    bodies: list[tuple[str, bytes]],
    auth: tuple[str, str] | None,
    phases: dict[str, float] | None = None,
) -> float:
    """The limit: the same bodies PUT one after another on http.client, kept alive if it may.

    The leanest synchronous client there is (``sync.stores.caldav.direct``'s docstring):
    nothing but the request line, Host, Content-Type, If-None-Match and Basic sign-in.
    ``phases`` (if given) receives connect, send, wait, read and prepare seconds.
    """
    parts = urlsplit(calendar_url)
    headers = {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    timed = dict.fromkeys(PHASES, 0.0)
    connection: http.client.HTTPConnection | None = None
    started = time.perf_counter()
    for name, body in bodies:
        mark = begin = time.perf_counter()
        if connection is None:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80)
            connection.connect()
            timed["connect"] += (now := time.perf_counter()) - mark
            mark = now
        connection.request("PUT", parts.path + name, body=body, headers=headers)
        timed["send"] += (now := time.perf_counter()) - mark
        response = connection.getresponse()
        timed["wait"] += (mark := time.perf_counter()) - now
        response.read()
        timed["read"] += (now := time.perf_counter()) - mark
        if response.status not in (201, 204):
            raise RuntimeError(f"raw PUT {name}: {response.status}")
        if response.will_close:
            connection.close()
            connection = None
        timed["prepare"] += time.perf_counter() - begin
    seconds = time.perf_counter() - started
    if connection is not None:
        connection.close()
    timed["prepare"] -= sum(timed[p] for p in PHASES if p != "prepare")
    if phases is not None:
        phases.update(timed)
    return seconds


def ics_bodies(followups: list[FollowUp]) -> list[tuple[str, bytes]]:
    """(file name, resource bytes) per series: what the raw loop PUTs and vdirsyncer syncs.

    The names are the ones our push gives the same series (``resource_name``): a server
    that indexes names (Xandikos keeps them in git) works less for short or repetitive
    ones, so the raw loop, the limit, must PUT to ours to do the same work.
    """
    bodies = []
    for followup in followups:
        body = render(followup, stamp=STAMP)
        assert body is not None
        bodies.append((resource_name(followup.effective_uid), body))
    return bodies


#: The push compared with the raw loop and vdirsyncer is the per-item one (one PUT per
#: series); the first push into an empty Radicale goes in one request (``bench_bulk``).
PER_ITEM: dict[str, object] = {"bulk_upload_into_empty": False}


def server_auth(server: Any) -> tuple[str, str] | None:
    """The test server's Basic sign-in, or None when it has none."""
    return (server.username, server.password) if server.username and server.password else None


def our_account(kind: str, server: Any, calendar_url: str) -> Account:
    """Our account on ``calendar_url``, its password in the environment as a config has it."""
    os.environ["BENCH_PW"] = server.password or ""
    return Account(
        name=kind,
        url=server.base_url,
        username=server.username,
        password_env="BENCH_PW" if server.password else None,
        calendar_url=calendar_url,
        server_kind=kind,
    )


def our_client(
    kind: str,
    server: Any,
    calendar_url: str,
    capability_overrides: dict[str, object] | None = None,
) -> DavCalendar:
    """Our client of ``calendar_url``.

    A generous timeout: Radicale's first read of a seeded 5,000-item calendar parses
    every file, which takes over the default 30 s on a busy machine.
    """
    return DavCalendar.connect(
        calendar_url,
        username=server.username,
        password=server.password,
        server_kind=kind,
        timeout=300,
        capability_overrides=capability_overrides,
    )


def our_side(
    kind: str,
    server: Any,
    calendar_url: str,
    followups: list[FollowUp],
    db_path: Path,
    capability_overrides: dict[str, object] | None = None,
) -> tuple[Account, Database, DavCalendar]:
    """Our account on ``calendar_url``, its state database holding ``followups``, a client."""
    account = our_account(kind, server, calendar_url)
    db = Database.open(str(db_path))
    FollowUpStore(db).import_followups(followups)
    return account, db, our_client(kind, server, calendar_url, capability_overrides)


def idle_row(kind: str, n: int, seconds: float, spent: RequestStats, vdir_idle: Row | None) -> Row:
    """Our idle reconcile: requests by method, bytes both ways, writes (must be 0)."""
    note = ", ".join(f"{method} {count}" for method, count in sorted(spent.by_method.items()))
    if vdir_idle is not None:
        note += f"; vdirsyncer idle is {vdir_idle.seconds / seconds:.1f}x slower"
    return Row(
        kind,
        f"followup-sync idle reconcile of {n}",
        seconds,
        spent.requests,
        spent.bytes_received + spent.bytes_sent,
        spent.by_method.get("PUT", 0) + spent.by_method.get("DELETE", 0),
        note=note,
    )


def raw_put_loop_on_fresh_server(
    kind: str, bodies: list[tuple[str, bytes]], tmp: Path, phases: dict[str, float] | None = None
) -> float:
    """The limit, measured on a server process of its own with empty storage.

    Every loop (raw, ours, raw again, vdirsyncer) gets a fresh server: a server process
    that already stores another loop's N series answers later loops more slowly (heap,
    caches, directory sizes; up to 13 % at 5,000 on Xandikos), which made the order of
    the loops, not the client, decide the ratio.
    """
    from tests.servers import running

    tmp.mkdir(parents=True, exist_ok=True)
    with running(kind, tmp) as server:
        auth = server_auth(server)
        return raw_put_loop(server.base_url, server.make_calendar("limit"), bodies, auth, phases)


def bench_server(kind: str, n: int, tmp: Path, vdirsyncer: Path | None = None) -> list[Row]:
    from tests.servers import running

    rows: list[Row] = []
    followups = realistic_followups(n)
    bodies = ics_bodies(followups)
    raw_phases: dict[str, float] = {}
    limit = raw_put_loop_on_fresh_server(kind, bodies, tmp / kind / "limit", raw_phases)
    rows.append(Row(kind, f"raw PUT loop, {n} series (the limit)", limit, n, None, n))
    (tmp / kind / "ours").mkdir(parents=True)
    with running(kind, tmp / kind / "ours") as server:
        auth = server_auth(server)
        # Ours, between two raw loops: the mean of the loops on either side cancels a
        # steady drift of the machine.
        calendar_url = server.make_calendar("ours")
        account, db, calendar = our_side(
            kind, server, calendar_url, followups, tmp / f"{kind}.sqlite", PER_ITEM
        )
        before = calendar.stats.copy()
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar)
        ours = time.perf_counter() - started
        spent = calendar.stats.since(before)
        in_http = spent.seconds
        assert not report.errors, report.errors[:3]
        limit_after = raw_put_loop_on_fresh_server(kind, bodies, tmp / kind / "limit-after")
        rows.append(Row(kind, "raw PUT loop again, after ours", limit_after, n, None, n))
        mean_limit = (limit + limit_after) / 2
        rows.append(
            Row(
                kind,
                f"followup-sync push, {n} series (per item)",
                ours,
                report.requests,
                None,
                report.applied.done.get("server create", 0),
                note=f"{mean_limit / ours:.2f}x the limit (mean of both raw loops)",
            )
        )
        rows.append(
            Row(
                kind,
                "  of which outside HTTP exchanges",
                ours - in_http,
                note=f"client-side share {(ours - in_http) / ours:.1%}",
            )
        )
        print_rows(rows[-4:])
        print(f"-- {kind}: inside the HTTP exchanges, the raw loop (before ours) and our push")
        our_phases = with_prepare(spent.phases, in_http)
        print(
            "\n".join(
                phase_rows(
                    [
                        ("raw PUT loop", raw_phases, n),
                        ("followup-sync", our_phases, spent.requests),
                    ]
                )
            )
        )

        # vdirsyncer: the same bodies as .ics files in a folder, pushed to a fresh calendar.
        vdir_idle: Row | None = None
        if vdirsyncer is not None:
            (tmp / kind / "vdirsyncer").mkdir()
            with running(kind, tmp / kind / "vdirsyncer") as vdir_server:
                proxy = CountingProxy(vdir_server.base_url)
                vdir_rows, vdir_idle = bench_vdirsyncer(
                    kind, vdir_server, vdirsyncer, bodies, tmp, proxy, mean_limit
                )
                proxy.close()
            rows.extend(vdir_rows)
            print_rows(vdir_rows)

        # The first pass after a push still lists our own writes (the token predates them);
        # one settling pass, then the idle reconcile is measured in its steady state.
        run_pass(account, db, calendar=calendar)
        before = calendar.stats.copy()
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar)
        idle = time.perf_counter() - started
        rows.append(idle_row(kind, n, idle, calendar.stats.since(before), vdir_idle))
        if vdir_idle is not None:
            rows.append(vdir_idle)

        # 50 client-side changes pulled.
        session = niquests.Session()
        if auth:
            session.auth = auth
        changed = followups[:: max(1, n // 50)][:50]
        for followup in changed:
            url = calendar_url + calendar.href_for_uid(followup.effective_uid).rsplit("/", 1)[1]
            current = session.get(url)
            body = current.content.replace(b"SUMMARY:", b"SUMMARY:Moved by client: ", 1)
            session.put(
                url,
                data=body,
                headers={"If-Match": current.headers["ETag"], "Content-Type": "text/calendar"},
            )
        before = calendar.stats.copy()
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar)
        pulled = time.perf_counter() - started
        spent = calendar.stats.since(before)
        rows.append(
            Row(
                kind,
                f"pull {len(changed)} client changes",
                pulled,
                spent.requests,
                spent.bytes_received,
                spent.by_method.get("PUT", 0),
                note=f"{report.applied.done.get('crm update', 0)} follow-ups updated",
            )
        )

        # One CRM change pushes exactly one resource.
        store = FollowUpStore(db)
        one = store.get(followups[-1].id)
        assert one is not None
        store.put(one.model_copy(update={"title": one.title + " (renamed)"}))
        before = calendar.stats.copy()
        started = time.perf_counter()
        run_pass(account, db, calendar=calendar)
        spent = calendar.stats.since(before)
        rows.append(
            Row(
                kind,
                "one CRM change pushed",
                time.perf_counter() - started,
                spent.requests,
                None,
                spent.by_method.get("PUT", 0),
            )
        )
        calendar.close()
        db.close()
    return rows


def bench_vdirsyncer(
    kind: str,
    server: Any,
    binary: Path,
    bodies: list[tuple[str, bytes]],
    tmp: Path,
    proxy: CountingProxy,
    limit: float | None,
    calendar_url: str | None = None,
) -> tuple[list[Row], Row]:
    """vdirsyncer's initial push (direct) and its idle run (seconds direct, traffic via proxy).

    With ``calendar_url`` (a calendar already holding the same bodies) its first sync
    only compares both sides and is not reported.
    """
    n = len(bodies)
    work = tmp / f"vdirsyncer-{kind}"
    folder = work / "calendar"
    folder.mkdir(parents=True)
    for name, body in bodies:
        (folder / name).write_bytes(body)
    seeded = calendar_url is not None
    calendar_url = calendar_url or server.make_calendar("vdirsyncer")
    vdir = Vdirsyncer(binary, work, folder, calendar_url, server.username, server.password)
    vdir.write_config()
    vdir.run("discover", "bench")
    push = vdir.run("sync", "bench")
    rows = []
    if not seeded:
        rows.append(
            Row(
                kind,
                f"vdirsyncer initial push, {n} series",
                push,
                None,
                None,
                n,
                note=f"{(limit or push) / push:.2f}x the limit",
            )
        )
    vdir.run("sync", "bench")  # settle, as for ours
    idle = min(vdir.run("sync", "bench") for _ in range(2))
    # The same idle run once more through the counting proxy, for requests and bytes.
    vdir.write_config(proxy.url_for(calendar_url))
    vdir.run("discover", "bench")  # vdirsyncer insists after any config change
    vdir.run("sync", "bench")
    proxy.reset()
    vdir.run("sync", "bench")
    traffic = proxy.reset()
    writes = traffic.by_method.get("PUT", 0) + traffic.by_method.get("DELETE", 0)
    vdir_row = Row(
        kind,
        f"vdirsyncer idle run of {n}",
        idle,
        traffic.requests,
        traffic.bytes_received + traffic.bytes_sent,
        writes,
        note=", ".join(f"{m} {c}" for m, c in sorted(traffic.by_method.items())),
    )
    return rows, vdir_row


def seed_radicale(server: Any, calendar_url: str, bodies: list[tuple[str, bytes]]) -> None:
    """Write the bodies straight into Radicale's storage folder of one calendar.

    Radicale reads a calendar from its folder on every request, so a file put there is
    a resource like one PUT (its ETag and caches are made on first read). This fills a
    5,000-series calendar in a second instead of the push's hour and a half.
    """
    path = urlsplit(calendar_url).path.strip("/")
    folder = server.log_path.parent / "collections" / "collection-root" / path
    for name, body in bodies:
        (folder / name).write_bytes(body)


#: Rounds of (the idle pass's one request alone, the idle pass) in --idle-only.
IDLE_ROUNDS = 7


def load_line() -> str:
    """The machine's load next to the figures: a busy machine slows baseline and ours alike."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def bench_idle_seeded(
    kind: str, n: int, tmp: Path, vdirsyncer: Path | None, *, profile: bool = False
) -> list[Row]:
    """Idle run of ours and of vdirsyncer against calendars seeded with the same N bodies.

    Both first sync once (each finds the other side already holding every series and
    only compares), settle once, and are then timed idle, best of two, as in bench_server.
    ``profile``: one more idle pass under cProfile, printed (``benchmarks.idle_profile``).
    """
    from tests.servers import running

    if kind != "radicale":
        raise SystemExit("--idle-only seeds Radicale's storage folder; use --servers radicale")
    followups = realistic_followups(n)
    bodies = ics_bodies(followups)
    rows: list[Row] = []
    (tmp / "idle").mkdir(parents=True)
    with running(kind, tmp / "idle") as server:
        calendar_url = server.make_calendar("ours")
        seed_radicale(server, calendar_url, bodies)
        account, db, calendar = our_side(kind, server, calendar_url, followups, tmp / "idle.sqlite")
        started = time.perf_counter()
        first = run_pass(account, db, calendar=calendar)
        assert first.ok, first.errors[:3]
        rows.append(
            Row(
                kind,
                f"followup-sync first pass over {n} seeded series",
                time.perf_counter() - started,
                first.requests,
                None,
                sum(v for k, v in first.applied.done.items() if k.startswith("server ")),
                note="links every series by UID, writes nothing",
            )
        )
        time.sleep(2)  # a pass runs minutes after the last change, not within its second
        run_pass(account, db, calendar=calendar)
        runs = []
        alone: list[float] = []
        # Rounds alternate the idle pass with its one request alone (the baseline), so
        # that a busy machine slows both alike.
        for _ in range(IDLE_ROUNDS):
            started = time.perf_counter()
            calendar.last_modified()
            alone.append(time.perf_counter() - started)
            before = calendar.stats.copy()
            started = time.perf_counter()
            run_pass(account, db, calendar=calendar)
            runs.append((time.perf_counter() - started, calendar.stats.since(before)))
        idle, spent = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
        request = sorted(alone)[len(alone) // 2]
        local = local_milliseconds(runs)
        if profile:
            profile_idle_pass(account, db, calendar, n)
        rows.append(
            Row(
                kind,
                f"its one request alone (PROPFIND getlastmodified), median of {IDLE_ROUNDS}",
                request,
                1,
                None,
                0,
                note=f"the idle pass below is {idle / request:.2f}x this (median of "
                f"{IDLE_ROUNDS}, alternating: {request * 1000:.1f} ms alone, "
                f"{idle * 1000:.1f} ms the pass, of which {local:.1f} ms local)",
            )
        )
        vdir_idle: Row | None = None
        if vdirsyncer is not None:
            vdir_url = server.make_calendar("vdirsyncer")
            seed_radicale(server, vdir_url, bodies)
            proxy = CountingProxy(server.base_url)
            _, vdir_idle = bench_vdirsyncer(
                kind, server, vdirsyncer, bodies, tmp, proxy, None, calendar_url=vdir_url
            )
            proxy.close()
        rows.append(idle_row(kind, n, idle, spent, vdir_idle))
        if vdir_idle is not None:
            rows.append(vdir_idle)
        calendar.close()
        db.close()
    return rows


def bench_spread(kind: str, n: int, owners: int, tmp: Path) -> list[Row]:
    """The same N series pushed into one calendar, and dealt over one calendar per owner."""
    from tests.servers import running

    rows: list[Row] = []
    (tmp / f"spread-{kind}").mkdir(parents=True, exist_ok=True)
    with running(kind, tmp / f"spread-{kind}") as server:
        os.environ["BENCH_PW"] = server.password or ""
        for split in (1, owners):
            db = Database.open(str(tmp / f"spread-{kind}-{split}.sqlite"))
            FollowUpStore(db).import_followups(realistic_followups(n, owners=owners))
            started = time.perf_counter()
            requests = 0
            for k in range(split):
                calendar_url = server.make_calendar(f"spread-{split}-{k}")
                account = Account(
                    name=f"{kind}-{split}-{k}", url=server.base_url, username=server.username,
                    password_env="BENCH_PW" if server.password else None,
                    calendar_url=calendar_url, server_kind=kind,
                    owners=[f"owner-{k}"] if split > 1 else [],
                )  # fmt: skip
                report = run_pass(account, db)
                assert report.ok, report.errors[:3]
                requests += report.requests
            seconds = time.perf_counter() - started
            what = (f"push {n} into 1 calendar" if split == 1
                    else f"push {n} as {split} calendars of {n // split} (per owner)")  # fmt: skip
            rows.append(
                Row(
                    kind,
                    what,
                    seconds,
                    requests,
                    None,
                    n,
                    note=f"{seconds / n * 1000:.1f} ms per series",
                )
            )
            db.close()
    return rows


def bench_memory(n: int) -> Row:
    """Peak RSS of our client for n series, in a child process (see benchmarks/memory.py)."""
    import json
    import subprocess

    result = subprocess.run(  # our own module, fixed argv
        [sys.executable, "-m", "benchmarks.memory", "--n", str(n), "--json"],
        capture_output=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    data = json.loads(result.stdout)
    seconds = sum(p["seconds"] for p in data["phases"])
    phases = "; ".join(f"{p['phase']}: {p['seconds']:.0f} s, {p['peak_rss_mb']:.0f} MB"
                       for p in data["phases"])  # fmt: skip
    return Row(
        "in-process", f"peak RSS, {n} series: {data['peak_rss_mb']:.0f} MB", seconds, note=phases
    )


def profile_push(n: int) -> None:
    """cProfile of our push against the in-process store: where the client's time goes."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="followup-profile-") as tmp:
        os.environ["BENCH_PW"] = "secret"
        db = Database.open(str(Path(tmp) / "profile.sqlite"))
        FollowUpStore(db).import_followups(realistic_followups(n))
        account = Account(name="profile", url=BASE, username="alice", password_env="BENCH_PW",
                          calendar_url=BASE, server_kind="radicale")  # fmt: skip
        calendar = in_process_calendar(InProcessDav("/alice/big/"))
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        run_pass(account, db, calendar=calendar)
        profiler.disable()
        seconds = time.perf_counter() - started
        print(
            f"-- profile: client-side push of {n} series took {seconds:.2f} s (cProfile, no server)"
        )
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        db.close()


def print_rows(rows: list[Row]) -> None:
    line = "{:9} {:44} {:>9} {:>9} {:>10} {:>7}  {}"
    print(line.format("server", "measure", "seconds", "requests", "bytes in", "writes", "note"))
    for r in rows:
        print(
            line.format(
                r.server,
                r.what,
                f"{r.seconds:.2f}",
                "" if r.requests is None else r.requests,
                "" if r.bytes_received is None else r.bytes_received,
                "" if r.writes is None else r.writes,
                r.note,
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=1000, help="series to push (default 1000; 5000 for the docs)"
    )
    parser.add_argument(
        "--servers", default="radicale,xandikos", help="comma-separated: radicale,xandikos"
    )
    parser.add_argument(
        "--vdirsyncer",
        default="auto",
        help="vdirsyncer binary ('auto': .bench-venv/bin/vdirsyncer or PATH; 'off')",
    )
    parser.add_argument(
        "--spread",
        type=int,
        default=4,
        help="owners to spread the CRM over, one calendar each (0: skip)",
    )
    parser.add_argument("--spread-server", default="radicale")
    parser.add_argument(
        "--rss-series",
        type=int,
        default=50_000,
        help="series for the peak-RSS measurement (0: skip)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile our push (no server)")
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="with --idle-only: cProfile one more idle pass after the timed rounds",
    )
    parser.add_argument(
        "--idle-only",
        action="store_true",
        help="only the idle runs (ours, vdirsyncer), on Radicale calendars seeded with N series "
        "through its storage folder: minutes instead of the push's hours at N=5000",
    )
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    if args.profile:
        profile_push(args.n)
        return 0
    vdirsyncer = (
        None
        if args.vdirsyncer == "off"
        else (find_vdirsyncer(root) if args.vdirsyncer == "auto" else Path(args.vdirsyncer))
    )
    if vdirsyncer is None and args.vdirsyncer != "off":
        print("-- vdirsyncer not found (make bench installs it into .bench-venv); skipping it")
    rows: list[Row] = []
    if args.idle_only:
        with tempfile.TemporaryDirectory(prefix="followup-bench-") as tmp:
            for kind in args.servers.split(","):
                print(f"-- {kind}: idle runs over {args.n} seeded series …", flush=True)
                rows.extend(
                    bench_idle_seeded(
                        kind.strip(), args.n, Path(tmp), vdirsyncer, profile=args.profile_idle
                    )
                )
        print_rows(rows)
        print(load_line())
        return 0
    with tempfile.TemporaryDirectory(prefix="followup-bench-") as tmp:
        for kind in args.servers.split(","):
            print(f"-- {kind}: pushing {args.n} series …", flush=True)
            rows.extend(bench_server(kind.strip(), args.n, Path(tmp), vdirsyncer))
        if args.spread > 1:
            print(
                f"-- {args.spread_server}: {args.n} series in 1 vs {args.spread} calendars …",
                flush=True,
            )
            rows.extend(bench_spread(args.spread_server, args.n, args.spread, Path(tmp)))
    if args.rss_series:
        print(
            f"-- peak memory for {args.rss_series} series (in-process store, no server) …",
            flush=True,
        )
        rows.append(bench_memory(args.rss_series))
    print_rows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
