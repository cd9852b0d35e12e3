"""Step 2 of a pass: fetch what changed, and read it with the mapper.

The resources whose ETag differs from the state, plus the ones that failed last time,
are fetched with calendar-multiget in ``batch_size`` batches. A batch that fails is
fetched again one item at a time, so that only the culprit is reported. An item that
cannot be fetched or read is reported by href and left alone; ``sync.engine.unreadable``
says when it is tried again (its back-off) and what a vanished one means.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

from sqlalchemy.orm import Session

from mappings.errors import MappingError
from mappings.from_ical import parse_components
from mappings.model import FollowUp
from mappings.resource import read
from sync.config import Account
from sync.engine import unreadable as unreadable_items
from sync.engine.actions import Action, CreateOnServer, Plan
from sync.engine.inputs import Inputs
from sync.engine.listing import Listing
from sync.engine.plan import PlanOptions, plan
from sync.engine.views import ServerDoc, ServerView, StateEntry
from sync.errors import StoreError, TransportError
from sync.state import repo
from sync.state.db import PendingHref
from sync.stores.base import CalendarStore, FetchError, Resource

log = logging.getLogger(__name__)


def to_fetch(
    listing: Listing, by_href: Mapping[str, StateEntry], pending: Mapping[str, PendingHref]
) -> list[str]:
    """The hrefs a pass fetches: what the listing shows changed, and what failed before."""
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
    return wanted


class Fetcher:
    """Fetches and reads one pass's resources for one account."""

    def __init__(self, account: Account, calendar: CalendarStore) -> None:
        self.account = account
        self.calendar = calendar
        #: Unreadable items of the last passes (``sync.engine.unreadable``), read at the pass start.
        self.pending: dict[str, PendingHref] = {}
        #: Of those, the ones whose back-off is not over: not fetched, reported as unreadable.
        self.backed_off: dict[str, str] = {}

    def retry(
        self, pending: dict[str, PendingHref], listed: Mapping[str, str], now: dt.datetime
    ) -> None:
        """Take the items that failed before (``pending``) and decide which wait this pass."""
        self.pending = pending
        self.backed_off = {
            href: f"still unreadable after {row.attempts} tries ({row.reason}); next try after "
            f"{row.retry_at:%Y-%m-%d %H:%M} UTC"
            for href, row in pending.items()
            if row.retry_at is not None
            and unreadable_items.backed_off(row.retry_at, row.etag, listed.get(href), now)
        }

    def download(self, hrefs: Sequence[str]) -> list[Resource | FetchError]:
        """One slice of the pass's fetch list, with calendar-multiget in ``batch_size`` batches."""
        results: list[Resource | FetchError] = [
            FetchError(href, 0, self.backed_off[href]) for href in hrefs if href in self.backed_off
        ]
        hrefs = [href for href in hrefs if href not in self.backed_off]
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

    def read_all(
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
                docs[result.href] = self.read(result, known)
            except MappingError as exc:
                failed[result.href] = str(exc)
        if report:
            for href, reason in failed.items():
                log.warning("%s: %s: %s", self.account.name, href, reason)
        return docs, failed

    def _fetch_failure(self, error: FetchError) -> str:
        if error.href in self.backed_off:
            return error.reason
        earlier = self.pending.get(error.href)
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

    def read(self, resource: Resource, known: FollowUp | None) -> ServerDoc:
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

    # --- re-planning one item after a refused write ---------------------------------------------

    def remember_unreadable(
        self,
        session: Session,
        listing: Listing,
        fetched: Collection[str],
        failed: Mapping[str, str],
        now: dt.datetime,
    ) -> None:
        """Keep this pass's unreadable items for a retry, and forget the healed and gone ones."""
        account = self.account.name
        repo.clear_pending_hrefs(
            session, account, fetched, listing.etags if listing.complete else None
        )
        for href, reason in failed.items():
            if href in self.backed_off:
                continue  # not tried this pass
            repo.note_unreadable(
                session,
                account,
                href,
                reason,
                etag=listing.etags.get(href),
                now=now,
                retry_at=unreadable_items.retry_at,
            )

    def replan(
        self,
        action: Action,
        inputs: Inputs,
        options: PlanOptions,
        adjust: Callable[[Plan, Mapping[str, ServerDoc]], Plan],
    ) -> list[Action]:
        """Read one item again after a refused write (412) and plan it on its own.

        ``adjust`` rewrites the new plan as every plan of the pass (one-way mode).
        """
        followup_id = action.followup_id
        known = inputs.state_entry(followup_id)
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
        known_doc = inputs.synced_documents({followup_id}).get(followup_id)
        if current is not None and href is not None:
            etag, data = current
            docs[href] = self.read(Resource(href, etag, data), known_doc)
        elif href is not None:
            deleted = frozenset({href})
        single_state = {}
        if known is not None:
            single_state[followup_id] = replace(known, synced_document=known_doc)
        crm = inputs.one_followup(followup_id)
        server = ServerView(False, {h: d.etag for h, d in docs.items()}, deleted, docs, {})
        options = replace(options, force_delete=True)
        replanned = adjust(plan(crm, server, single_state, options), docs)
        return list(replanned.actions)


def _fetch_error(calendar: CalendarStore, href: str, exc: TransportError) -> FetchError:
    return FetchError(calendar.normalise_href(href), exc.status or 0, str(exc))


def fetch_one(calendar: CalendarStore, href: str) -> tuple[str, bytes] | None:
    """The current ETag and bytes of one resource, or None if it is gone."""
    for result in calendar.get_multi([href]):
        if isinstance(result, FetchError):
            if result.status == 404:
                return None
            raise StoreError(
                f"could not read {href}: {result.reason}", href=href, status=result.status
            )
        return result.etag, result.data
    return None
