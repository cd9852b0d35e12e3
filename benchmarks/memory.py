"""Peak memory (RSS) of our client for a very large CRM, without a real server.

A 50,000-series initial push takes hours on Radicale or Xandikos (their per-PUT cost
grows with the calendar), so this measures *our* side only: the same ``run_pass`` with
the same ``DavCalendar`` (XML built and parsed, bodies rendered, state written to
SQLite), but its HTTP replaced by an in-process store that answers PUT, PROPFIND
getetag, sync-collection and calendar-multiget like a well-behaved server. The store
keeps its resources in a SQLite file, as a server keeps them outside our process, so
the figure is our client's (the store used to be a dict in this process, which added
about 70 MB at 50,000 series). Phases:

1. generate and import N series into the CRM store, in chunks of 5,000;
2. initial push pass (N creates);
3. a full pass (``--full``: an href/ETag listing of all N, compared with the state);
4. an idle pass (sync token, nothing changed).

Run as its own process (``python -m benchmarks.memory --n 50000``) so that ru_maxrss
is this measurement's peak and nothing else's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sync.config import Account
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.testing.dav_server import BASE, InProcessDav, in_process_calendar
from sync.testing.followups import iter_followups


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Start a new peak, so that each phase reports its own (Linux: /proc/self/clear_refs).

    The phase's peak still includes what earlier phases left in the process (RSS that
    was freed but not returned), as a daemon's next pass would. Where this is not
    supported, every phase reports the process's peak so far.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def measure(n: int, tmp: Path, chunk: int = 5000) -> dict[str, Any]:
    result: dict[str, Any] = {"n": n, "phases": [], "per_phase_peaks": reset_peak()}
    overall = 0.0

    def phase(name: str, started: float, **extra: Any) -> None:
        nonlocal overall
        gc.collect()
        peak = peak_mb()
        overall = max(overall, peak)
        result["phases"].append(
            {"phase": name, "seconds": round(time.perf_counter() - started, 2),
             "peak_rss_mb": round(peak, 1), **extra}
        )  # fmt: skip
        print(f"   {name}: {time.perf_counter() - started:.1f} s, peak RSS {peak:.0f} MB",
              file=sys.stderr, flush=True)  # fmt: skip
        reset_peak()

    os.environ["BENCH_PW"] = "secret"
    db = Database.open(str(tmp / "memory.sqlite"))
    store = FollowUpStore(db)
    started = time.perf_counter()
    batch = []
    for followup in iter_followups(n):
        batch.append(followup)
        if len(batch) == chunk:
            store.import_followups(batch)
            batch = []
    if batch:
        store.import_followups(batch)
    del batch
    phase(f"generate + import {n} series (chunks of {chunk})", started)

    server = InProcessDav("/alice/big/", tmp / "server.sqlite")
    account = Account(name="big", url=BASE, username="alice", password_env="BENCH_PW",
                      calendar_url=BASE, server_kind="radicale")  # fmt: skip
    for name, full in ((f"initial push pass ({n} creates)", False),
                       (f"full pass (listing of {n})", True),
                       ("idle pass (sync token)", False)):  # fmt: skip
        calendar = in_process_calendar(server)
        started = time.perf_counter()
        report = run_pass(account, db, calendar=calendar, full=full)
        assert report.ok, report.errors[:3]
        del report  # as a daemon drops it: the next pass does not hold this one's report
        phase(name, started, requests=calendar.stats.requests,
              writes=calendar.stats.by_method.get("PUT", 0))  # fmt: skip
    db.close()
    server.close()
    result["peak_rss_mb"] = round(overall, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="followup-memory-") as tmp:
        result = measure(args.n, Path(tmp))
    print(json.dumps(result) if args.json else result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
