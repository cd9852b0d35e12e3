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
3. **Plan** with ``sync.plan.plan`` — pure, so ``--dry-run`` stops here and prints it.
4. **Apply** action by action (``sync.apply``), then store the new token.

An idle pass is therefore one request; a pass with changes is one REPORT, one multiget
per ``batch_size`` changed items, and one write per changed follow-up.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from mappings.errors import MappingError
from mappings.from_ical import parse_components
from mappings.model import FollowUp, id_for_uid, load_followup
from mappings.resource import read
from sync import followups as crm_store
from sync import invitations
from sync.apply import Applier, ApplyReport, fetch_one
from sync.config import Account
from sync.dav import DavCalendar, Delta, FetchError, Resource
from sync.errors import InvalidSyncToken, StoreError, TransportError
from sync.followups import CrmEntry
from sync.plan import (
    Action,
    CreateOnServer,
    CrmView,
    Plan,
    PlanOptions,
    ServerDoc,
    ServerView,
    StateEntry,
    plan,
)
from sync.state import CollectionState, Database, FollowUpRow, PendingHref, SyncItem, as_utc, utcnow

log = logging.getLogger(__name__)

#: A seconds-precision token (SOGo) at most this much older than our last pass is ours.
_RECENT_TOKEN = dt.timedelta(minutes=2)

#: Called with (done, total) while the plan is applied; the CLI draws a progress bar.
Progress = Callable[[int, int], None]


@dataclass
class PassReport:
    account: str
    mode: str  # "incremental" or "full"
    dry_run: bool
    plan: Plan
    fetched: int = 0
    requests: int = 0
    applied: ApplyReport = field(default_factory=ApplyReport)
    read_errors: list[tuple[str, str]] = field(default_factory=list)

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


@dataclass
class _Listing:
    complete: bool
    etags: dict[str, str]
    deleted: frozenset[str]
    token: str | None


