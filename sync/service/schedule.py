"""When an account is due, as the database says: shared by every daemon on one database.

The daemon (:mod:`sync.service.daemon`) owns the clock of this process (APScheduler jobs);
this module owns what all processes agree on, read from and written to the database:

* whether a pass is due, and its start (``Schedule.begin``): paused over the API, backing off after
  failures (``interval × 2^(failures-1)``, at most ``max_backoff_seconds``), or fresh (any
  process synced it within half an interval);
* the failures in a row, the next run shown by ``status``, and the run log (``daemon_runs``);
* which accounts a CRM write concerns (``CrmWatch``): follow-ups written since the last
  look, each taken once, and the accounts they belong to or were synced to.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sync.api import controls
from sync.config import Account, DaemonSettings, backoff_seconds
from sync.state import controls as control_rows
from sync.state import followups as crm_store
from sync.state import repo
from sync.state import schedule as shared
from sync.state.db import CollectionState, Database, as_utc, utcnow
from sync.state.followups import WrittenFollowUp

#: Rows of ``daemon_runs`` older than this are deleted (hourly), so the table stays small.
RUN_LOG_RETENTION = dt.timedelta(days=7)
RUN_LOG_PRUNE_SECONDS = 3600.0
#: A CRM change is looked for again this far back, so a transaction that committed late
#: with an earlier timestamp is still seen; (id, updated_at) pairs already handled are skipped.
CRM_POLL_OVERLAP = dt.timedelta(seconds=10)
#: An interval pass is skipped when any process finished one this recently (share of the interval).
FRESH_SHARE = 0.5


@dataclass(frozen=True)
class PassStart:
    """What ``Schedule.begin`` decided: no pass (``why_not``), or a pass and its run log row."""

    why_not: str | None = None
    #: An admin's reset was taken: the links are forgotten and the pass is full.
    reset: bool = False
    full: bool = False
    run_id: int = 0
    #: Failed passes in a row before this one. Only a pass that holds the account's lock
    #: changes the count, so it is still this when the pass ends: a success needs to
    #: reset it only when it is not 0 (one statement less for an idle pass).
    failures: int = 0


class Schedule:
    """The accounts' shared schedule in the database, as one daemon process consults it."""

    def __init__(self, db: Database, settings: DaemonSettings, *, worker: str) -> None:
        self.db = db
        self.settings = settings
        self.worker = worker
        self._last_prune = 0.0

    def backoff(self, account: Account, failures: int) -> float:
        return backoff_seconds(account, failures, self.settings.max_backoff_seconds)

    def begin(self, account: Account, *, full: bool, reason: str) -> PassStart:
        """Whether ``account`` is due and, if so, the start of its pass: in one transaction.

        Backing off, fresh or paused: no pass (``PassStart.why_not``). Otherwise an admin's
        reset request is taken (the links forgotten, the pass made full) and the run log's
        row written. One transaction instead of three (the schedule read, the reset, the
        run log), each a connection check-out, a round trip for its liveness check and a
        commit: an idle pass made nine transactions, and they were most of its CPU time.
        """
        with self.db.sessions.begin() as session:
            # The schedule first: with several daemons, most tries find the account fresh
            # (another daemon ran it), and then the control row need not be read at all.
            state = repo.collection_state(session, account.name)
            why_not = self._why_not(state, account, full=full, reason=reason)
            if why_not:
                return PassStart(why_not=why_not)
            paused, reset_asked = control_rows.pause_and_reset_asked(session, account.name)
            if paused:
                return PassStart(
                    why_not="paused over the API (resume: POST /v1/accounts/NAME/resume)"
                )
            reset = reset_asked and controls.take_reset_in(session, account.name)
            mode = "full" if full or reset else "incremental"
            run_id = shared.start_run(
                session,
                account.name,
                worker=self.worker,
                mode=mode if reason != "crm" else f"{mode} (crm)",
            )
            failures = (state.consecutive_failures or 0) if state is not None else 0
            return PassStart(reset=reset, full=full or reset, run_id=run_id, failures=failures)

    def _why_not(
        self, state: CollectionState | None, account: Account, *, full: bool, reason: str
    ) -> str | None:
        """Why ``account`` is not synced now (backing off, fresh); None if it is due."""
        if state is None or state.last_run_at is None:
            return None
        if reason == "api":
            return None  # "sync now" from an admin: not held back by the schedule
        now = utcnow()
        failures = state.consecutive_failures or 0
        since = (now - as_utc(state.last_run_at)).total_seconds()
        wait = self.backoff(account, failures)
        if failures and since < wait:
            return f"backing off after {failures} failure(s): next try in {wait - since:.0f} s"
        if reason == "interval" and not failures and since < account.interval_seconds * FRESH_SHARE:
            return "fresh"
        if reason == "full" and state.last_full_at is not None and account.full_interval_seconds:
            since_full = (now - as_utc(state.last_full_at)).total_seconds()
            if since_full < account.full_interval_seconds * FRESH_SHARE:
                return "fresh"
        return None

    # --- failures and the next run -----------------------------------------------------------

    def failures(self, name: str) -> int:
        with self.db.session() as session:
            return repo.failures_in_a_row(session, name)

    def failed(self, account: Account, failures: int, wait: float, error: Exception) -> None:
        """Record the failed pass: the count in a row, why, and when it is tried again."""
        now = utcnow()
        result = f"failed ({failures} in a row, next try in {wait:.0f} s): {error}"[:2000]
        with self.db.sessions.begin() as session:
            repo.record_failed_pass(
                session, account.name, calendar_url=account.calendar_url or account.url, at=now,
                failures=failures, result=result, next_run=now + dt.timedelta(seconds=wait),
            )  # fmt: skip

    def write_next_run(self, account: Account, next_run: dt.datetime) -> None:
        """Store when ``account`` runs next (``status`` reads it): ``next_run`` or, while it
        backs off, the end of the back-off if later. An account never connected has no row
        yet; its first pass creates one."""
        with self.db.sessions.begin() as session:
            state = repo.collection_state(session, account.name)
            if state is None:
                return
            until = shared.backoff_until(account, state, self.settings.max_backoff_seconds)
            later = max(next_run, until) if until is not None else next_run
            repo.set_next_run(session, account.name, later)

    # --- the run log -----------------------------------------------------------------------------

    def run_ended(self, run_id: int, result: str, *, succeeded: str | None = None) -> None:
        """Complete the run log row; ``succeeded``: the account whose pass ran after
        failures, whose back-off is over (in the same transaction: an idle pass costs a few
        round trips, and each transaction is one more)."""
        with self.db.sessions.begin() as session:
            if succeeded is not None:
                repo.clear_failures_in_a_row(session, succeeded)
            shared.finish_run(session, run_id, result)

    def prune_run_log(self) -> None:
        """Drop old run log rows, at most once an hour."""
        now = time.monotonic()
        if now - self._last_prune < RUN_LOG_PRUNE_SECONDS:
            return
        self._last_prune = now
        with self.db.sessions.begin() as session:
            shared.prune_runs(session, RUN_LOG_RETENTION)


