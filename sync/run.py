"""The composition root of a sync pass: the store, the engine and the features, wired once.

The engine (``sync.engine``) knows no feature and opens no connection: this module opens the
account's calendar (at the URL an earlier pass found, or by discovery, remembering what it
found), builds the hooks the features add to a pass (the invitations' SCHEDULE-AGENT and
their recording once the pass is over) and runs ``SyncPass``. The CLI, the daemon, the
dialog, the API and the demo all call ``run_pass`` here.
"""

from __future__ import annotations

from collections.abc import Callable

from sync.config import Account
from sync.engine.runner import CHUNK_SIZE, PassHooks, PassReport, Progress, SyncPass
from sync.errors import NotFound
from sync.heap import freeze_startup_objects
from sync.invitations.record import record_after_pass
from sync.invitations.scheduling import schedule_agent_for
from sync.state import repo
from sync.state.db import Database
from sync.stores.base import CalendarStore
from sync.stores.caldav import DavCalendar
from sync.stores.connect import open_calendar

__all__ = ["PassReport", "connect", "hooks_for", "run_pass"]


def connect(account: Account, db: Database, *, create: bool) -> DavCalendar | None:
    """The account's calendar; None when it is missing and ``create`` is False (a dry run).

    Discovery runs only without a configured or remembered URL; the URL it finds is kept
    in the state, so the next pass connects straight away. A configured ``calendar_url``
    wins over a remembered one, so it is not read then: one transaction less per pass
    (an idle pass made nine).
    """
    known_url = None
    if not account.calendar_url:
        with db.session() as session:
            known_url = repo.known_calendar_url(session, account.name)
    try:
        calendar = open_calendar(account, known_url=known_url, create=create)
    except NotFound:
        if create:
            raise
        return None
    if account.calendar_url or known_url:
        return calendar  # no discovery ran: nothing new to remember
    with db.sessions.begin() as session:
        repo.remember_calendar_url(session, account.name, calendar.url)
    return calendar


def hooks_for(account: Account, db: Database, calendar: CalendarStore | None) -> PassHooks:
    """What the invitations add to a pass of ``account``.

    Invitations fall due only through a change a pass applied; a full pass also re-checks,
    which heals a recording that failed on an earlier pass. A failure to record them never
    fails the pass (``sync.invitations.record.record_after_pass``).
    """

    def after_pass(report: PassReport) -> None:
        if report.applied.done or report.mode == "full":
            record_after_pass(account, db, calendar)

    return PassHooks(
        schedule_agent=schedule_agent_for(account, calendar),
        after_pass=after_pass,
    )


def run_pass(
    account: Account,
    db: Database,
    *,
    dry_run: bool = False,
    full: bool = False,
    force_delete: bool = False,
    calendar: CalendarStore | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> PassReport:
    """The one entry point the CLI, the daemon and the tests share.

    ``should_stop`` is polled between actions (the daemon's shutdown flag). A calendar
    this function connects itself is closed at the end, so a long-running daemon does
    not keep one HTTP session per pass. ``chunk_size``: follow-ups planned and applied
    together (``sync.engine.runner.CHUNK_SIZE``).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    freeze_startup_objects()  # once per process: see sync.heap
    store = calendar if calendar is not None else connect(account, db, create=not dry_run)
    try:
        sync_pass = SyncPass(
            account,
            db,
            calendar=store,
            hooks=hooks_for(account, db, store),
            should_stop=should_stop,
            chunk_size=chunk_size,
        )
        return sync_pass.run(
            dry_run=dry_run, full=full, force_delete=force_delete, progress=progress
        )
    finally:
        if calendar is None and store is not None:
            store.close()
