"""The background service: every account synced on its schedule, CRM writes within seconds.

Built on APScheduler 3.11 (``BackgroundScheduler``, memory job store rebuilt from the
config at start; a 3.x store must never be shared between processes). Jobs:

``sync:<account>``   incremental pass every ``interval_seconds`` (+ random ``jitter_seconds``)
``full:<account>``   full ETag listing every ``full_every`` intervals, healing servers whose
                     sync tokens miss changes
``crm:<account>``    one-off pass shortly after the CRM changed a follow-up of the account;
                     added by the ``crm-poll`` job, which reads ``followups.updated_at``
                     every ``crm_poll_seconds``. While one is pending, further changes join
                     it (debounce), so a burst of writes costs one pass.
``mail-replies``     with ``[mail.imap]``: read iTIP replies every ``poll_seconds`` and set
                     the participants' answers (a changed follow-up then syncs as above).
``webhooks``         every ``WEBHOOK_TICK`` s: the change feed's entries owed to each webhook
                     subscription are POSTed (``sync.webhooks``), and the feed is pruned
                     to ``[feed] retention_days`` (``sync.state.changes``).

Invitations (``sync.invitations``): a pass records what participants are due; right
after it, still holding the account's locks, the daemon sends that account's unsent
messages when ``[mail]`` is configured (so two daemons never send one account's mail
at once). The outbox keeps its crash safety: pending → sending → sent, and a message
found ``sending`` (the process died mid-send) becomes ``uncertain`` and is never sent
again by itself. An SMTP server that cannot be reached is logged with the account and
tried again after the next pass; it never fails the pass or stops the daemon.

Passes run in one thread pool of ``max_concurrent_accounts`` workers, each pass on its
own account, so a slow server holds one worker, never the others; the poller runs in a
separate one-thread pool and is never starved by passes.

Who runs a pass (``run_account``), in order:

1. the in-process lock of the account (non-blocking: busy means "already running"; a
   CRM trigger that finds it busy asks for a re-run afterwards, so no change is lost);
2. the cluster lock (``sync.state.locks``): a PostgreSQL advisory lock when the database is
   PostgreSQL, so several daemons divide the accounts and none is synced twice at once;
3. the schedule as the database records it, shared by all processes (``sync.service.schedule``):
   an account synced by anyone within half an interval is not synced again, and a failing
   account waits ``interval × 2^(failures-1)`` (at most ``max_backoff_seconds``) whoever
   tries it.

Shutdown (SIGTERM/SIGINT): no new pass starts; passes in flight stop after their current
item (``should_stop`` reaches the Applier), keep their old sync token, and the process
exits 0. A restart resumes from the state database: nothing is lost or done twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from sync.api import controls
from sync.config import Account, DaemonSettings, Settings
from sync.crm.connect import reconcile_account
from sync.errors import FollowupSyncError
from sync.logs import log_context
from sync.run import PassReport, run_pass
from sync.service.metrics import Metrics
from sync.service.outboxes import Outboxes
from sync.service.schedule import CrmWatch, PassStart, Schedule
from sync.state.db import Database, utcnow
from sync.state.locks import ClusterLock, Held, cluster_lock_for
from sync.state.schema import check_current

log = logging.getLogger(__name__)

#: How often the webhook outbox is looked at.
WEBHOOK_TICK = 0.5


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class AccountRuntime:
    """What this process knows of one account between passes."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    rerun: bool = False
    last_result: str | None = None


