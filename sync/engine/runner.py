"""One sync pass for one account: list, fetch, plan, apply, remember.

The steps, and the requests each costs on a server with sync tokens:

1. **List** what changed since the stored token: one REPORT sync-collection. Without a
   token, with an invalid one, or on ``--full``, the whole calendar is listed instead
   (href + ETag only). A listing that fails ends the pass before anything is planned, so
   a failed listing can never look like "everything was deleted" (``sync.engine.listing``).
2. **Fetch** the resources whose ETag differs from the state, plus the ones that failed
   last time, with calendar-multiget in batches, and read each with the mapper. An item
   that cannot be read is reported by href, remembered in ``pending_hrefs`` and left
   alone; it is retried next pass even though the token has moved on (``sync.engine.fetch``).
3. **Plan** with ``sync.engine.plan`` — pure, so ``--dry-run`` stops here and prints it.
4. **Apply** action by action (``sync.engine.apply``), then store the new token.

An idle pass is therefore one request; a pass with changes is one REPORT, one multiget
per ``batch_size`` changed items, and one write per changed follow-up.

Steps 2 to 4 run in chunks of ``chunk_size`` (``CHUNK_SIZE``), so that a pass never holds
every series at once: what the whole pass keeps is one small record per item (state
entry, CRM hash, listed ETag). ``sync.engine.chunks.Chunker`` cuts the pass: first the fetched
hrefs, a slice at a time (whole multiget batches: the same requests), each planned with
the follow-ups its resources belong to (by href, or by UID for a resource nobody has
recorded); then the follow-ups with nothing fetched (CRM edits, creates, deletions), in
sorted chunks. Each chunk's documents are loaded from the database when it is planned
and released when it has been applied (``sync.engine.inputs``). The safety rails still
judge the whole pass before its first write: the empty-side check runs on the listing and
the CRM entries; the deletion limit on a bound from the same data, and where that bound
cannot rule out a refusal, on the exact count of a first planning sweep that applies
nothing (what it fetches waits in a temporary file for the sweep that applies, so no
request is made twice). The report lists every planned action as ``Planned`` (no
documents), and the progress callback counts (done, total) over the whole pass.

The engine knows no feature: what a feature adds to a pass (the invitations' SCHEDULE-AGENT
and their recording after the pass) comes in as ``PassHooks``, wired by ``sync.run``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from mappings.equivalence import differences
from mappings.model import FollowUp, id_for_uid
from sync.config import Account
from sync.engine import bulk
from sync.engine.actions import (
    CreateFromServer,
    Merge,
    Plan,
    Planned,
    PlanSummary,
    SaveFromServer,
    UpdateOnServer,
)
from sync.engine.apply import Applier, ApplyReport
from sync.engine.chunks import Chunker, Spill, plan_chunk
from sync.engine.direction import OneWay
from sync.engine.fetch import Fetcher, to_fetch
from sync.engine.inputs import Inputs
from sync.engine.listing import Lister, Listing
from sync.engine.plan import (
    PlanOptions,
    check_deletions,
    check_sides_not_empty,
    too_many_deletions,
)
from sync.engine.views import ServerDoc, ServerView
from sync.errors import StoreError
from sync.state import intents, repo
from sync.state.db import CollectionState, Database, utcnow
from sync.stores.base import CalendarStore, Resource

log = logging.getLogger(__name__)

#: Follow-ups (or fetched resources) planned and applied together. A pass holds the
#: documents, fetched resources and actions of one chunk at a time, so its memory does
#: not grow with the calendar; only small per-item records (hash, href, ETag) are kept
#: for the whole pass.
CHUNK_SIZE = 500

#: Called with (done, total) while the plan is applied; the CLI draws a progress bar.
Progress = Callable[[int, int], None]

#: SCHEDULE-AGENT for a document's ATTENDEEs (None: leave them unmarked).
ScheduleAgent = Callable[[FollowUp], str | None]


@dataclass
class PassReport:
    account: str
    mode: str  # "incremental" or "full"
    dry_run: bool
    #: Every action planned (as ``Planned``: no documents), in the order the chunks ran.
    plan: PlanSummary
    fetched: int = 0
    requests: int = 0
    applied: ApplyReport = field(default_factory=ApplyReport)
    read_errors: list[tuple[str, str]] = field(default_factory=list)
    #: Dry run only: the calendar the real pass would create first (it does not exist yet).
    calendar_to_create: str | None = None

    @property
    def errors(self) -> list[tuple[str, str]]:
        return self.read_errors + self.applied.errors

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def stopped(self) -> bool:
        """Cut short by ``should_stop``: the rest of the plan runs next pass."""
        return self.applied.stopped


@dataclass(frozen=True)
class PassHooks:
    """What features add to a pass, passed in by the composition root (``sync.run``).

    The engine calls them and knows nothing of what they do: ``schedule_agent`` marks the
    ATTENDEEs of each document a pass writes (never both the server and us sending the
    same invitation); ``after_pass`` runs once a pass that wrote is over and its data is
    released (not on a dry run), and must not fail the pass.
    """

    schedule_agent: ScheduleAgent | None = None
    after_pass: Callable[[PassReport], None] | None = None


@dataclass
class _Sweep:
    """What one sweep over a pass's chunks planned, read and applied."""

    planned: list[Planned] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    deletions: int = 0
    fetched: set[str] = field(default_factory=set)  # hrefs read
    failed: dict[str, str] = field(default_factory=dict)  # href -> why it could not be read
    #: follow-up id -> why it could not be loaded or planned (the pass went on without it)
    unplanned: dict[str, str] = field(default_factory=dict)
    applied: ApplyReport = field(default_factory=ApplyReport)

    def stop_requested(self, should_stop: Callable[[], bool] | None) -> bool:
        if should_stop is not None and should_stop():
            self.applied.stopped = True
            log.info("stopping: the rest of the pass runs next pass")
            return True
        return False

    def report(self, account: str, mode: str, *, dry_run: bool) -> PassReport:
        return PassReport(
            account,
            mode,
            dry_run,
            PlanSummary(tuple(self.planned), tuple(self.skipped), tuple(self.notices)),
            fetched=len(self.fetched),
            read_errors=sorted(self.failed.items()) + sorted(self.unplanned.items()),
            applied=self.applied,
        )


