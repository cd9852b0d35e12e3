"""The daemons' shared schedule as the database records it: back-off and the run log.

Several daemons on one database share one schedule: a failing account waits
``interval × 2^(failures-1)`` (at most ``max_backoff_seconds``) whoever tries it, and every
pass a daemon runs is a row of ``daemon_runs`` (who ran it, from when to when, with what
result). The back-off's formula is ``sync.config.backoff_seconds`` (the API's status shows the same
moment the daemon, :mod:`sync.service.schedule`, waits for); the run log is here because it
is SQL on one of the service's tables.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from sync.config import Account, backoff_seconds
from sync.state.rows import CollectionState, DaemonRun, as_utc, utcnow


def backoff_until(account: Account, state: CollectionState, cap: float) -> dt.datetime | None:
    """When the account's back-off ends (its last run plus the wait), None if it has none."""
    failures = state.consecutive_failures or 0
    if not failures or state.last_run_at is None:
        return None
    wait = backoff_seconds(account, failures, cap)
    return as_utc(state.last_run_at) + dt.timedelta(seconds=wait)


# --- the run log ----------------------------------------------------------------------------------


def start_run(session: Session, account: str, *, worker: str, mode: str) -> int:
    """A row for a pass starting now; returns its id (``finish_run`` completes it)."""
    row = DaemonRun(account=account, worker=worker, mode=mode, started_at=utcnow())
    session.add(row)
    session.flush()
    return row.id


def finish_run(session: Session, run_id: int, result: str) -> None:
    """Complete a pass's row: one UPDATE, no read first (a row already pruned stays gone)."""
    session.execute(
        update(DaemonRun)
        .where(DaemonRun.id == run_id)
        .values(finished_at=utcnow(), result=result)
        .execution_options(synchronize_session=False)
    )


def prune_runs(session: Session, older_than: dt.timedelta) -> None:
    """Delete rows of passes that started more than ``older_than`` ago (the table stays small)."""
    session.execute(delete(DaemonRun).where(DaemonRun.started_at < utcnow() - older_than))
