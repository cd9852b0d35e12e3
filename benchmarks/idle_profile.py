"""What an idle pass spends outside its one HTTP exchange, and where (``bench_sync --idle-only``).

The idle pass's goal (issue #21) is a local share that does not grow with the number of
series: the pass itself within 1.5x of its one request alone. The ratio says whether it
is met; these two helpers say what is left on our side, in milliseconds, and which calls
take it, so that a run at N=1,000 and one at N=5,000 can be compared line by line.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time

from sync.config import Account
from sync.run import run_pass
from sync.state.db import Database
from sync.stores.caldav import DavCalendar, RequestStats

#: Lines of the profile printed (sorted by cumulative time).
PROFILE_LINES = 30


def local_milliseconds(runs: list[tuple[float, RequestStats]]) -> float:
    """The median time of the passes spent outside their HTTP exchanges, in ms.

    ``RequestStats.seconds`` is the wall time from sending each request to the end of
    its answer, so the rest of a pass's wall time is our own: the state read, the
    decision and the pass's record.
    """
    local = sorted(seconds - spent.seconds for seconds, spent in runs)
    return local[len(local) // 2] * 1000


def profile_idle_pass(account: Account, db: Database, calendar: DavCalendar, n: int) -> None:
    """Print a cProfile of one idle pass over ``n`` already synced series."""
    profiler = cProfile.Profile()
    before = calendar.stats.copy()
    started = time.perf_counter()
    profiler.enable()
    report = run_pass(account, db, calendar=calendar)
    profiler.disable()
    seconds = time.perf_counter() - started
    spent = calendar.stats.since(before)
    assert report.ok and not report.plan.actions, "the profiled pass was not idle"
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(PROFILE_LINES)
    print(
        f"-- profile: idle pass over {n} series, {seconds * 1000:.1f} ms, "
        f"{spent.requests} request(s) taking {spent.seconds * 1000:.1f} ms (cProfile on)"
    )
    print(out.getvalue())
