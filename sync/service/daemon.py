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
3. the schedule as the database records it, shared by all processes: an account synced
   by anyone within half an interval is not synced again, and a failing account waits
   ``interval × 2^(failures-1)`` (at most ``max_backoff_seconds``) whoever tries it.

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
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import delete, func, select, text

from sync import webhooks
from sync.api import controls
from sync.config import Account, Settings, backoff_seconds
from sync.errors import FollowupSyncError
from sync.invitations.replies import fetch_replies
from sync.invitations.send import send_pending, unsent
from sync.logs import log_context
from sync.run import PassReport, run_pass
from sync.service.metrics import Metrics
from sync.state import changes
from sync.state.db import (
    CollectionState,
    DaemonRun,
    Database,
    FollowUpRow,
    SyncItem,
    as_utc,
    utcnow,
)
from sync.state.locks import ClusterLock, Held, cluster_lock_for
from sync.state.schema import check_current

log = logging.getLogger(__name__)

#: Rows of ``daemon_runs`` older than this are deleted (hourly), so the table stays small.
RUN_LOG_RETENTION = dt.timedelta(days=7)
#: A CRM change is looked for again this far back, so a transaction that committed late
#: with an earlier timestamp is still seen; (id, updated_at) pairs already handled are skipped.
CRM_POLL_OVERLAP = dt.timedelta(seconds=10)
#: How often the webhook outbox is looked at, and how often the feed is pruned.
WEBHOOK_TICK = 0.5
FEED_PRUNE_SECONDS = 60.0
#: An interval pass is skipped when any process finished one this recently (share of the interval).
FRESH_SHARE = 0.5


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
        self._crm_watermark: dt.datetime | None = None
        self._crm_seen: set[tuple[str, dt.datetime]] = set()
        self._last_prune = 0.0
        #: Where invitations go out and replies come in; None: the daemon sends no mail.
        self.mail = settings.mail
        self.webhooks = webhooks.Deliverer(db, settings.webhooks, cluster_lock=self.cluster_lock)
        self._last_feed_prune = 0.0
        ds = self.daemon_settings
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(max_workers=ds.max_concurrent_accounts),
                "control": ThreadPoolExecutor(max_workers=1),
                "webhooks": ThreadPoolExecutor(max_workers=1),
            },
            job_defaults={
                "coalesce": True,  # a backlog of missed runs becomes one run
                "max_instances": 1,
                "misfire_grace_time": int(ds.misfire_grace_seconds),
            },
            timezone=dt.UTC,
        )

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Check the schema, schedule every job and start the scheduler (returns at once)."""
        check_current(self.db)
        self._crm_watermark = self._max_updated_at()
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
        if self.mail is not None and self.mail.imap is not None:
            self.scheduler.add_job(
                self._fetch_replies,
                "interval",
                id="mail-replies",
                seconds=self.mail.imap.poll_seconds,
                next_run_time=now + dt.timedelta(seconds=1),
                replace_existing=True,
            )
        webhooks.sync_config(self.db, self.settings.webhooks)
        self.scheduler.add_job(
            self._deliver_webhooks,
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
        self.webhooks.close()
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
            why_not = self._not_due(account, full=full, reason=reason)
            if why_not:
                log.debug("%s: %s", name, why_not)
                return why_not
            if controls.take_reset(self.db, name):
                log.info("%s: links forgotten on request; re-linking by UID", name)
                full = True
            outcome = self._run_pass(account, held, full=full, reason=reason)
            self._send_invitations(account)
            return outcome

    # --- invitations -----------------------------------------------------------------------------

    def _send_invitations(self, account: Account) -> None:
        """Send what the account's passes recorded; called under the account's locks.

        Only when mail is configured and the account does not say ``scheduling = "none"``;
        what is in the outbox was recorded because email is the way for it (the account's
        mode is email, or the server cannot schedule that follow-up), and a message no
        pass recorded is never sent. Failing to reach SMTP is logged and left for the next
        pass: the messages stay pending (or failed) and are sent then, each once.
        """
        if self.mail is None or account.scheduling == "none" or self.stopping.is_set():
            return
        name = account.name
        with log_context(account=name):
            try:
                if not unsent(self.db, name):
                    return
                report = send_pending(self.mail, self.db, account=name)
            except Exception as exc:  # SMTP down, bad credentials, database hiccup
                log.warning("invitations not sent, trying again after the next pass: %s", exc)
                return
            if report.sent or report.failed or report.uncertain:
                log.info(
                    "invitations: %d sent, %d failed (tried again after the next pass), "
                    "%d uncertain (not sent again by itself; see 'invitations outbox')",
                    len(report.sent),
                    len(report.failed),
                    len(report.uncertain),
                )

    # --- webhooks and the change feed ----------------------------------------------------------

    def _deliver_webhooks(self) -> None:
        """Send what the feed owes each subscription; prune the feed now and then."""
        if self.stopping.is_set():
            return
        try:
            self.webhooks.run_once()
            self._prune_feed()
        except Exception:
            log.exception("webhook delivery failed; trying again next tick")

    def _prune_feed(self) -> None:
        now = time.monotonic()
        if now - self._last_feed_prune < FEED_PRUNE_SECONDS:
            return
        self._last_feed_prune = now
        retention = dt.timedelta(days=self.settings.feed.retention_days)
        with self.db.sessions.begin() as session:
            dropped = changes.prune(session, retention, keep_after=webhooks.oldest_owed(session))
        if dropped:
            log.info("change feed: %d entries older than %s dropped", dropped, retention)

    def _fetch_replies(self) -> None:
        """Job body: read new iTIP replies; one daemon at a time, failures logged and retried."""
        if self.stopping.is_set() or self.mail is None:
            return
        try:
            with self.cluster_lock.hold("followup-sync:mail-replies") as held:
                if held is None:
                    return  # another daemon is reading the mailbox right now
                outcomes = fetch_replies(self.mail, self.db)
        except Exception as exc:
            log.warning("reading invitation replies failed, trying again next poll: %s", exc)
            return
        applied = sum(1 for o in outcomes if o.outcome == "applied")
        if outcomes:
            log.info("invitation replies: %d applied, %d ignored", applied, len(outcomes) - applied)

    def _not_due(self, account: Account, *, full: bool, reason: str) -> str | None:
        """Consult the shared schedule in the database (see the module docstring, step 3)."""
        with self.db.session() as session:
            if controls.is_paused(session, account.name):
                return "paused over the API (resume: POST /v1/accounts/NAME/resume)"
            state = session.get(CollectionState, account.name)
        if state is None or state.last_run_at is None:
            return None
        if reason == "api":
            return None  # "sync now" from an admin: not held back by the schedule
        now = utcnow()
        failures = state.consecutive_failures or 0
        since = (now - as_utc(state.last_run_at)).total_seconds()
        wait = backoff_seconds(account, failures, self.daemon_settings.max_backoff_seconds)
        if failures and since < wait:
            return f"backing off after {failures} failure(s): next try in {wait - since:.0f} s"
        if reason == "interval" and not failures and since < account.interval_seconds * FRESH_SHARE:
            return "fresh"
        if reason == "full" and state.last_full_at is not None and account.full_interval_seconds:
            since_full = (now - as_utc(state.last_full_at)).total_seconds()
            if since_full < account.full_interval_seconds * FRESH_SHARE:
                return "fresh"
        return None

    def _run_pass(self, account: Account, held: Held, *, full: bool, reason: str) -> str:
        name = account.name
        mode = "full" if full else "incremental"
        run_id = self._log_start(name, mode if reason != "crm" else f"{mode} (crm)")
        self.metrics.running.inc()
        started = time.monotonic()

        def should_stop() -> bool:
            return self.stopping.is_set() or not held.still_held()

        result: str
        try:
            with log_context(account=name):
                log.info("%s pass starts (%s)", mode, reason)
                try:
                    report = self.runner(account, self.db, full=full, should_stop=should_stop)
                except (
                    Exception
                ) as exc:  # every failure of a pass is the account's, not the daemon's
                    result = self._pass_failed(account, mode, exc, time.monotonic() - started)
                else:
                    seconds = time.monotonic() - started
                    self.metrics.pass_done(report, seconds, time.time())
                    self._set_failures(name, 0)
                    result = "stopped" if report.stopped else ("ok" if report.ok else "partial")
                    done = (
                        ", ".join(f"{k}: {v}" for k, v in sorted(report.applied.done.items()))
                        or "no changes"
                    )
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
        finally:
            self.metrics.running.dec()
        self._log_end(run_id, result)
        self.runtime[name].last_result = result
        return result

    def _pass_failed(self, account: Account, mode: str, exc: Exception, seconds: float) -> str:
        name = account.name
        failures = self._failures(name) + 1
        wait = backoff_seconds(account, failures, self.daemon_settings.max_backoff_seconds)
        if isinstance(exc, FollowupSyncError):
            log.warning("pass failed (%d in a row, next try in %.0f s): %s", failures, wait, exc)
        else:
            log.exception(
                "pass failed with an unexpected error (%d in a row, next try in %.0f s)",
                failures,
                wait,
            )
        self.metrics.pass_failed(name, mode, seconds, failures)
        now = utcnow()
        with self.db.sessions.begin() as session:
            state = session.get(CollectionState, name)
            if state is None:
                state = CollectionState(
                    account=name, calendar_url=account.calendar_url or account.url
                )
                session.add(state)
            state.last_run_at = now
            state.consecutive_failures = failures
            state.last_result = f"failed ({failures} in a row, next try in {wait:.0f} s): {exc}"[
                :2000
            ]
            state.next_run_at = now + dt.timedelta(seconds=wait)
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
            changed = self._changed_followups()
            for name in self._accounts_for(changed):
                log.info("CRM changed follow-ups of %s; syncing it soon", name)
                self.request(name)
            for name in controls.take_requests(self.db, set(self.accounts)):
                log.info("%s: a pass was asked for over the API; syncing it now", name)
                self.request(name, reason="api", delay=0.0)
            self._prune_run_log()
        except Exception:
            log.exception("polling the follow-up store failed; trying again next poll")

    def _max_updated_at(self) -> dt.datetime | None:
        with self.db.session() as session:
            value = session.scalar(select(func.max(FollowUpRow.updated_at)))
        return as_utc(value) if value is not None else None

    def _changed_followups(self) -> list[Any]:
        since = self._crm_watermark - CRM_POLL_OVERLAP if self._crm_watermark else None
        query = select(
            FollowUpRow.id,
            FollowUpRow.owner,
            FollowUpRow.kind,
            FollowUpRow.origin_account,
            FollowUpRow.updated_at,
        )
        if since is not None:
            query = query.where(FollowUpRow.updated_at > since)
        with self.db.session() as session:
            rows = list(session.execute(query))
        fresh = []
        for row in rows:
            key = (row.id, as_utc(row.updated_at))
            if key in self._crm_seen:
                continue
            self._crm_seen.add(key)
            fresh.append(row)
            if self._crm_watermark is None or key[1] > self._crm_watermark:
                self._crm_watermark = key[1]
        if self._crm_watermark is not None:
            horizon = self._crm_watermark - 2 * CRM_POLL_OVERLAP
            self._crm_seen = {k for k in self._crm_seen if k[1] > horizon}
        return fresh

    def _accounts_for(self, rows: list[Any]) -> set[str]:
        """Accounts a changed follow-up belongs to, or was synced to (an owner change moves it)."""
        if not rows:
            return set()
        ids = [row.id for row in rows]
        with self.db.session() as session:
            synced = set(
                session.execute(
                    select(SyncItem.account, SyncItem.followup_id).where(
                        SyncItem.followup_id.in_(ids)
                    )
                )
            )
        affected = set()
        for row in rows:
            for name, account in self.accounts.items():
                if (
                    (name, row.id) in synced
                    or row.origin_account == name
                    or (
                        row.origin_account is None
                        and account.selects(followup_id=row.id, owner=row.owner, kind=row.kind)
                    )
                ):
                    affected.add(name)
        return affected

    # --- bookkeeping in the database ----------------------------------------------------------

    def _failures(self, name: str) -> int:
        with self.db.session() as session:
            state = session.get(CollectionState, name)
            return (state.consecutive_failures or 0) if state is not None else 0

    def _set_failures(self, name: str, failures: int) -> None:
        with self.db.sessions.begin() as session:
            state = session.get(CollectionState, name)
            if state is not None:
                state.consecutive_failures = failures

    def _write_next_run(self, name: str) -> None:
        """Store when this process will next run ``name`` (``status`` reads it)."""
        times = []
        for prefix in ("sync", "crm"):
            job = self.scheduler.get_job(f"{prefix}:{name}")
            if job is not None and job.next_run_time is not None:
                times.append(job.next_run_time)
        if not times:
            return
        next_run = min(times)
        try:
            with self.db.sessions.begin() as session:
                state = session.get(CollectionState, name)
                if state is None:
                    return  # never connected yet: the first pass creates the row
                failures = state.consecutive_failures or 0
                if failures and state.last_run_at is not None:
                    wait = backoff_seconds(
                        self.accounts[name], failures, self.daemon_settings.max_backoff_seconds
                    )
                    next_run = max(next_run, as_utc(state.last_run_at) + dt.timedelta(seconds=wait))
                state.next_run_at = next_run
        except Exception as exc:
            log.debug("could not store next run of %s: %s", name, exc)

    def _log_start(self, name: str, mode: str) -> int:
        with self.db.sessions.begin() as session:
            row = DaemonRun(account=name, worker=self.worker, mode=mode, started_at=utcnow())
            session.add(row)
            session.flush()
            return row.id

    def _log_end(self, run_id: int, result: str) -> None:
        with self.db.sessions.begin() as session:
            row = session.get(DaemonRun, run_id)
            if row is not None:
                row.finished_at = utcnow()
                row.result = result

    def _prune_run_log(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 3600:
            return
        self._last_prune = now
        with self.db.sessions.begin() as session:
            session.execute(
                delete(DaemonRun).where(DaemonRun.started_at < utcnow() - RUN_LOG_RETENTION)
            )

    # --- health ----------------------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, str]]:
        """(ready, checks): the database answers, its schema is current, the scheduler runs."""
        checks: dict[str, str] = {}
        try:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
        if checks["database"] == "ok":
            try:
                check_current(self.db)
                checks["schema"] = "ok"
            except FollowupSyncError as exc:
                checks["schema"] = str(exc)
        checks["scheduler"] = "ok" if self.running else "stopped"
        return all(v == "ok" for v in checks.values()), checks

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self.scheduler.get_jobs())

    def remove_job(self, job_id: str) -> None:
        """For tests and operators: drop one scheduled job."""
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id)
