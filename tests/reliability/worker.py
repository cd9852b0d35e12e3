"""One sync pass in a process of its own, for the crash and hostile-input tests.

    python -m tests.reliability.worker --database PATH --calendar-url URL \\
        [--username U --password-env VAR] [--server-kind K] [--import-new] [--max-response-bytes N]
        [--conflict-policy P]

Crash hooks (environment), read here and nowhere in the product:

``FOLLOWUP_SYNC_TEST_CRASH_AFTER_REQUESTS=N``  SIGKILL as soon as the Nth HTTP request has its
                                               answer: the server did it, nothing recorded it
``FOLLOWUP_SYNC_TEST_CRASH_BEFORE_REQUESTS=N`` SIGKILL just before the Nth request is sent
``FOLLOWUP_SYNC_TEST_CRASH_AFTER_WRITES=N``    like AFTER_REQUESTS, counting PUT/DELETE only
``FOLLOWUP_SYNC_TEST_CRASH_AFTER_ACTIONS=N``   SIGKILL once N actions are applied and committed

The last line of stdout is a JSON report: errors, what was done, peak RSS, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time

from mappings.errors import FollowupSyncError
from sync.config import Account
from sync.run import run_pass
from sync.state.db import Database
from sync.stores.caldav import DEFAULT_MAX_RESPONSE_BYTES, DavCalendar, DavRequest, Reply, Sender

_WRITES = ("PUT", "DELETE")


def _limit(name: str) -> int | None:
    value = os.environ.get(f"FOLLOWUP_SYNC_TEST_CRASH_{name}")
    return int(value) if value else None


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingSender:
    """Wraps a calendar's Sender and kills its own process at the configured request."""

    after_requests = _limit("AFTER_REQUESTS")
    before_requests = _limit("BEFORE_REQUESTS")
    after_writes = _limit("AFTER_WRITES")

    def __init__(self, inner: Sender) -> None:
        self.inner = inner
        self.requests = 0
        self.writes = 0

    def send(self, request: DavRequest) -> Reply:
        self.requests += 1
        if self.before_requests is not None and self.requests >= self.before_requests:
            _die()
        reply = self.inner.send(request)
        if request.method in _WRITES:
            self.writes += 1
            if self.after_writes is not None and self.writes >= self.after_writes:
                _die()
        if self.after_requests is not None and self.requests >= self.after_requests:
            _die()
        return reply


def peak_rss_kb() -> int:
    """This process's own peak resident memory.

    Not ``getrusage().ru_maxrss``: Linux keeps that across fork and exec, so a worker
    started by a large pytest process would report the parent's size (126 MB for the first
    test of a session, 278 MB later on, for the same work). VmHWM belongs to the address
    space, which exec replaces.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--calendar-url", required=True)
    parser.add_argument("--username")
    parser.add_argument("--password-env")
    parser.add_argument("--server-kind")
    parser.add_argument("--import-new", action="store_true")
    parser.add_argument("--max-response-bytes", type=int, default=DEFAULT_MAX_RESPONSE_BYTES)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--conflict-policy", default="crm-wins")
    # The crash tests were written for the per-item push; the bulk first push into an
    # empty calendar (Radicale) has tests of its own (test_crashes, "bulk").
    parser.add_argument("--first-push", choices=["per-item", "bulk"], default="per-item")
    args = parser.parse_args(argv)
    account = Account(
        name="worker",
        url=args.calendar_url,
        username=args.username,
        password_env=args.password_env,
        calendar_url=args.calendar_url,
        server_kind=args.server_kind,
        import_new=args.import_new,
        max_response_bytes=args.max_response_bytes,
        timeout=args.timeout,
        conflict_policy=args.conflict_policy,
    )
    calendar = DavCalendar.connect(
        args.calendar_url,
        username=args.username,
        password=account.password(),
        server_kind=args.server_kind,
        timeout=args.timeout,
        max_response_bytes=args.max_response_bytes,
        capability_overrides=(
            {"bulk_upload_into_empty": False} if args.first_push == "per-item" else None
        ),
    )
    crashing = CrashingSender(calendar.sender)
    calendar.sender = crashing
    after_actions = _limit("AFTER_ACTIONS")

    def progress(done: int, total: int) -> None:
        if after_actions is not None and done >= after_actions:
            _die()

    started = time.monotonic()
    db = Database.open(args.database)
    out: dict[str, object]
    try:
        report = run_pass(account, db, calendar=calendar, progress=progress)
        out = {"ok": report.ok, "errors": report.errors, "done": report.applied.done}
    except FollowupSyncError as exc:
        out = {"ok": False, "stopped": str(exc), "errors": [], "done": {}}
    out["seconds"] = round(time.monotonic() - started, 2)
    out["maxrss_kb"] = peak_rss_kb()
    out["requests"] = crashing.requests
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