class Daemon:
    """Owns the scheduler, the worker pool and the locks; ``start``/``stop`` or ``run``."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        metrics: Metrics | None = None,
        cluster_lock: ClusterLock | None = None,
        runner: Callable[..., PassReport] = run_pass,
    ) -> None:
        self.settings = settings
        self.daemon_settings = settings.daemon
        self.db = db
        self.accounts: dict[str, Account] = {
            n: a for n, a in settings.accounts.items() if a.enabled
        }
        self.metrics = metrics or Metrics()
        self.cluster_lock = cluster_lock or cluster_lock_for(db.url)
        self.runner = runner
        self.worker = worker_name()
        self.stopping = threading.Event()
        self.runtime = {name: AccountRuntime() for name in self.accounts}
        self.schedule = Schedule(db, self.daemon_settings, worker=self.worker)
        self.crm_watch = CrmWatch(db)
        self.outboxes = Outboxes(settings, db, self.cluster_lock, self.stopping)
        self.scheduler = _make_scheduler(self.daemon_settings)

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Check the schema, schedule every job and start the scheduler (returns at once)."""
        check_current(self.db)
        self.crm_watch.start()
        now = utcnow()
        ds = self.daemon_settings
        for index, (name, account) in enumerate(self.accounts.items()):
            # First passes soon, but spread so that many accounts do not start in one burst.
            first = now + dt.timedelta(
                seconds=min(account.interval_seconds, 0.2 * index + random.uniform(0, 0.5))
            )
            self.scheduler.add_job(
                self._scheduled,
                "interval",
                args=[name, False, "interval"],
                id=f"sync:{name}",
                seconds=account.interval_seconds,
                jitter=account.jitter_seconds or None,
                next_run_time=first,
                replace_existing=True,
            )
            full = account.full_interval_seconds
            if full:
                self.scheduler.add_job(
                    self._scheduled,
                    "interval",
                    args=[name, True, "full"],
                    id=f"full:{name}",
                    seconds=full,
                    jitter=account.jitter_seconds or None,
                    next_run_time=now + dt.timedelta(seconds=full),
                    replace_existing=True,
                )
        self.scheduler.add_job(
            self._poll_crm,
            "interval",
            id="crm-poll",
            seconds=ds.crm_poll_seconds,
            executor="control",
            replace_existing=True,
        )
        if self.outboxes.reads_replies:
            assert self.settings.mail is not None and self.settings.mail.imap is not None
            self.scheduler.add_job(
                self.outboxes.fetch_replies,
                "interval",
                id="mail-replies",
                seconds=self.settings.mail.imap.poll_seconds,
                next_run_time=now + dt.timedelta(seconds=1),
                replace_existing=True,
            )
        self.outboxes.start()
        self.scheduler.add_job(
            self.outboxes.deliver_webhooks,
            "interval",
            id="webhooks",
            seconds=WEBHOOK_TICK,
            executor="webhooks",
            next_run_time=now,
            replace_existing=True,
        )
        self.scheduler.start()
        self.metrics.scheduler_up.set(1)
        for name in self.accounts:
            self._write_next_run(name)
        log.info(
            "daemon %s started: %d account(s), %d worker(s)",
            self.worker,
            len(self.accounts),
            ds.max_concurrent_accounts,
        )

    def stop(self, *, timeout: float | None = None) -> bool:
        """Stop scheduling, let passes finish their current item; True if all ended in time."""
        self.stopping.set()
        timeout = self.daemon_settings.shutdown_timeout_seconds if timeout is None else timeout
        if self.scheduler.running:
            self.scheduler.pause()  # no new job submissions from now on
        done = threading.Event()

        def shutdown() -> None:
            if self.scheduler.running:
                self.scheduler.shutdown(wait=True)
            done.set()

        threading.Thread(target=shutdown, name="scheduler-shutdown", daemon=True).start()
        finished = done.wait(timeout)
        self.metrics.scheduler_up.set(0)
        if not finished:
            log.warning(
                "passes still running after %.0f s; exiting anyway (state is per item)", timeout
            )
        self.cluster_lock.close()
        self.outboxes.close()
        log.info("daemon %s stopped", self.worker)
        return finished

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running) and not self.stopping.is_set()

    # --- one pass ------------------------------------------------------------------------------

    def _scheduled(self, name: str, full: bool, reason: str) -> None:
        """Job body: run, then remember when this account runs next (for ``status``)."""
        try:
            self.run_account(name, full=full, reason=reason)
        except Exception:  # a job must never raise into the scheduler; log and carry on
            log.exception("unexpected error around the pass of %s", name)
        finally:
            if not self.stopping.is_set():
                self._write_next_run(name)

    def run_account(self, name: str, *, full: bool = False, reason: str = "manual") -> str:
        """Run one pass of ``name`` if nobody else is; returns what happened (for tests, logs)."""
        if self.stopping.is_set():
            return "stopping"
        runtime = self.runtime[name]
        if not runtime.lock.acquire(blocking=False):
            if reason == "crm":
                runtime.rerun = True  # the running pass may have read the CRM before the change
            return "busy"
        try:
            outcome = self._run_locked(name, full=full, reason=reason)
        finally:
            runtime.lock.release()
        if runtime.rerun and not self.stopping.is_set():
            runtime.rerun = False
            self.request(name, reason="crm", delay=0.0)
        return outcome

    def _run_locked(self, name: str, *, full: bool, reason: str) -> str:
        account = self.accounts[name]
        with self.cluster_lock.hold(name) as held:
            if held is None:
                log.debug("%s: synced by another process right now", name)
                return "elsewhere"
            start = self.schedule.begin(account, full=full, reason=reason)
            if start.why_not:
                log.debug("%s: %s", name, start.why_not)
                return start.why_not
            if start.reset:
                log.info("%s: links forgotten on request; re-linking by UID", name)
            _reconcile_first(account, self.db, self.schedule, start.run_id)
            outcome = self._run_pass(account, held, start, reason=reason)
            reconcile_account(account, self.db)  # the calendars' edits back to the CRM
            self.outboxes.send_invitations(account)
            return outcome

    def _run_pass(self, account: Account, held: Held, start: PassStart, *, reason: str) -> str:
        name, full = account.name, start.full
        mode = "full" if full else "incremental"
        self.metrics.running.inc()
        started = time.monotonic()

        def should_stop() -> bool:
            return self.stopping.is_set() or not held.still_held()

        result: str
        ran: str | None = None  # the account, once its pass ran
        try:
            with log_context(account=name):
                log.info("%s pass starts (%s)", mode, reason)
                try:
                    report = self.runner(account, self.db, full=full, should_stop=should_stop)
                # Every failure of a pass is the account's, not the daemon's.
                except Exception as exc:
                    result = self._pass_failed(account, mode, exc, time.monotonic() - started)
                else:
                    seconds = time.monotonic() - started
                    self.metrics.pass_done(report, seconds, time.time())
                    ran = name
                    result = "stopped" if report.stopped else ("ok" if report.ok else "partial")
                    _log_pass_done(report, result, seconds)
        finally:
            self.metrics.running.dec()
        # A pass that ran ends a back-off; with no failure before, there is none to end.
        self.schedule.run_ended(start.run_id, result, succeeded=ran if start.failures else None)
        self.runtime[name].last_result = result
        return result

    def _pass_failed(self, account: Account, mode: str, exc: Exception, seconds: float) -> str:
        name = account.name
        failures = self.schedule.failures(name) + 1
        wait = self.schedule.backoff(account, failures)
        if isinstance(exc, FollowupSyncError):
            log.warning("pass failed (%d in a row, next try in %.0f s): %s", failures, wait, exc)
        else:
            log.exception(
                "pass failed with an unexpected error (%d in a row, next try in %.0f s)",
                failures,
                wait,
            )
        self.metrics.pass_failed(name, mode, seconds, failures)
        self.schedule.failed(account, failures, wait, exc)
        return "failed"

    # --- CRM changes -----------------------------------------------------------------------------

    def request(self, name: str, *, reason: str = "crm", delay: float | None = None) -> None:
        """Ask for a pass of ``name`` soon; a request already pending absorbs this one."""
        if self.stopping.is_set() or name not in self.accounts:
            return
        job_id = f"crm:{name}"
        if self.scheduler.get_job(job_id) is not None:
            return
        wait = self.daemon_settings.crm_debounce_seconds if delay is None else delay
        try:
            self.scheduler.add_job(
                self._scheduled,
                "date",
                args=[name, False, reason],
                id=job_id,
                run_date=utcnow() + dt.timedelta(seconds=wait),
                replace_existing=True,
                misfire_grace_time=None,
            )
        except Exception as exc:
            log.debug("could not queue %s: %s", job_id, exc)

    def _poll_crm(self) -> None:
        """Find follow-ups written since the last poll and queue their accounts."""
        if self.stopping.is_set():
            return
        try:
            changed = self.crm_watch.changed()
            for name in self.crm_watch.accounts_for(changed, self.accounts):
                log.info("CRM changed follow-ups of %s; syncing it soon", name)
                self.request(name)
            for name in controls.take_requests(self.db, set(self.accounts)):
                log.info("%s: a pass was asked for over the API; syncing it now", name)
                self.request(name, reason="api", delay=0.0)
            self.schedule.prune_run_log()
        except Exception:
            log.exception("polling the follow-up store failed; trying again next poll")

    # --- bookkeeping in the database ----------------------------------------------------------

    def _write_next_run(self, name: str) -> None:
        """Store when this process will next run ``name`` (``status`` reads it)."""
        times = []
        for prefix in ("sync", "crm"):
            job = self.scheduler.get_job(f"{prefix}:{name}")
            if job is not None and job.next_run_time is not None:
                times.append(job.next_run_time)
        if not times:
            return
        try:
            self.schedule.write_next_run(self.accounts[name], min(times))
        except Exception as exc:
            log.debug("could not store next run of %s: %s", name, exc)

    # --- health ----------------------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, str]]:
        """(ready, checks): the database answers, its schema is current, the scheduler runs."""
        checks = _database_checks(self.db)
        checks["scheduler"] = "ok" if self.running else "stopped"
        return all(v == "ok" for v in checks.values()), checks

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self.scheduler.get_jobs())

    def remove_job(self, job_id: str) -> None:
        """For tests and operators: drop one scheduled job."""
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id)