class CrmWatch:
    """Follow-ups the CRM wrote since the last look, each (id, write time) taken once."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._watermark: dt.datetime | None = None
        self._seen: set[tuple[str, dt.datetime]] = set()

    def start(self) -> None:
        """Watch from the newest write in the database on: what is older was synced already."""
        with self.db.session() as session:
            self._watermark = crm_store.last_write_at(session)

    def changed(self) -> list[WrittenFollowUp]:
        since = self._watermark - CRM_POLL_OVERLAP if self._watermark else None
        with self.db.session() as session:
            rows = crm_store.written_since(session, since)
        fresh = []
        for row in rows:
            key = (row.id, as_utc(row.updated_at))
            if key in self._seen:
                continue
            self._seen.add(key)
            fresh.append(row)
            if self._watermark is None or key[1] > self._watermark:
                self._watermark = key[1]
        if self._watermark is not None:
            horizon = self._watermark - 2 * CRM_POLL_OVERLAP
            self._seen = {k for k in self._seen if k[1] > horizon}
        return fresh

    def accounts_for(
        self, rows: Sequence[WrittenFollowUp], accounts: Mapping[str, Account]
    ) -> set[str]:
        """Accounts a changed follow-up belongs to, or was synced to (an owner change moves it)."""
        if not rows:
            return set()
        with self.db.session() as session:
            synced = repo.synced_pairs(session, [row.id for row in rows])
        affected = set()
        for row in rows:
            for name, account in accounts.items():
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
