"""Rank push clients whose difference is smaller than the server's own noise.

``bench_sync`` pushes N series once per client, each on a fresh server. At N = 500 and
1,000 every client there (the raw PUT loop, ours, vdirsyncer) runs at the server's own
limit: our time outside HTTP exchanges is 1-2 % of the push, while two raw loops on two
fresh servers in the same run differ by up to 10 % (38.25 s and 35.06 s on Xandikos at
1,000). One sample per client cannot rank them; the order of the loops and the moment
decide. So this benchmark runs **rounds**:

* every round starts each client on a server process of its own with empty storage;
* the order rotates (a Latin square: over three rounds every client runs once first,
  once second, once last), so a drift of the machine within a round favours none;
* the **median** over the rounds is compared, and the rounds each client won are counted.

The clients:

* **raw**: ``bench_sync.raw_put_loop``, the limit (http.client, one PUT per series);
* **ours**: a warm process (as in the daemon) connecting a ``DavCalendar`` and running
  one pass, per item (``bench_sync.PER_ITEM``); the state database holds the N
  follow-ups before the clock starts, as vdirsyncer's folder holds the N files;
* **vdirsyncer**: ``vdirsyncer sync`` of a folder of the same .ics files, a whole
  process. Its **fixed cost** (start-up, config, status, listing both sides) is
  measured in the same round by one more ``vdirsyncer sync`` of an empty folder with an
  empty calendar, and the ranking is printed both against its whole run and against its
  run without that fixed cost (the stricter one for us: our pass keeps its own
  discovery and listing inside our figure).

Our client-side share (the pass's time outside HTTP exchanges) is printed per round,
and the phases inside the exchanges (connect, send, wait, read, prepare) summed over
the rounds for ours and for the raw loop.

Run: ``python -m benchmarks.push_rounds --n 1000 --rounds 3`` (``--servers radicale``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_sync import (
    PER_ITEM,
    ics_bodies,
    load_line,
    our_account,
    our_client,
    raw_put_loop,
    server_auth,
)
from benchmarks.peers import Vdirsyncer, find_vdirsyncer
from benchmarks.phases import PHASES, phase_rows, with_prepare
from mappings.model import FollowUp
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.testing.followups import realistic_followups

CLIENTS = ("raw", "ours", "vdirsyncer")


@dataclass
class Round:
    """One round on one server kind: each client's seconds, in the order they ran."""

    order: tuple[str, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    vdirsyncer_fixed: float = 0.0
    our_outside_http: float = 0.0


@dataclass
class Totals:
    """Phases inside the HTTP exchanges, summed over the rounds: (phase -> s, requests)."""

    raw: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    ours: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    raw_requests: int = 0
    our_requests: int = 0


def rotated(round_index: int) -> tuple[str, ...]:
    """The clients' order in round ``round_index``: each takes every place in turn."""
    k = round_index % len(CLIENTS)
    return CLIENTS[k:] + CLIENTS[:k]


def time_raw(server: Any, bodies: list[tuple[str, bytes]], totals: Totals) -> float:
    phases: dict[str, float] = {}
    seconds = raw_put_loop(
        server.base_url, server.make_calendar("limit"), bodies, server_auth(server), phases
    )
    for phase in PHASES:
        totals.raw[phase] += phases.get(phase, 0.0)
    totals.raw_requests += len(bodies)
    return seconds


def time_ours(
    kind: str, server: Any, followups: list[FollowUp], db_path: Path, totals: Totals
) -> tuple[float, float]:
    """(seconds of connect + one pass, seconds of it outside HTTP exchanges)."""
    calendar_url = server.make_calendar("ours")
    account = our_account(kind, server, calendar_url)
    db = Database.open(str(db_path))
    FollowUpStore(db).import_followups(followups)
    started = time.perf_counter()
    calendar = our_client(kind, server, calendar_url, PER_ITEM)
    report = run_pass(account, db, calendar=calendar)
    seconds = time.perf_counter() - started
    assert not report.errors, report.errors[:3]
    assert report.applied.done.get("server create", 0) == len(followups), report.applied.done
    spent = calendar.stats
    for phase, value in with_prepare(spent.phases, spent.seconds).items():
        totals.ours[phase] += value
    totals.our_requests += spent.requests
    calendar.close()
    db.close()
    return seconds, seconds - spent.seconds


def time_vdirsyncer(
    binary: Path, server: Any, bodies: list[tuple[str, bytes]], work: Path
) -> tuple[float, float]:
    """(seconds of ``vdirsyncer sync`` pushing the bodies, seconds of one with nothing to do).

    The empty sync runs first, against an empty calendar of the same fresh server.
    """

    def pair(name: str, files: list[tuple[str, bytes]]) -> Vdirsyncer:
        folder = work / name / "calendar"
        folder.mkdir(parents=True)
        for file_name, body in files:
            (folder / file_name).write_bytes(body)
        vdir = Vdirsyncer(
            binary, work / name, folder, server.make_calendar(name), server.username,
            server.password,
        )  # fmt: skip
        vdir.write_config()
        vdir.run("discover", "bench")
        return vdir

    fixed = pair("vdir-empty", []).run("sync", "bench")
    push = pair("vdirsyncer", bodies).run("sync", "bench")
    return push, fixed


def run_round(
    kind: str,
    index: int,
    followups: list[FollowUp],
    bodies: list[tuple[str, bytes]],
    vdirsyncer: Path,
    tmp: Path,
    totals: Totals,
) -> Round:
    from tests.servers import running

    this = Round(order=rotated(index))
    for client in this.order:
        place = tmp / kind / f"round-{index}" / client
        place.mkdir(parents=True)
        with running(kind, place) as server:
            if client == "raw":
                this.seconds["raw"] = time_raw(server, bodies, totals)
            elif client == "ours":
                db_path = place / "state.sqlite"
                seconds, outside = time_ours(kind, server, followups, db_path, totals)
                this.seconds["ours"], this.our_outside_http = seconds, outside
            else:
                push, fixed = time_vdirsyncer(vdirsyncer, server, bodies, place)
                this.seconds["vdirsyncer"], this.vdirsyncer_fixed = push, fixed
    return this


def report(kind: str, n: int, rounds: list[Round], totals: Totals) -> list[str]:
    """The rounds, their medians, the ranking both ways, and the phases summed."""
    line = "{:7} {:26} {:>9} {:>9} {:>11} {:>13} {:>13}"
    lines = [
        f"-- {kind}: push of {n} series, {len(rounds)} rounds, every client on a fresh server",
        line.format(
            "round", "order", "raw (s)", "ours (s)", "vdirsyncer", "its fixed (s)", "ours outside"
        ),
    ]
    for i, r in enumerate(rounds, 1):
        lines.append(
            line.format(
                i,
                ", ".join(r.order),
                f"{r.seconds['raw']:.2f}",
                f"{r.seconds['ours']:.2f}",
                f"{r.seconds['vdirsyncer']:.2f}",
                f"{r.vdirsyncer_fixed:.2f}",
                f"{r.our_outside_http / r.seconds['ours']:.1%}",
            )
        )

    def median(value: Callable[[Round], float]) -> float:
        return statistics.median(value(r) for r in rounds)

    raw = median(lambda r: r.seconds["raw"])
    ours = median(lambda r: r.seconds["ours"])
    vdir = median(lambda r: r.seconds["vdirsyncer"])
    vdir_net = median(lambda r: r.seconds["vdirsyncer"] - r.vdirsyncer_fixed)
    share = max(r.our_outside_http / r.seconds["ours"] for r in rounds)
    fixed = median(lambda r: r.vdirsyncer_fixed)
    cells = (f"{raw:.2f}", f"{ours:.2f}", f"{vdir:.2f}", f"{fixed:.2f}", f"max {share:.1%}")
    lines.append(line.format("median", "", *cells))
    won = sum(r.seconds["ours"] <= r.seconds["vdirsyncer"] for r in rounds)
    won_net = sum(r.seconds["ours"] <= r.seconds["vdirsyncer"] - r.vdirsyncer_fixed for r in rounds)
    lines += [
        f"ours / raw loop (medians): {ours / raw:.3f}; vdirsyncer / raw loop: {vdir / raw:.3f}",
        f"ours / vdirsyncer (medians): {ours / vdir:.3f} against its whole run "
        f"(ours faster in {won} of {len(rounds)} rounds); {ours / vdir_net:.3f} against its "
        f"run without its fixed cost ({won_net} of {len(rounds)})",
        f"verdict: ours {'at least as fast as' if ours <= vdir else 'SLOWER than'} vdirsyncer "
        f"(medians, whole run); {'at least as fast' if ours <= vdir_net else 'SLOWER'} "
        "without its fixed cost",
        f"-- {kind}: inside the HTTP exchanges, summed over the rounds",
        *phase_rows(
            [
                ("raw PUT loop", totals.raw, totals.raw_requests),
                ("followup-sync", totals.ours, totals.our_requests),
            ]
        ),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="series to push (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server (default 3)")
    parser.add_argument(
        "--servers", default="radicale,xandikos", help="comma-separated: radicale,xandikos"
    )
    parser.add_argument(
        "--vdirsyncer", default="auto", help="vdirsyncer binary ('auto': .bench-venv or PATH)"
    )
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    binary = find_vdirsyncer(root) if args.vdirsyncer == "auto" else Path(args.vdirsyncer)
    if binary is None:
        raise SystemExit("vdirsyncer not found: `make bench` installs it into .bench-venv")
    followups = realistic_followups(args.n)
    bodies = ics_bodies(followups)
    print(load_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="followup-rounds-") as tmp:
        for kind in (k.strip() for k in args.servers.split(",")):
            totals = Totals()
            rounds = []
            for index in range(args.rounds):
                print(f"-- {kind}: round {index + 1} of {args.rounds} …", flush=True)
                rounds.append(run_round(kind, index, followups, bodies, binary, Path(tmp), totals))
            print("\n".join(report(kind, args.n, rounds, totals)), flush=True)
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