class SyncPass:
    def __init__(
        self,
        account: Account,
        db: Database,
        *,
        calendar: DavCalendar | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.account = account
        self.db = db
        self.clock = clock
        self.should_stop = should_stop
        self.calendar = calendar or self._connect()
        self.options = PlanOptions(
            policy=account.conflict_policy,
            on_server_delete=account.on_server_delete,
            import_new=account.import_new,
            max_delete_percent=account.max_delete_percent,
        )

    # --- connecting ------------------------------------------------------------------------

    def _connect(self) -> DavCalendar:
        account = self.account
        with self.db.session() as session:
            known = session.get(CollectionState, account.name)
        url = account.calendar_url or (known.calendar_url if known else None)
        password = account.password()
        if url:
            return DavCalendar.connect(
                url,
                username=account.username,
                password=password,
                timeout=account.timeout,
                verify_tls=account.verify_tls,
                server_kind=account.server_kind,
                max_response_bytes=account.max_response_bytes,
            )
        calendar = DavCalendar.discover(
            account.url,
            calendar=account.calendar,
            create=True,
            username=account.username,
            password=password,
            timeout=account.timeout,
            verify_tls=account.verify_tls,
            server_kind=account.server_kind,
            max_response_bytes=account.max_response_bytes,
        )
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
            self.options = PlanOptions(**{**self.options.__dict__, "force_delete": True})
        before = self.calendar.stats.copy()
        collection = self._collection()
        state = self._state_entries()
        listing = self._list(
            collection.sync_token if not full else None, state, collection.last_run_at
        )
        by_href = {entry.href: entry for entry in state.values()}
        pending = self._pending_hrefs()
        wanted = [
            href
            for href, etag in sorted(listing.etags.items())
            if href not in by_href or not etag or etag != by_href[href].etag or href in pending
        ]
        wanted += [
            href
            for href in sorted(pending)
            if href not in listing.etags and href not in listing.deleted
        ]
        docs, failed = self._fetch(wanted, by_href)
        state = self._with_documents(state, {by_href[h].followup_id for h in docs if h in by_href})
        crm = self._crm_view(state)
        server = ServerView(listing.complete, listing.etags, listing.deleted, docs, failed)
        the_plan = plan(crm, server, state, self.options)
        report = PassReport(
            self.account.name,
            "full" if listing.complete else "incremental",
            dry_run,
            the_plan,
            fetched=len(docs),
            read_errors=sorted(failed.items()),
        )
        if not dry_run:
            applier = Applier(
                self.account.name,
                self.db,
                self.calendar,
                policy=self.options.policy.value,
                replan=self._replan,
                clock=self.clock,
                should_stop=self.should_stop,
            )
            applier.schedule_agent = invitations.schedule_agent_for(self.account, self.calendar)
            total = len(the_plan.actions)
            done = 0

            def step() -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, total)

            report.applied = applier.run(the_plan, progress=step)
            listing.token = self._token_after_writes(listing, report)
            self._finish(listing, failed, set(docs), report)
        report.requests = self.calendar.stats.since(before).requests
        # Invitations fall due only through a change this pass applied; a full pass also
        # re-checks, which heals a recording that failed on an earlier pass.
        if not dry_run and (report.applied.done or listing.complete):
            invitations.record_after_pass(self.account, self.db, self.calendar)
        return report

    def _collection(self) -> CollectionState:
        with self.db.sessions.begin() as session:
            state = session.get(CollectionState, self.account.name)
            if state is None:
                state = CollectionState(account=self.account.name, calendar_url=self.calendar.url)
                session.add(state)
            return state

    def _list(
        self, token: str | None, state: dict[str, StateEntry], last_run: dt.datetime | None
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
        token = self.calendar.sync_token()
        return _Listing(True, self.calendar.list_etags(), frozenset(), token)

    def _may_be_full_listing(
        self, delta: Delta, state: dict[str, StateEntry], token: str, last_run: dt.datetime | None
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
        recorded = {entry.href: entry for entry in state.values()}
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
        state = self._state_entries()
        recorded = {entry.href: entry.etag for entry in state.values()}
        left_alone = caps.sync_token_seconds and any(href not in recorded for href in listing.etags)
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
            for href, etag in delta.changed.items()
        )
        if ours and not (delta.deleted & set(recorded)):
            return delta.token
        return listing.token

    def _fetch(
        self, hrefs: list[str], by_href: dict[str, StateEntry]
    ) -> tuple[dict[str, ServerDoc], dict[str, str]]:
        docs: dict[str, ServerDoc] = {}
        failed: dict[str, str] = {}
        if not hrefs:
            return docs, failed
        known_docs = self._synced_documents({by_href[h].followup_id for h in hrefs if h in by_href})
        size = self.account.batch_size
        for start in range(0, len(hrefs), size):
            batch = hrefs[start : start + size]
            try:
                results = list(self.calendar.get_multi(batch, batch_size=size))
            except TransportError as exc:
                # One unreadable or oversized answer must not fail the pass or the whole
                # batch: fetch its items one by one so that only the culprit is reported.
                results = (
                    self._fetch_singly(batch)
                    if len(batch) > 1
                    else [_fetch_error(self.calendar, batch[0], exc)]
                )
            for result in results:
                if isinstance(result, FetchError):
                    failed[result.href] = (
                        f"could not be fetched ({result.status or 'missing'}): {result.reason}"
                    )
                    continue
                known_entry = by_href.get(result.href)
                known = known_docs.get(known_entry.followup_id) if known_entry else None
                try:
                    docs[result.href] = self._read(result, known)
                except MappingError as exc:
                    failed[result.href] = str(exc)
        for href, reason in failed.items():
            log.warning("%s: %s: %s", self.account.name, href, reason)
        return docs, failed

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
        followups = parse_components(
            parsed.components, default_timezone=self.account.default_timezone, known=known
        )
        if known is not None:
            followups[0] = followups[0].model_copy(
                update={"id": known.id, "uid": known.uid, "owner": known.owner}
            )
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
        with self.db.session() as session:
            rows = session.execute(
                select(
                    SyncItem.followup_id,
                    SyncItem.uid,
                    SyncItem.href,
                    SyncItem.etag,
                    SyncItem.synced_hash,
                ).where(SyncItem.account == self.account.name, SyncItem.detached.is_(False))
            )
            return {
                row.followup_id: StateEntry(
                    row.followup_id, row.uid, row.href, row.etag, row.synced_hash, None
                )
                for row in rows
            }

    def _synced_documents(self, ids: set[str]) -> dict[str, FollowUp]:
        if not ids:
            return {}
        result = {}
        with self.db.session() as session:
            for row in session.execute(
                select(SyncItem.followup_id, SyncItem.synced_document).where(
                    SyncItem.account == self.account.name, SyncItem.followup_id.in_(ids)
                )
            ):
                result[row.followup_id] = load_followup(row.synced_document)
        return result

    def _with_documents(self, state: dict[str, StateEntry], ids: set[str]) -> dict[str, StateEntry]:
        documents = self._synced_documents(ids)
        for followup_id, document in documents.items():
            entry = state[followup_id]
            state[followup_id] = StateEntry(
                entry.followup_id, entry.uid, entry.href, entry.etag, entry.synced_hash, document
            )
        return state

    def _crm_view(self, state: dict[str, StateEntry]) -> CrmView:
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
                )
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
                    row.id, row.content_hash, row.deleted, as_utc(row.updated_at)
                )
                uids[row.uid] = row.id
            wanted = [
                e.id
                for e in entries.values()
                if not e.deleted
                and (e.id not in state or state[e.id].synced_hash != e.content_hash)
            ]
            documents = crm_store.load_documents(session, wanted)
        return CrmView(entries, documents, uids)

    def _pending_hrefs(self) -> set[str]:
        with self.db.session() as session:
            return set(
                session.scalars(
                    select(PendingHref.href).where(PendingHref.account == self.account.name)
                )
            )

    def _finish(
        self, listing: _Listing, failed: dict[str, str], fetched: set[str], report: PassReport
    ) -> None:
        now = utcnow()
        with self.db.sessions.begin() as session:
            collection = session.get(CollectionState, self.account.name)
            assert collection is not None
            # A pass cut short keeps the old token: the server changes it did not apply yet
            # must be listed again next time, not skipped over.
            if listing.token is not None and not report.stopped:
                collection.sync_token = listing.token
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
            session.execute(
                delete(PendingHref).where(
                    PendingHref.account == self.account.name, PendingHref.href.in_(fetched)
                )
            )
            for href, reason in failed.items():
                row = session.get(PendingHref, (self.account.name, href))
                if row is None:
                    session.add(PendingHref(account=self.account.name, href=href, reason=reason))
                else:
                    row.attempts += 1
                    row.reason = reason
                    row.last_seen = now

    # --- re-planning one item after a refused write ---------------------------------------------

    def _replan(self, action: Action) -> list[Action]:
        followup_id = action.followup_id
        state = self._state_entries()
        known = state.get(followup_id)
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
        options = PlanOptions(**{**self.options.__dict__, "force_delete": True})
        replanned = plan(crm, server, single_state, options)
        return list(replanned.actions)


def _fetch_error(calendar: DavCalendar, href: str, exc: TransportError) -> FetchError:
    return FetchError(calendar.normalise_href(href), exc.status or 0, str(exc))


def run_pass(
    account: Account,
    db: Database,
    *,
    dry_run: bool = False,
    full: bool = False,
    force_delete: bool = False,
    calendar: DavCalendar | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PassReport:
    """The one entry point the CLI, the daemon and the tests share.

    ``should_stop`` is polled between actions (the daemon's shutdown flag). A calendar
    this function connects itself is closed at the end, so a long-running daemon does
    not keep one HTTP session per pass.
    """
    sync_pass = SyncPass(account, db, calendar=calendar, should_stop=should_stop)
    try:
        return sync_pass.run(
            dry_run=dry_run, full=full, force_delete=force_delete, progress=progress
        )
    finally:
        if calendar is None:
            sync_pass.calendar.close()


__all__ = ["PassReport", "Progress", "SyncPass", "id_for_uid", "run_pass"]
