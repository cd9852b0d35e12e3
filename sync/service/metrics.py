"""Prometheus metrics of the daemon, one registry per daemon (tests run several in one process).

Names follow Prometheus conventions (``_total`` counters, base units). Labels are the
account name plus a small closed set (mode, result, side, op), so cardinality grows with
the number of accounts only.

Request latency: the CalDAV layer counts requests but does not time each one, so the
per-request figure is the pass's wall time divided by its requests, an upper bound
(it includes local planning), exported as ``followup_sync_pass_seconds_per_request``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sync.engine.runner import PassReport

#: ApplyReport.done keys -> (side, op). "server …" is a push to the calendar, "crm …" a pull.
_DONE_KEYS: dict[str, tuple[str, str]] = {
    "server create": ("server", "create"),
    "server update": ("server", "update"),
    "server delete": ("server", "delete"),
    "crm create": ("crm", "create"),
    "crm update": ("crm", "update"),
    "crm delete": ("crm", "delete"),
    "crm detach": ("crm", "detach"),
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "followup_sync_runs",
            "Sync passes by account, mode and result "
            "(ok, partial = some items failed, failed, stopped, skipped-backoff).",
            ["account", "mode", "result"],
            registry=r,
        )
        self.pushed = Counter(
            "followup_sync_items_pushed",
            "Items written to the calendar.",
            ["account", "op"],
            registry=r,
        )
        self.pulled = Counter(
            "followup_sync_items_pulled",
            "Follow-ups changed from the calendar.",
            ["account", "op"],
            registry=r,
        )
        self.conflicts = Counter(
            "followup_sync_conflicts", "Conflicts resolved by policy.", ["account"], registry=r
        )
        self.errors = Counter(
            "followup_sync_errors",
            "Failed items (kind=item) and failed passes (kind=pass).",
            ["account", "kind"],
            registry=r,
        )
        self.requests = Counter(
            "followup_sync_http_requests",
            "HTTP requests sent to the CalDAV server.",
            ["account"],
            registry=r,
        )
        self.duration = Histogram(
            "followup_sync_pass_duration_seconds",
            "Wall time of a pass.",
            ["account", "mode"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.per_request = Gauge(
            "followup_sync_pass_seconds_per_request",
            "Last pass wall time / its HTTP requests: an upper bound of request latency.",
            ["account"],
            registry=r,
        )
        self.last_success = Gauge(
            "followup_sync_last_success_timestamp_seconds",
            "Unix time of the last successful pass.",
            ["account"],
            registry=r,
        )
        self.failures = Gauge(
            "followup_sync_consecutive_failures",
            "Failed passes in a row (drives the back-off).",
            ["account"],
            registry=r,
        )
        self.running = Gauge(
            "followup_sync_passes_running", "Passes running in this process.", registry=r
        )
        self.scheduler_up = Gauge(
            "followup_sync_scheduler_running", "1 while the scheduler runs.", registry=r
        )

    def pass_done(self, report: PassReport, seconds: float, finished_at: float) -> None:
        account = report.account
        result = "stopped" if report.stopped else ("ok" if report.ok else "partial")
        self.runs.labels(account, report.mode, result).inc()
        for key, count in report.applied.done.items():
            side, op = _DONE_KEYS.get(
                key, ("server" if key.startswith("server") else "crm", key.split()[-1])
            )
            (self.pushed if side == "server" else self.pulled).labels(account, op).inc(count)
        if report.applied.conflicts:
            self.conflicts.labels(account).inc(report.applied.conflicts)
        if report.errors:
            self.errors.labels(account, "item").inc(len(report.errors))
        self.requests.labels(account).inc(report.requests)
        self.duration.labels(account, report.mode).observe(seconds)
        if report.requests:
            self.per_request.labels(account).set(seconds / report.requests)
        if report.ok and not report.stopped:
            self.last_success.labels(account).set(finished_at)
        self.failures.labels(account).set(0)

    def pass_failed(self, account: str, mode: str, seconds: float, failures: int) -> None:
        self.runs.labels(account, mode, "failed").inc()
        self.errors.labels(account, "pass").inc()
        self.duration.labels(account, mode).observe(seconds)
        self.failures.labels(account).set(failures)

    def render(self) -> bytes:
        return generate_latest(self.registry)