def _reconcile_first(account: Account, db: Database, schedule: Schedule, run_id: int) -> None:
    """The CRM's changes into the store before the pass; the run log's row, written when
    the pass was found due, is closed if this fails unexpectedly (it logs its own errors)."""
    try:
        reconcile_account(account, db)
    except BaseException:
        schedule.run_ended(run_id, "failed before the pass (CRM reconcile)")
        raise


def _make_scheduler(settings: DaemonSettings) -> BackgroundScheduler:
    """Passes in a pool of ``max_concurrent_accounts``; the CRM poller and the webhooks in a
    thread of their own each, so passes never starve them."""
    return BackgroundScheduler(
        executors={
            "default": ThreadPoolExecutor(max_workers=settings.max_concurrent_accounts),
            "control": ThreadPoolExecutor(max_workers=1),
            "webhooks": ThreadPoolExecutor(max_workers=1),
        },
        job_defaults={
            "coalesce": True,  # a backlog of missed runs becomes one run
            "max_instances": 1,
            "misfire_grace_time": int(settings.misfire_grace_seconds),
        },
        timezone=dt.UTC,
    )


def _log_pass_done(report: PassReport, result: str, seconds: float) -> None:
    done = ", ".join(f"{k}: {v}" for k, v in sorted(report.applied.done.items())) or "no changes"
    log.info(
        "%s pass %s in %.2f s, %d request(s): %s; %d conflict(s), %d error(s)",
        report.mode,
        result,
        seconds,
        report.requests,
        done,
        report.applied.conflicts,
        len(report.errors),
    )


def _database_checks(db: Database) -> dict[str, str]:
    """Readiness of the database: it answers, and its schema is the one this code needs."""
    checks: dict[str, str] = {}
    try:
        db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {exc.__class__.__name__}"
    if checks["database"] == "ok":
        try:
            check_current(db)
            checks["schema"] = "ok"
        except FollowupSyncError as exc:
            checks["schema"] = str(exc)
    return checks