def _add_up(total: ApplyReport, part: ApplyReport) -> None:
    """Add one chunk's ApplyReport to the pass's."""
    for key, count in part.done.items():
        total.done[key] = total.done.get(key, 0) + count
    total.conflicts += part.conflicts
    total.errors.extend(part.errors)
    total.notes.extend(part.notes)
    total.stopped = total.stopped or part.stopped


def _scope(account: Account, options: PlanOptions) -> str:
    """A digest of everything besides the rows that decides what a pass plans."""
    settings = account.model_dump_json() + repr(options)
    return hashlib.sha256(settings.encode()).hexdigest()


def _crm_unchanged(collection: CollectionState, revision: int | None, scope: str) -> bool:
    """True when no follow-up or sync record was written since a pass found nothing to do.

    The change counter (``sync.state.db.ChangeCounter``) moves with every committed
    write to the follow-ups, the sync records or the write intents, whichever process
    or account made it; the account's settings must be the same too.

    Only a pass that found nothing to do and left no write intent records the counter
    (``SyncPass._finish``), and a pass that takes the shortcut read no unreadable item
    waiting: so the shortcut's own record (``quiet``) has no intent to drop and no
    unreadable item to forget, and skips both statements.
    """
    if revision is None or collection.crm_revision_seen != revision:
        return False
    return collection.crm_scope_seen == scope


def _options_for(account: Account) -> PlanOptions:
    """What the planner takes from the account's settings."""
    return PlanOptions(
        policy=account.conflict_policy,
        on_server_delete=account.on_server_delete,
        import_new=account.import_new,
        max_delete_percent=account.max_delete_percent,
    )


def _found_nothing_to_do(report: PassReport, failed: Mapping[str, str], listing: Listing) -> bool:
    """Only a pass that found nothing at all to do vouches for the rows it read: one that
    wrote moved the change counter anyway, one that failed or skipped must retry."""
    return (
        report.ok
        and not report.stopped
        and not report.plan.actions
        and not report.plan.skipped
        and not report.plan.notices
        and not failed
        and listing.token is not None
    )


