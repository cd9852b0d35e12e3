"""One sync pass for one account: list, fetch, plan, apply, remember.

The steps, and the requests each costs on a server with sync tokens:

1. **List** what changed since the stored token: one REPORT sync-collection. Without a
   token, with an invalid one, or on ``--full``, the whole calendar is listed instead
   (href + ETag only). A listing that fails ends the pass before anything is planned, so
   a failed listing can never look like "everything was deleted".
2. **Fetch** the resources whose ETag differs from the state, plus the ones that failed
   last time, with calendar-multiget in batches, and read each with the mapper. An item
   that cannot be read is reported by href, remembered in ``pending_hrefs`` and left
   alone; it is retried next pass even though the token has moved on.
3. **Plan** with ``sync.engine.plan`` — pure, so ``--dry-run`` stops here and prints it.
4. **Apply** action by action (``sync.engine.apply``), then store the new token.

An idle pass is therefore one request; a pass with changes is one REPORT, one multiget
per ``batch_size`` changed items, and one write per changed follow-up.

Steps 2 to 4 run in chunks of ``chunk_size`` (``CHUNK_SIZE``), so that a pass never holds
every series at once: what the whole pass keeps is one small record per item (state
entry, CRM hash, listed ETag). ``sync.engine.plan.Chunker`` cuts the pass: first the fetched
hrefs, a slice at a time (whole multiget batches: the same requests), each planned with
the follow-ups its resources belong to (by href, or by UID for a resource nobody has
recorded); then the follow-ups with nothing fetched (CRM edits, creates, deletions), in
sorted chunks. Each chunk's documents are loaded from the database when it is planned
and released when it has been applied. The safety rails still judge the whole pass
before its first write: the empty-side check runs on the listing and the CRM entries;
the deletion limit on a bound from the same data, and where that bound cannot rule out
a refusal, on the exact count of a first planning sweep that applies nothing (what it
fetches waits in a temporary file for the sweep that applies, so no request is made
twice). The report lists every planned action as ``Planned`` (no documents), and the
progress callback counts (done, total) over the whole pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mappings.documents import load_followup
from mappings.equivalence import differences
from mappings.errors import MappingError
from mappings.from_ical import parse_components
from mappings.model import FollowUp, id_for_uid
from mappings.resource import read
from sync.config import Account
from sync.engine import unreadable as unreadable_items
from sync.engine.apply import Applier, ApplyReport, fetch_one
from sync.engine.direction import OneWay
from sync.engine.plan import (
    Action,
    Chunker,
    CreateFromServer,
    CreateOnServer,
    CrmView,
    Merge,
    Plan,
    Planned,
    PlanOptions,
    PlanSummary,
    SaveFromServer,
    ServerDoc,
    ServerView,
    StateEntry,
    UpdateOnServer,
    WriteIntent,
    check_deletions,
    check_sides_not_empty,
    plan,
    plan_items,
    too_many_deletions,
)
from sync.errors import (
    InvalidSyncToken,
    NotFound,
    StoreError,
    SyncCollectionUnsupported,
    TransportError,
)
from sync.invitations.record import record_after_pass
from sync.invitations.scheduling import schedule_agent_for
from sync.state import followups as crm_store
from sync.state.db import (
    CollectionState,
    Database,
    FollowUpRow,
    PendingHref,
    PendingWrite,
    SyncItem,
    as_utc,
    revision_of,
    utcnow,
)
from sync.state.followups import CrmEntry
from sync.stores.base import CalendarStore, Delta, FetchError, LastModified, Resource
from sync.stores.connect import open_calendar

log = logging.getLogger(__name__)

#: A seconds-precision token (SOGo) at most this much older than our last pass is ours.
_RECENT_TOKEN = dt.timedelta(minutes=2)

#: Follow-ups (or fetched resources) planned and applied together. A pass holds the
#: documents, fetched resources and actions of one chunk at a time, so its memory does
#: not grow with the calendar; only small per-item records (hash, href, ETag) are kept
#: for the whole pass.
CHUNK_SIZE = 500

#: Rows read from the database per round trip when a query covers every item.
_ROWS = 500

#: Called with (done, total) while the plan is applied; the CLI draws a progress bar.
Progress = Callable[[int, int], None]


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


#: How much later than a getlastmodified value it must have been read to be kept: the value
#: has whole seconds, and a change made in its own second would not move it.
_LAST_MODIFIED_MARGIN = dt.timedelta(seconds=2)


def _trusted(seen: LastModified | None) -> dt.datetime | None:
    """``seen``'s value if a later change is bound to move it, else None (list next time)."""
    if seen is None or seen.server_time - seen.value < _LAST_MODIFIED_MARGIN:
        return None
    return seen.value


@dataclass
class _Listing:
    complete: bool
    etags: dict[str, str]
    deleted: frozenset[str]
    token: str | None
    #: The collection's getlastmodified read before the listing (see _server_unchanged).
    last_modified: LastModified | None = None

    def is_empty_delta(self) -> bool:
        """The server says nothing changed since our token (not a full listing)."""
        return not self.complete and not self.etags and not self.deleted


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


