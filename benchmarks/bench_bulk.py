"""The first push into an empty Radicale calendar: our one-request upload against the limit.

Same run, each loop on a Radicale process of its own with empty storage (as
``bench_sync``): the raw per-item PUT loop (``bench_sync.raw_put_loop``, the fastest
anyone pushes item by item), then ``followup-sync``'s first pass, which uploads the whole
calendar in one PUT (``sync.engine.bulk``), then the raw loop again. The ratio is
``mean raw loop seconds / our seconds``; afterwards the calendar must hold every series
once, and the next pass must find nothing to do.

``--per-item`` adds our own pass with the upload switched off (capability override), the
push before this change: at 5,000 series it takes over an hour.

Our pass includes reading the upload back (one calendar-multiget per 500 series) and
writing again any resource whose rewritten time zone would move an occurrence
(``sync.engine.bulk``; none in the realistic mix).

Run: ``python -m benchmarks.bench_bulk --n 5000`` (``--n 300`` for a quick look).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_sync import ics_bodies, our_side, raw_put_loop_on_fresh_server
from sync.run import run_pass
from sync.stores.caldav import DavCalendar
from sync.testing.followups import realistic_followups


def our_push(n: int, tmp: Path, *, bulk: bool) -> tuple[float, int, int, int]:
    """(seconds, requests, series on the server, actions of the next pass) for our first pass."""
    from tests.servers import running

    followups = realistic_followups(n)
    tmp.mkdir(parents=True, exist_ok=True)
    with running("radicale", tmp) as server:
        calendar_url = server.make_calendar("ours")
        account, db, _ = our_side("radicale", server, calendar_url, followups, tmp / "db.sqlite")
        calendar = DavCalendar.connect(
            calendar_url,
            username=server.username,
            password=server.password,
            server_kind="radicale",
            capability_overrides={"bulk_upload_into_empty": bulk},
            timeout=600,
        )
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar)
        seconds = time.perf_counter() - started
        assert not report.errors, report.errors[:3]
        on_server = len(calendar.list_etags())
        again = run_pass(account, db, calendar=calendar)
        db.close()
        return seconds, report.requests, on_server, len(again.plan.actions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="series (5000 for the docs)")
    parser.add_argument("--per-item", action="store_true", help="also our per-item push (slow)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    bodies = ics_bodies(realistic_followups(args.n))
    with tempfile.TemporaryDirectory(prefix="followup-bench-bulk-") as tmp_dir:
        tmp = Path(tmp_dir)
        print(f"-- radicale: {args.n} series into an empty calendar …", flush=True)
        raw = raw_put_loop_on_fresh_server("radicale", bodies, tmp / "raw")
        print(f"raw per-item PUT loop           {raw:9.1f} s  {args.n} PUTs", flush=True)
        ours, requests, on_server, next_actions = our_push(args.n, tmp / "bulk", bulk=True)
        print(
            f"followup-sync first push (bulk) {ours:9.1f} s  {requests} requests, "
            f"{on_server} on the server, next pass plans {next_actions}",
            flush=True,
        )
        raw_after = raw_put_loop_on_fresh_server("radicale", bodies, tmp / "raw-after")
        print(f"raw per-item PUT loop again     {raw_after:9.1f} s", flush=True)
        mean = (raw + raw_after) / 2
        print(
            f"ratio: ours-bulk is {mean / ours:.2f}x faster than the raw per-item loop (N={args.n})"
        )
        if args.per_item:
            item, item_requests, _, _ = our_push(args.n, tmp / "items", bulk=False)
            print(f"followup-sync per-item push     {item:9.1f} s  {item_requests} requests")
        assert on_server == args.n and next_actions == 0, "lost, duplicated or left to do"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