def _last_result(report: PassReport) -> str:
    """The collection's one-line summary of a pass."""
    if report.stopped:
        return "stopped (shutdown); the rest runs next pass"
    return "ok" if report.ok else f"{len(report.errors)} item(s) failed"


def _explain(inputs: Inputs, the_plan: Plan) -> list[Planned]:
    """Each action with its follow-up's title and the parts it changes, for a dry run.

    Compared with what the written side holds now: the agreed document for a write
    to the calendar (the calendar has not changed it, or the plan would merge), the
    CRM's document for a write to the CRM, the agreed one for a merge.
    """
    ids = {action.followup_id for action in the_plan.actions}
    synced = inputs.synced_documents(ids)
    current = inputs.current_documents(ids)
    explained = []
    for action in the_plan.actions:
        followup_id = action.followup_id
        document: FollowUp | None = getattr(action, "document", None)
        if isinstance(action, (SaveFromServer, CreateFromServer)):
            before = current.get(followup_id)
        elif isinstance(action, (UpdateOnServer, Merge)):
            before = synced.get(followup_id)
        else:
            before = None
        changes = differences(before, document) if before and document else []
        known = document or current.get(followup_id) or synced.get(followup_id)
        title = known.title if known is not None else None
        explained.append(Planned.of(action, title=title, changes=tuple(changes)))
    return explained