class _Spill:
    """Fetched resources kept in an anonymous temporary file, slice by slice.

    Used when a pass is planned twice (a possible mass deletion is counted before the
    first write): the second sweep reads what the first fetched, without a request and
    without holding every resource in memory. The file is private to this process
    (mode 0600, unlinked at once) and gone when closed.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - open across sweeps; close()
        self._slices: list[list[tuple[str, str, int, int] | FetchError]] = []

    def put(self, results: Sequence[Resource | FetchError]) -> None:
        entries: list[tuple[str, str, int, int] | FetchError] = []
        for result in results:
            if isinstance(result, FetchError):
                entries.append(result)
                continue
            offset = self._file.seek(0, 2)
            self._file.write(result.data)
            entries.append((result.href, result.etag, offset, len(result.data)))
        self._slices.append(entries)

    def take(self, index: int) -> list[Resource | FetchError]:
        entries, self._slices[index] = self._slices[index], []
        results: list[Resource | FetchError] = []
        for entry in entries:
            if isinstance(entry, FetchError):
                results.append(entry)
                continue
            href, etag, offset, length = entry
            self._file.seek(offset)
            results.append(Resource(href, etag, self._file.read(length)))
        return results

    def close(self) -> None:
        self._file.close()


def _add_up(total: ApplyReport, part: ApplyReport) -> None:
    """Add one chunk's ApplyReport to the pass's."""
    for key, count in part.done.items():
        total.done[key] = total.done.get(key, 0) + count
    total.conflicts += part.conflicts
    total.errors.extend(part.errors)
    total.notes.extend(part.notes)
    total.stopped = total.stopped or part.stopped


class SyncPass:
    def __init__(
        self,
        account: Account,
        db: Database,
        *,
        calendar: CalendarStore | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        should_stop: Callable[[], bool] | None = None,
        chunk_size: int = CHUNK_SIZE,
        dry_run: bool = False,
    ) -> None:
        """``dry_run``: connect without creating a missing calendar (see ``run``)."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.account = account
        self.db = db
        self.clock = clock
        self.should_stop = should_stop
        self.chunk_size = chunk_size
        self._calendar = calendar if calendar is not None else self._connect(create=not dry_run)
        self._started = utcnow()
        #: Unreadable items of the last passes (``sync.engine.unreadable``), read at the pass start.
        self._pending: dict[str, PendingHref] = {}
        #: Of those, the ones whose back-off is not over: not fetched, reported as unreadable.
        self._backed_off: dict[str, str] = {}
        self.options = PlanOptions(
            policy=account.conflict_policy,
            on_server_delete=account.on_server_delete,
            import_new=account.import_new,
            max_delete_percent=account.max_delete_percent,
        )
        #: One-way mode (``sync.engine.direction``): applied to every plan this pass makes.
        self.one_way = OneWay(account, db)

    # --- connecting ------------------------------------------------------------------------

    @property
    def calendar(self) -> CalendarStore:
        if self._calendar is None:
            raise StoreError(
                f"{self.account.name}: calendar {self.account.calendar!r} does not exist yet; "
                "only a dry run plans without it"
            )
        return self._calendar

    @property
    def calendar_exists(self) -> bool:
        return self._calendar is not None

    def close(self) -> None:
        if self._calendar is not None:
            self._calendar.close()

    def _connect(self, *, create: bool) -> CalendarStore | None:
        """The account's calendar; None when it is missing and ``create`` is False."""
        account = self.account
        with self.db.session() as session:
            known = session.get(CollectionState, account.name)
        known_url = known.calendar_url if known else None
        try:
            calendar = open_calendar(account, known_url=known_url, create=create)
        except NotFound:
            if create:
                raise
            return None
        if account.calendar_url or known_url:
            return calendar  # no discovery ran: nothing new to remember
        with self.db.sessions.begin() as session:
            state = session.get(CollectionState, account.name)
            if state is None:
                session.add(CollectionState(account=account.name, calendar_url=calendar.url))
            else:
                state.calendar_url = calendar.url
        return calendar

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
        if dry_run and not self.calendar_exists:
            return self._plan_for_new_calendar()
        before = self.calendar.stats.copy()
        report = self._pass(dry_run=dry_run, full=full, progress=progress)
        report.requests = self.calendar.stats.since(before).requests
        # Invitations fall due only through a change this pass applied; a full pass also
        # re-checks, which heals a recording that failed on an earlier pass. (Called once
        # the pass's own data is released: it reads every synced follow-up itself.)
        if not dry_run and (report.applied.done or report.mode == "full"):
            record_after_pass(self.account, self.db, self.calendar)
        return report

    def _plan_for_new_calendar(self) -> PassReport:
        """A dry run's plan when the calendar does not exist yet: against an empty one.

        Everything that belongs in the calendar would be created there; a follow-up synced
        before (its calendar since deleted) hits the same empty-side safety rail as a real
        pass would.
        """
        state = self._state_entries()
        crm = self._crm_view(state)
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
        collection, revision, pending = self._collection()
        loaded: list[dict[str, StateEntry]] = []

        def recorded() -> dict[str, StateEntry]:
            if not loaded:
                loaded.append(self._state_entries())
            return loaded[0]

        seen = self._last_modified()
        if not full and self._server_unchanged(collection, seen):
            listing = _Listing(False, {}, frozenset(), collection.sync_token)
        else:
            token = collection.sync_token if not full else None
            try:
                listing = self._list(token, recorded, collection.last_run_at)
            except SyncCollectionUnsupported:
                # No server_kind, or a wrong one: the server said so, and the calendar's
                # capabilities now say so too, so the second try lists ETags.
                log.info(
                    "%s: the server has no sync-collection; comparing the full href/ETag listing",
                    self.account.name,
                )
                listing = self._list(token, recorded, collection.last_run_at)
        listing.last_modified = seen
        if (
            not full
            and listing.is_empty_delta()
            and not pending
            and self._crm_unchanged(collection, revision)
        ):
            # Nothing changed on either side since a pass that found nothing to do: this
            # one would find nothing either, without reading a single row.
            report = _Sweep().report(self.account.name, "incremental", dry_run=dry_run)
            if not dry_run:
                self._finish(listing, {}, set(), report, revision)
            return report
        state = recorded()
        by_href = {entry.href: entry for entry in state.values()}
        now = utcnow()
        self._pending = pending
        self._backed_off = {
            href: f"still unreadable after {row.attempts} tries ({row.reason}); next try after "
            f"{row.retry_at:%Y-%m-%d %H:%M} UTC"
            for href, row in pending.items()
            if row.retry_at is not None
            and unreadable_items.backed_off(row.retry_at, row.etag, listing.etags.get(href), now)
        }
        wanted = [
            href
            for href, etag in sorted(listing.etags.items())
            if href not in by_href or not etag or etag != by_href[href].etag or href in pending
        ]
        # A pending item missing from the listing: one we could not *read* is fetched by
        # href all the same, even when the listing calls it deleted, because a server hides
        # what it cannot load itself (``sync.engine.unreadable``; its back-off keeps that cheap).
        # One we could not *fetch* is gone if a complete listing lacks it; an incremental
        # listing leaves out what did not change, so there it is retried.
        wanted += [
            href
            for href, row in sorted(pending.items())
            if href not in listing.etags
            and (
                unreadable_items.was_unreadable(row.reason)
                or (href not in listing.deleted and not listing.complete)
            )
        ]
        crm = self._crm_view(state)
        server = ServerView(listing.complete, listing.etags, listing.deleted)
        # The safety rails are decided over the whole pass before anything is fetched for
        # planning or written: an empty side now, too many deletions below.
        check_sides_not_empty(crm, server, state, self.options)

        def chunker() -> Chunker:
            return Chunker(
                crm,
                server,
                state,
                wanted,
                size=self.chunk_size,
                batch=self.account.batch_size,
                by_href=by_href,
            )

        mode = "full" if listing.complete else "incremental"
        if dry_run:
            # Nothing is applied, so one sweep plans everything; the plan is refused as a
            # whole, exactly as it would be before a real pass.
            sweep = self._sweep(chunker(), apply=False, keep=True, explain=True)
            check_deletions(sweep.deletions, len(state), self.options)
            return sweep.report(self.account.name, mode, dry_run=True)
        chunks = chunker()
        spill: _Spill | None = None
        try:
            if too_many_deletions(chunks.possible_deletions(), len(state), self.options):
                # The listing alone cannot rule out a mass deletion: plan the whole pass
                # once without applying anything, to count its deletions. What it fetches
                # is kept in a temporary file, so the pass that applies costs no request
                # more than before and the resources are still not all held in memory.
                spill = _Spill()
                counted = self._sweep(chunks, apply=False, keep=False, record=spill)
                check_deletions(counted.deletions, len(state), self.options)
                del counted
                chunks = chunker()
            sweep = self._sweep(chunks, apply=True, keep=True, replay=spill, progress=progress)
        finally:
            if spill is not None:
                spill.close()
        report = sweep.report(self.account.name, mode, dry_run=False)
        listing.token = self._token_after_writes(listing, report)
        self._finish(listing, sweep.failed, sweep.fetched, report, revision)
        return report

    def _sweep(
        self,
        chunks: Chunker,
        *,
        apply: bool,
        keep: bool,
        record: _Spill | None = None,
        replay: _Spill | None = None,
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
        agent = schedule_agent_for(self.account, self.calendar) if apply else None
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
            the_plan = self._plan_chunk(chunks, ids, docs, failed, synced_docs)
            planned += len(the_plan.actions)
            out.deletions += the_plan.deletions()
            if keep:
                # A dry run (``explain``) reports what is skipped and noticed too.
                out.planned.extend(
                    self._explain(the_plan)
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
                replan=self._replan,
                clock=self.clock,
                should_stop=self.should_stop,
            )
            if agent is not None:
                applier.schedule_agent = agent
            _add_up(out.applied, applier.run(the_plan, progress=step))
            return not out.applied.stopped

        for index, hrefs in enumerate(chunks.slices()):
            if apply and self._stop_requested(out):
                return out
            results = replay.take(index) if replay is not None else self._download(hrefs)
            if record is not None:
                record.put(results)
            synced_docs = self._synced_documents(
                {
                    by_href[r.href].followup_id
                    for r in results
                    if isinstance(r, Resource) and r.href in by_href
                }
            )
            docs, failed = self._read_all(results, by_href, synced_docs, report=record is None)
            del results
            out.fetched.update(docs)
            out.failed.update(failed)
            if not decide(chunks.claim(docs, failed), docs, failed, synced_docs):
                return out
        for ids in chunks.rest():
            if apply and self._stop_requested(out):
                return out
            if not decide(ids, {}, {}, {}):
                return out
        return out

    def _explain(self, the_plan: Plan) -> list[Planned]:
        """Each action with its follow-up's title and the parts it changes, for a dry run.

        Compared with what the written side holds now: the agreed document for a write
        to the calendar (the calendar has not changed it, or the plan would merge), the
        CRM's document for a write to the CRM, the agreed one for a merge.
        """
        ids = {action.followup_id for action in the_plan.actions}
        synced = self._synced_documents(ids)
        with self.db.session() as session:
            current = crm_store.load_documents(session, sorted(ids))
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

    def _stop_requested(self, out: _Sweep) -> bool:
        if self.should_stop is not None and self.should_stop():
            out.applied.stopped = True
            log.info("stopping: the rest of the pass runs next pass")
            return True
        return False

    def _plan_chunk(
        self,
        chunks: Chunker,
        ids: list[str],
        docs: dict[str, ServerDoc],
        failed: dict[str, str],
        synced_docs: dict[str, FollowUp],
    ) -> Plan:
        """``plan_items`` for one chunk, with its documents loaded from the database."""
        state = chunks.state
        entries = chunks.crm.entries
        chunk_state: dict[str, StateEntry] = {}
        for followup_id in ids:
            known = state.get(followup_id)
            if known is not None:
                base = synced_docs.get(followup_id)
                chunk_state[followup_id] = (
                    known if base is None else replace(known, synced_document=base)
                )
        needed = [
            followup_id
            for followup_id in ids
            if (entry := entries.get(followup_id)) is not None
            and not entry.deleted
            and (followup_id not in state or state[followup_id].synced_hash != entry.content_hash)
        ]
        unreadable: dict[str, str] = {}
        with self.db.session() as session:
            documents = crm_store.load_documents(session, needed, errors=unreadable)
            intents = self._intents(session, ids)
        ids = [followup_id for followup_id in ids if followup_id not in unreadable]
        missing = {
            followup_id
            for followup_id in needed
            if followup_id not in documents and followup_id not in unreadable
        }
        if missing:
            # Purged since the pass listed the CRM (another account's pass finished its
            # delete): nothing to decide now; the next pass sees what is left.
            log.info(
                "%s: %d follow-up(s) vanished during the pass", self.account.name, len(missing)
            )
            ids = [followup_id for followup_id in ids if followup_id not in missing]
        crm = CrmView(entries, documents, chunks.crm.uids)
        server = ServerView(
            chunks.server.complete, chunks.server.etags, chunks.server.deleted, docs, failed
        )
        decided = plan_items(
            crm,
            server,
            chunk_state,
            self.options,
            ids=ids,
            synced_hrefs=chunks.by_href,
            pending=intents,
        )
        decided = self.one_way.apply(decided, docs)
        return replace(decided, failed=decided.failed + tuple(sorted(unreadable.items())))

    def _intents(self, session: Session, ids: Sequence[str]) -> dict[str, WriteIntent]:
        """The write intents a pass that died left for some follow-ups (``sync.engine.plan``)."""
        found: dict[str, WriteIntent] = {}
        wanted = sorted(ids)
        for start in range(0, len(wanted), _ROWS):
            rows = session.scalars(
                select(PendingWrite).where(
                    PendingWrite.account == self.account.name,
                    PendingWrite.followup_id.in_(wanted[start : start + _ROWS]),
                )
            )
            for row in rows:
                document = load_followup(row.document)
                found[row.followup_id] = WriteIntent(
                    row.followup_id,
                    row.href,
                    row.if_match,
                    document,
                    crm_store.content_hash(document),
                )
        return found

    def _collection(self) -> tuple[CollectionState, int | None, dict[str, PendingHref]]:
        """The collection's record, the change counter and the items waiting for a retry.

        Read in one session: an idle pass should cost the database as few round trips
        as it costs the server.
        """
        with self.db.sessions.begin() as session:
            state = session.get(CollectionState, self.account.name)
            if state is None:
                state = CollectionState(account=self.account.name, calendar_url=self.calendar.url)
                session.add(state)
            revision = revision_of(session)
            pending = {
                row.href: row
                for row in session.scalars(
                    select(PendingHref).where(PendingHref.account == self.account.name)
                )
            }
            return state, revision, pending

    def _scope(self) -> str:
        """A digest of everything besides the rows that decides what a pass plans."""
        settings = self.account.model_dump_json() + repr(self.options)
        return hashlib.sha256(settings.encode()).hexdigest()

    def _crm_unchanged(self, collection: CollectionState, revision: int | None) -> bool:
        """True when no follow-up or sync record was written since a pass found nothing to do.

        The change counter (``sync.state.db.ChangeCounter``) moves with every committed
        write to the follow-ups, the sync records or the write intents, whichever process
        or account made it; the account's settings must be the same too.
        """
        if revision is None or collection.crm_revision_seen != revision:
            return False
        return collection.crm_scope_seen == self._scope()

    def _last_modified(self) -> LastModified | None:
        """The collection's getlastmodified, on servers where it covers every member."""
        if not self.calendar.capabilities.lastmodified_covers_members:
            return None
        try:
            return self.calendar.last_modified()
        except StoreError as exc:  # the listing that follows decides whether the pass goes on
            log.info(
                "%s: getlastmodified unreadable (%s); asking with the token", self.account.name, exc
            )
            return None

    def _server_unchanged(self, collection: CollectionState, seen: LastModified | None) -> bool:
        """True when the server proves nothing changed since our token, without listing.

        Quirk workaround (capabilities.lastmodified_covers_members, Radicale): its
        sync-collection REPORT reads every item even to say "nothing changed", while the
        collection's getlastmodified is the newest mtime of its folder and files. Any
        write or deletion after the last token moves it, provided the value kept with the
        token was read in a later second than itself (``_trusted``): a change in that
        same second would leave the whole-second value as it was.
        """
        kept = collection.last_modified_seen
        if seen is None or kept is None or not collection.sync_token:
            return False
        if seen.value != as_utc(kept):
            return False
        log.debug(
            "%s: getlastmodified unchanged since the token; nothing to list", self.account.name
        )
        return True

    def _list(
        self,
        token: str | None,
        state: Callable[[], dict[str, StateEntry]],
        last_run: dt.datetime | None,
    ) -> _Listing:
        caps = self.calendar.capabilities
        if caps.sync_token:
            if token:
                try:
                    delta = self.calendar.changes_since(token)
                except InvalidSyncToken:
                    log.info(
                        "%s: the server no longer knows our sync token; listing everything",
                        self.account.name,
                    )
                else:
                    if caps.sync_token_trustworthy or not self._may_be_full_listing(
                        delta, state, token, last_run
                    ):
                        return _Listing(False, delta.changed, delta.deleted, delta.token)
                    # Quirk workaround (capabilities.sync_token_trustworthy False: DAViCal,
                    # SOGo, generic). Such a server answers a stale or unknown token with a
                    # plain 207 listing every resource; read as a delta, whatever was deleted
                    # meanwhile would simply be absent and never noticed. The answer re-lists
                    # resources we hold unchanged, so it may be that listing: compare the full
                    # href/ETag listing instead (one PROPFIND Depth 1), where an href we hold
                    # that is missing *is* a deletion. An idle pass (empty delta) costs nothing
                    # extra; what this cannot see is healed by the daemon's full_every passes.
                    log.info(
                        "%s: the delta re-lists unchanged items and this server's tokens are not "
                        "trusted; comparing the full href/ETag listing",
                        self.account.name,
                    )
                    return _Listing(True, self.calendar.list_etags(), frozenset(), delta.token)
            delta = self.calendar.changes_since(None)
            return _Listing(True, delta.changed, frozenset(), delta.token)
        # No sync-collection (SabreDAV 1.8): every pass compares the full href/ETag listing.
        return _Listing(True, self.calendar.list_etags(), frozenset(), None)

    def _may_be_full_listing(
        self,
        delta: Delta,
        state: Callable[[], dict[str, StateEntry]],
        token: str,
        last_run: dt.datetime | None,
    ) -> bool:
        """True when a delta re-lists items exactly as we recorded them (href and ETag).

        A server with trustworthy tokens never does that (our own writes are recorded
        before the token moves on); a plain full listing given for a stale token does,
        unless every remaining item changed. Genuine deltas of DAViCal re-list a few items
        at token boundaries, which then costs one PROPFIND more, never a wrong result.

        Quirk workaround (capabilities.sync_token_seconds, SOGo): the token is a unix second;
        a delta lists what changed after it, and while the newest change is in the current
        second the answer's token is the second before, so whatever we saw or wrote in that
        second comes back once more next pass. Those items are not evidence of a
        full listing: tolerated when we recorded them at or after the token's second, and
        only if the token itself is recent (from our last pass; an old or unparsable token
        is exactly the stale case, where SOGo's answer cannot be trusted either).
        """
        if not delta.changed:
            return False
        recorded = {entry.href: entry for entry in state().values()}
        relisted = [
            href
            for href, etag in delta.changed.items()
            if etag and href in recorded and recorded[href].etag == etag
        ]
        if not relisted or not self.calendar.capabilities.sync_token_seconds:
            return bool(relisted)
        if not token.isdigit() or last_run is None:
            return True
        second = dt.datetime.fromtimestamp(int(token), dt.UTC)
        if second < as_utc(last_run) - _RECENT_TOKEN:
            return True
        with self.db.session() as session:
            rows = session.execute(
                select(SyncItem.href, SyncItem.updated_at).where(
                    SyncItem.account == self.account.name, SyncItem.href.in_(relisted)
                )
            )
            when = {row.href: row.updated_at for row in rows}
        # One second of slack: our clock and the server's are read at different moments.
        return any(
            href not in when or as_utc(when[href]) < second - dt.timedelta(seconds=1)
            for href in relisted
        )

    def _token_after_writes(self, listing: _Listing, report: PassReport) -> str | None:
        """A token that already covers our own writes of this pass, when that is safe.

        RFC 6578 lets a server leave out a resource created *and* deleted since a token
        (Xandikos does): with the listing's token kept, a resource we created this pass
        and a client deleted afterwards would never show up as deleted. So after writing,
        ask once more; take the newer token only if every change it reports is our own
        write (its ETag is the one recorded), else keep the old one and see them next pass.

        Quirk workaround (capabilities.sync_token_seconds, SOGo): a client's resource this
        pass listed and deliberately left alone (import_new off) would be listed again as
        long as the token stays in its second, and look new then. So when the pass skipped
        such items, wait until the token's second is over (at most ~1 s) and ask once more,
        accepting items seen unchanged in this pass as well as our own writes.
        """
        caps = self.calendar.capabilities
        if listing.token is None or not caps.sync_token:
            return listing.token
        wrote = any(key.startswith("server ") for key in report.applied.done)
        if not wrote and not (caps.sync_token_seconds and listing.etags):
            return listing.token  # an idle pass reads no state here
        # The state is read for the hrefs in question only, a batch at a time: after a
        # large push the delta lists every resource, and so would a copy of the state.
        left_alone = bool(caps.sync_token_seconds) and any(
            len(recorded) < len(batch) for batch, recorded in self._recorded_etags(listing.etags)
        )
        if not wrote and not left_alone:
            return listing.token
        if left_alone and listing.token.isdigit():
            # While the newest change is in the current second SOGo answers the previous
            # second as token, so the same items come back until that second is over.
            now = time.time()
            if int(listing.token) >= int(now) - 2:
                time.sleep(int(now) + 1.02 - now)
        try:
            delta = self.calendar.changes_since(listing.token)
        except StoreError as exc:
            log.info("%s: no fresh sync token after writing: %s", self.account.name, exc)
            return listing.token
        seen = listing.etags if left_alone else {}
        ours = all(
            etag and (recorded.get(href) == etag or seen.get(href) == etag)
            for batch, recorded in self._recorded_etags(delta.changed)
            for href, etag in ((href, delta.changed[href]) for href in batch)
        )
        if ours and not any(recorded for _, recorded in self._recorded_etags(delta.deleted)):
            return delta.token
        return listing.token

    def _download(self, hrefs: Sequence[str]) -> list[Resource | FetchError]:
        """One slice of the pass's fetch list, with calendar-multiget in ``batch_size`` batches."""
        results: list[Resource | FetchError] = [
            FetchError(href, 0, self._backed_off[href])
            for href in hrefs
            if href in self._backed_off
        ]
        hrefs = [href for href in hrefs if href not in self._backed_off]
        size = self.account.batch_size
        for start in range(0, len(hrefs), size):
            batch = list(hrefs[start : start + size])
            try:
                results.extend(list(self.calendar.get_multi(batch, batch_size=size)))
            except TransportError as exc:
                # One unreadable or oversized answer must not fail the pass or the whole
                # batch: fetch its items one by one so that only the culprit is reported.
                results.extend(
                    self._fetch_singly(batch)
                    if len(batch) > 1
                    else [_fetch_error(self.calendar, batch[0], exc)]
                )
        return results

    def _read_all(
        self,
        results: list[Resource | FetchError],
        by_href: Mapping[str, StateEntry],
        known_docs: Mapping[str, FollowUp],
        *,
        report: bool = True,
    ) -> tuple[dict[str, ServerDoc], dict[str, str]]:
        """Read fetched resources with the mapper; what cannot be read is reported by href."""
        docs: dict[str, ServerDoc] = {}
        failed: dict[str, str] = {}
        for result in results:
            if isinstance(result, FetchError):
                failed[result.href] = self._fetch_failure(result)
                continue
            known_entry = by_href.get(result.href)
            known = known_docs.get(known_entry.followup_id) if known_entry else None
            try:
                docs[result.href] = self._read(result, known)
            except MappingError as exc:
                failed[result.href] = str(exc)
        if report:
            for href, reason in failed.items():
                log.warning("%s: %s: %s", self.account.name, href, reason)
        return docs, failed

    def _fetch_failure(self, error: FetchError) -> str:
        if error.href in self._backed_off:
            return error.reason
        earlier = self._pending.get(error.href)
        if error.status == 404 and earlier is not None:
            return unreadable_items.vanished_reason(earlier.reason)
        return f"{unreadable_items.FETCH_FAILURE} ({error.status or 'missing'}): {error.reason}"

    def _fetch_singly(self, hrefs: list[str]) -> list[Resource | FetchError]:
        results: list[Resource | FetchError] = []
        for href in hrefs:
            try:
                results.extend(self.calendar.get_multi([href], batch_size=1))
            except TransportError as exc:
                results.append(_fetch_error(self.calendar, href, exc))
        return results

    def _read(self, resource: Resource, known: FollowUp | None) -> ServerDoc:
        parsed = read(resource.data)
        warnings = list(parsed.warnings)
        followups = parse_components(
            parsed.components,
            default_timezone=self.account.default_timezone,
            known=known,
            warnings=warnings,
        )
        for warning in warnings:
            log.warning("%s: %s: %s", self.account.name, resource.href, warning)
        if known is not None:
            followups[0] = followups[0].model_copy(
                update={"id": known.id, "uid": known.uid, "owner": known.owner}
            )
            # Tails a THISANDFUTURE override split off belong to the same CRM associate.
            followups[1:] = [f.model_copy(update={"owner": known.owner}) for f in followups[1:]]
        return ServerDoc(
            resource.href,
            resource.etag,
            parsed.uid,
            tuple(followups),
            resource.data,
            parsed.modified,
        )

    # --- state -------------------------------------------------------------------------------

    def _state_entries(self) -> dict[str, StateEntry]:
        """Every recorded follow-up of the account, without the documents (read per chunk)."""
        query = select(
            SyncItem.followup_id,
            SyncItem.uid,
            SyncItem.href,
            SyncItem.etag,
            SyncItem.synced_hash,
        ).where(SyncItem.account == self.account.name, SyncItem.detached.is_(False))
        with self.db.session() as session:
            return {
                row.followup_id: StateEntry(
                    row.followup_id, row.uid, row.href, row.etag, row.synced_hash, None
                )
                for row in session.execute(query.execution_options(yield_per=_ROWS))
            }

    def _state_entry(self, followup_id: str) -> StateEntry | None:
        with self.db.session() as session:
            row = session.execute(
                select(
                    SyncItem.followup_id,
                    SyncItem.uid,
                    SyncItem.href,
                    SyncItem.etag,
                    SyncItem.synced_hash,
                ).where(
                    SyncItem.account == self.account.name,
                    SyncItem.followup_id == followup_id,
                    SyncItem.detached.is_(False),
                )
            ).first()
        if row is None:
            return None
        return StateEntry(row.followup_id, row.uid, row.href, row.etag, row.synced_hash, None)

    def _recorded_etags(self, hrefs: Collection[str]) -> Iterator[tuple[list[str], dict[str, str]]]:
        """(batch of ``hrefs``, href -> recorded ETag of those in the state), batch by batch."""
        wanted = sorted(hrefs)
        with self.db.session() as session:
            for start in range(0, len(wanted), _ROWS):
                batch = wanted[start : start + _ROWS]
                rows = session.execute(
                    select(SyncItem.href, SyncItem.etag).where(
                        SyncItem.account == self.account.name,
                        SyncItem.detached.is_(False),
                        SyncItem.href.in_(batch),
                    )
                )
                yield batch, {row.href: row.etag for row in rows}

    def _synced_documents(self, ids: Collection[str]) -> dict[str, FollowUp]:
        """The agreed documents (merge bases) of some follow-ups: one chunk's at a time."""
        result: dict[str, FollowUp] = {}
        if not ids:
            return result
        wanted = sorted(ids)
        with self.db.session() as session:
            for start in range(0, len(wanted), _ROWS):
                for row in session.execute(
                    select(SyncItem.followup_id, SyncItem.synced_document).where(
                        SyncItem.account == self.account.name,
                        SyncItem.followup_id.in_(wanted[start : start + _ROWS]),
                    )
                ):
                    result[row.followup_id] = load_followup(row.synced_document)
        return result

    def _crm_view(self, state: Mapping[str, StateEntry]) -> CrmView:
        """Every follow-up that belongs in this calendar, by content hash: no documents.

        The documents of the follow-ups a chunk decides are loaded with that chunk.
        """
        account = self.account
        entries: dict[str, CrmEntry] = {}
        uids: dict[str, str] = {}
        with self.db.session() as session:
            detached = set(
                session.scalars(
                    select(SyncItem.followup_id).where(
                        SyncItem.account == account.name, SyncItem.detached.is_(True)
                    )
                )
            )
            rows = session.execute(
                select(
                    FollowUpRow.id,
                    FollowUpRow.uid,
                    FollowUpRow.kind,
                    FollowUpRow.owner,
                    FollowUpRow.content_hash,
                    FollowUpRow.deleted,
                    FollowUpRow.updated_at,
                    FollowUpRow.origin_account,
                ).execution_options(yield_per=_ROWS)
            )
            for row in rows:
                if row.id in detached:
                    continue
                belongs = (
                    row.id in state
                    or row.origin_account == account.name
                    or (
                        row.origin_account is None
                        and account.selects(followup_id=row.id, owner=row.owner, kind=row.kind)
                    )
                )
                if not belongs:
                    continue
                entries[row.id] = CrmEntry(
                    row.id, row.content_hash, row.deleted, as_utc(row.updated_at), row.owner
                )
                uids[row.uid] = row.id
        return CrmView(entries, {}, uids)

    def _finish(
        self,
        listing: _Listing,
        failed: dict[str, str],
        fetched: set[str],
        report: PassReport,
        revision: int | None,
    ) -> None:
        now = utcnow()
        with self.db.sessions.begin() as session:
            if not report.stopped:
                self._drop_unlanded_intents(session, failed, fetched)
            collection = session.get(CollectionState, self.account.name)
            assert collection is not None
            # Only a pass that found nothing at all to do vouches for the rows it read: one
            # that wrote moved the counter anyway, one that failed or skipped must retry.
            idle = (
                report.ok
                and not report.stopped
                and not report.plan.actions
                and not report.plan.skipped
                and not report.plan.notices
                and not failed
                and listing.token is not None
            )
            collection.crm_revision_seen = revision if idle else None
            collection.crm_scope_seen = self._scope() if idle else None
            # A pass cut short keeps the old token: the server changes it did not apply yet
            # must be listed again next time, not skipped over.
            if listing.token is not None and not report.stopped:
                collection.sync_token = listing.token
                collection.last_modified_seen = _trusted(listing.last_modified)
            else:
                collection.last_modified_seen = None
            collection.server_kind = self.calendar.capabilities.kind
            collection.last_run_at = now
            if listing.complete and not report.stopped:
                collection.last_full_at = now
            if report.ok and not report.stopped:
                collection.last_success_at = now
            if report.stopped:
                collection.last_result = "stopped (shutdown); the rest runs next pass"
            else:
                collection.last_result = (
                    "ok" if report.ok else f"{len(report.errors)} item(s) failed"
                )
            gone = (
                {
                    row.href
                    for row in session.scalars(
                        select(PendingHref).where(PendingHref.account == self.account.name)
                    )
                    if row.href not in listing.etags
                }
                if listing.complete
                else set()
            )
            session.execute(
                delete(PendingHref).where(
                    PendingHref.account == self.account.name,
                    PendingHref.href.in_(fetched | gone),
                )
            )
            for href, reason in failed.items():
                if href in self._backed_off:
                    continue  # not tried this pass
                row = session.get(PendingHref, (self.account.name, href))
                if row is None:
                    row = PendingHref(account=self.account.name, href=href, reason=reason)
                    row.attempts = 1
                    session.add(row)
                else:
                    row.attempts += 1
                    if not reason.startswith("vanished"):
                        row.reason = reason
                row.last_seen = now
                row.etag = listing.etags.get(href)
                row.retry_at = unreadable_items.retry_at(row.attempts, now)

    def _drop_unlanded_intents(
        self, session: Session, failed: Collection[str], fetched: Collection[str]
    ) -> None:
        """Forget intents from before this pass whose write is known never to have landed.

        A landed write moves its resource's ETag (or makes it exist), so a whole pass
        fetches it; an intent from an earlier pass whose resource this pass neither read
        nor failed to read was never carried out. Left in place (its follow-up had nothing
        to do: the CRM went back to the agreed version), it would be taken for a landed
        write the day a client edits the resource.
        """
        rows = session.execute(
            select(PendingWrite.followup_id, PendingWrite.href, PendingWrite.created_at).where(
                PendingWrite.account == self.account.name
            )
        ).all()
        stale = [
            row.followup_id
            for row in rows
            if as_utc(row.created_at) < self._started
            and row.href not in fetched
            and row.href not in failed
        ]
        if stale:
            session.execute(
                delete(PendingWrite).where(
                    PendingWrite.account == self.account.name,
                    PendingWrite.followup_id.in_(stale),
                )
            )

    # --- re-planning one item after a refused write ---------------------------------------------

    def _replan(self, action: Action) -> list[Action]:
        followup_id = action.followup_id
        known = self._state_entry(followup_id)
        href = getattr(action, "href", None) or (known.href if known else None)
        if href is None and isinstance(action, CreateOnServer):
            href = self.calendar.href_for_uid(action.uid)
        docs: dict[str, ServerDoc] = {}
        deleted: frozenset[str] = frozenset()
        current = fetch_one(self.calendar, href) if href else None
        if current is None and isinstance(action, CreateOnServer):
            found = self.calendar.find_by_uid(action.uid)
            if found is not None:
                href, current = found.href, (found.etag, found.data)
        known_doc = self._synced_documents({followup_id}).get(followup_id)
        if current is not None and href is not None:
            etag, data = current
            docs[href] = self._read(Resource(href, etag, data), known_doc)
        elif href is not None:
            deleted = frozenset({href})
        single_state = {}
        if known is not None:
            single_state[followup_id] = StateEntry(
                known.followup_id, known.uid, known.href, known.etag, known.synced_hash, known_doc
            )
        with self.db.session() as session:
            entries = crm_store.crm_entries(session, [followup_id])
            documents = crm_store.load_documents(
                session, [i for i, e in entries.items() if not e.deleted]
            )
            uid_rows = session.execute(
                select(FollowUpRow.uid, FollowUpRow.id).where(FollowUpRow.id == followup_id)
            )
            uids = {row.uid: row.id for row in uid_rows}
        crm = CrmView(entries, documents, uids)
        server = ServerView(False, {h: d.etag for h, d in docs.items()}, deleted, docs, {})
        options = replace(self.options, force_delete=True)
        replanned = self.one_way.apply(plan(crm, server, single_state, options), docs)
        return list(replanned.actions)


def _fetch_error(calendar: CalendarStore, href: str, exc: TransportError) -> FetchError:
    return FetchError(calendar.normalise_href(href), exc.status or 0, str(exc))


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
    together (``CHUNK_SIZE``).
    """
    sync_pass = SyncPass(
        account,
        db,
        calendar=calendar,
        should_stop=should_stop,
        chunk_size=chunk_size,
        dry_run=dry_run,
    )
    try:
        return sync_pass.run(
            dry_run=dry_run, full=full, force_delete=force_delete, progress=progress
        )
    finally:
        if calendar is None:
            sync_pass.close()


__all__ = ["CHUNK_SIZE", "PassReport", "Progress", "SyncPass", "id_for_uid", "run_pass"]