class SyncPass:
    def __init__(
        self,
        account: Account,
        db: Database,
        *,
        calendar: CalendarStore | None,
        hooks: PassHooks | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        should_stop: Callable[[], bool] | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        """``calendar`` None: it does not exist yet, and only a dry run can plan (see ``run``)."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.account = account
        self.db = db
        self.hooks = hooks or PassHooks()
        self.clock = clock
        self.should_stop = should_stop
        self.chunk_size = chunk_size
        self._calendar = calendar
        self._started = utcnow()
        self.inputs = Inputs(account, db)
        self.options = _options_for(account)
        #: One-way mode (``sync.engine.direction``): applied to every plan this pass makes.
        self.one_way = OneWay(account, db)

    @property
    def calendar(self) -> CalendarStore:
        if self._calendar is None:
            raise StoreError(
                f"{self.account.name}: calendar {self.account.calendar!r} does not exist yet; "
                "only a dry run plans without it"
            )
        return self._calendar

    # --- the pass ----------------------------------------------------------------------------

    def run(
        self,
        *,
        dry_run: bool = False,
        full: bool = False,
        force_delete: bool = False,
        progress: Progress | None = None,
    ) -> PassReport:
        if force_delete:
            self.options = replace(self.options, force_delete=True)
        if dry_run and self._calendar is None:
            return self._plan_for_new_calendar()
        #: Fetches and reads this pass's resources; knows which items wait for a retry.
        self.fetcher = Fetcher(self.account, self.calendar)
        before = self.calendar.stats.copy()
        report = self._pass(dry_run=dry_run, full=full, progress=progress)
        report.requests = self.calendar.stats.since(before).requests
        # Called once the pass's own data is released: a hook may read every synced
        # follow-up itself.
        if not dry_run and self.hooks.after_pass is not None:
            self.hooks.after_pass(report)
        return report

    def _plan_for_new_calendar(self) -> PassReport:
        """A dry run's plan when the calendar does not exist yet: against an empty one.

        Everything that belongs in the calendar would be created there; a follow-up synced
        before (its calendar since deleted) hits the same empty-side safety rail as a real
        pass would.
        """
        state = self.inputs.state_entries()
        crm = self.inputs.crm_view(state)
        server = ServerView(True, {}, frozenset())
        check_sides_not_empty(crm, server, state, self.options)
        by_href = {entry.href: entry for entry in state.values()}
        chunks = Chunker(
            crm, server, state, [], size=self.chunk_size, batch=self.account.batch_size,
            by_href=by_href,
        )  # fmt: skip
        sweep = self._sweep(chunks, apply=False, keep=True, explain=True)
        check_deletions(sweep.deletions, len(state), self.options)
        report = sweep.report(self.account.name, "full", dry_run=True)
        report.calendar_to_create = f"{self.account.calendar!r} under {self.account.url}"
        return report

    def _pass(self, *, dry_run: bool, full: bool, progress: Progress | None) -> PassReport:
        self._started = utcnow()
        with self.db.sessions.begin() as session:
            collection, revision, pending = repo.open_collection(
                session, self.account.name, self.calendar.url
            )
        # Read once, and only if needed: an idle pass reads no state entry.
        recorded = functools.cache(self.inputs.state_entries)
        lister = Lister(self.account.name, self.calendar, self.db)
        listing = lister.changes(collection, recorded, full=full)
        if (
            not full
            and listing.is_empty_delta()
            and not pending
            and _crm_unchanged(collection, revision, _scope(self.account, self.options))
        ):
            # Nothing changed on either side since a pass that found nothing to do: this
            # one would find nothing either, without reading a single row.
            report = _Sweep().report(self.account.name, "incremental", dry_run=dry_run)
            if not dry_run:
                self._finish(listing, {}, set(), report, revision, True)  # quiet
            return report
        state = recorded()
        by_href = {entry.href: entry for entry in state.values()}
        self.fetcher.retry(pending, listing.etags, utcnow())
        wanted = to_fetch(listing, by_href, pending)
        crm = self.inputs.crm_view(state)
        server = ServerView(listing.complete, listing.etags, listing.deleted)
        # The safety rails are decided over the whole pass before anything is fetched for
        # planning or written: an empty side now, too many deletions below.
        check_sides_not_empty(crm, server, state, self.options)

        chunker = functools.partial(
            Chunker, crm, server, state, wanted,
            size=bulk.chunk_size(self.calendar, listing, len(state), self.chunk_size),
            batch=self.account.batch_size, by_href=by_href,
        )  # fmt: skip

        mode = "full" if listing.complete else "incremental"
        if dry_run:
            # Nothing is applied, so one sweep plans everything; the plan is refused as a
            # whole, exactly as it would be before a real pass.
            sweep = self._sweep(chunker(), apply=False, keep=True, explain=True)
            check_deletions(sweep.deletions, len(state), self.options)
            return sweep.report(self.account.name, mode, dry_run=True)
        chunks = chunker()
        spill: Spill | None = None
        try:
            if too_many_deletions(chunks.possible_deletions(), len(state), self.options):
                # The listing alone cannot rule out a mass deletion: plan the whole pass
                # once without applying anything, to count its deletions. What it fetches
                # is kept in a temporary file, so the pass that applies costs no request
                # more than before and the resources are still not all held in memory.
                spill = Spill()
                counted = self._sweep(chunks, apply=False, keep=False, record=spill)
                check_deletions(counted.deletions, len(state), self.options)
                del counted
                chunks = chunker()
            sweep = self._sweep(chunks, apply=True, keep=True, replay=spill, progress=progress)
        finally:
            if spill is not None:
                spill.close()
        report = sweep.report(self.account.name, mode, dry_run=False)
        wrote = any(key.startswith("server ") for key in report.applied.done)
        listing.token = lister.token_after_writes(listing, wrote=wrote)
        self._finish(listing, sweep.failed, sweep.fetched, report, revision)
        return report

    def _sweep(
        self,
        chunks: Chunker,
        *,
        apply: bool,
        keep: bool,
        record: Spill | None = None,
        replay: Spill | None = None,
        progress: Progress | None = None,
        explain: bool = False,
    ) -> _Sweep:
        """Plan the pass chunk by chunk and, with ``apply``, carry out each chunk's plan.

        Only one chunk's documents, fetched resources and actions are held at a time.
        ``record`` keeps the fetched resources for a second sweep, which ``replay``s them
        instead of fetching again. Applying stops at the first chunk a shutdown
        (``should_stop``) cut short, and before fetching the next one when asked to stop.
        ``explain`` (dry runs) adds each action's title and changed parts to the report.
        """
        out = _Sweep()
        by_href = chunks.by_href
        agent = self.hooks.schedule_agent if apply else None
        done = 0
        planned = 0

        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                # The total is what was planned so far plus what is left to plan (one
                # action per item, refined chunk by chunk): exact for a push or a pull.
                progress(done, planned + chunks.left())

        def decide(
            ids: list[str],
            docs: dict[str, ServerDoc],
            failed: dict[str, str],
            synced_docs: dict[str, FollowUp],
        ) -> bool:
            """Plan (and apply) one chunk; False when the pass has to stop."""
            nonlocal planned
            the_plan = plan_chunk(
                chunks,
                self.inputs,
                self.options,
                ids,
                docs,
                failed,
                synced_docs,
                self.one_way.apply,
            )
            planned += len(the_plan.actions)
            out.deletions += the_plan.deletions()
            if keep:
                # A dry run (``explain``) reports what is skipped and noticed too.
                out.planned.extend(
                    _explain(self.inputs, the_plan)
                    if explain
                    else (Planned.of(action) for action in the_plan.actions)
                )
                out.skipped.extend(the_plan.skipped)
                out.notices.extend(the_plan.notices)
                for item, text in the_plan.notices:
                    log.warning("%s: %s: %s", self.account.name, item, text)
                out.unplanned.update(the_plan.failed)
            if not apply or not the_plan.actions:
                return True
            applier = Applier(
                self.account.name,
                self.db,
                self.calendar,
                policy=self.options.policy.value,
                replan=lambda action: self.fetcher.replan(
                    action, self.inputs, self.options, self.one_way.apply
                ),
                clock=self.clock,
                should_stop=self.should_stop,
            )
            if agent is not None:
                applier.schedule_agent = agent
            _add_up(out.applied, bulk.run(applier, the_plan, progress=step))
            return not out.applied.stopped

        for index, hrefs in enumerate(chunks.slices()):
            if apply and out.stop_requested(self.should_stop):
                return out
            results = replay.take(index) if replay is not None else self.fetcher.download(hrefs)
            if record is not None:
                record.put(results)
            synced_docs = self.inputs.synced_documents(
                {
                    by_href[r.href].followup_id
                    for r in results
                    if isinstance(r, Resource) and r.href in by_href
                }
            )
            docs, failed = self.fetcher.read_all(
                results, by_href, synced_docs, report=record is None
            )
            del results
            out.fetched.update(docs)
            out.failed.update(failed)
            if not decide(chunks.claim(docs, failed), docs, failed, synced_docs):
                return out
        for ids in chunks.rest():
            if apply and out.stop_requested(self.should_stop):
                return out
            if not decide(ids, {}, {}, {}):
                return out
        return out

    def _finish(
        self,
        listing: Listing,
        failed: dict[str, str],
        fetched: set[str],
        report: PassReport,
        revision: int | None,
        quiet: bool = False,
    ) -> None:
        """Record the pass; ``quiet``: the idle shortcut, nothing to clear (``_crm_unchanged``)."""
        now = utcnow()
        account = self.account.name
        stopped = report.stopped
        idle = _found_nothing_to_do(report, failed, listing)
        # Cut short: keep the old token, so changes not applied yet are listed again next time.
        keeps_token = listing.token is not None and not stopped
        with self.db.sessions.begin() as session:
            if not stopped and not quiet:
                left = intents.drop_unlanded_intents(
                    session, account, before=self._started, failed=failed, fetched=fetched
                )
                idle = idle and left == 0  # a pass that leaves an intent vouches for nothing
            repo.record_pass_end(
                session,
                account,
                crm_revision_seen=revision if idle else None,
                crm_scope_seen=_scope(self.account, self.options) if idle else None,
                sync_token=listing.token if keeps_token else None,
                last_modified_seen=listing.last_modified_to_keep() if keeps_token else None,
                server_kind=self.calendar.capabilities.kind,
                now=now,
                listed_everything=listing.complete and not stopped,
                succeeded=report.ok and not stopped,
                last_result=_last_result(report),
            )
            if not quiet:
                self.fetcher.remember_unreadable(session, listing, fetched, failed, now)


__all__ = [
    "CHUNK_SIZE",
    "PassHooks",
    "PassReport",
    "Progress",
    "ScheduleAgent",
    "SyncPass",
    "id_for_uid",
]
