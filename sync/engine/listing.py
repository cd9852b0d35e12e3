"""Step 1 of a pass: what changed on the server, in as few requests as the server allows.

The strategy, cheapest first: the collection's getlastmodified where it covers every member
(one PROPFIND proves "nothing changed"); the changes since our sync token (one REPORT); the
whole href/ETag listing where the server has no tokens, forgot ours, or cannot be trusted
with them. Each server quirk this works around is named by its flag in
``sync.stores.capabilities`` and explained where it is handled.

A listing that fails raises: the pass ends before anything is planned, so a failed listing
can never look like "everything was deleted".
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from sync.engine.views import StateEntry
from sync.errors import InvalidSyncToken, StoreError, SyncCollectionUnsupported
from sync.state import repo
from sync.state.db import CollectionState, Database, as_utc
from sync.stores.base import CalendarStore, Delta, LastModified

log = logging.getLogger(__name__)

#: Hrefs whose recorded ETags are read per round trip.
_ROWS = 500

#: A seconds-precision token (SOGo) at most this much older than our last pass is ours.
_RECENT_TOKEN = dt.timedelta(minutes=2)

#: How much later than a getlastmodified value it must have been read to be kept: the value
#: has whole seconds, and a change made in its own second would not move it.
_LAST_MODIFIED_MARGIN = dt.timedelta(seconds=2)


def _trusted(seen: LastModified | None) -> dt.datetime | None:
    """``seen``'s value if a later change is bound to move it, else None (list next time)."""
    if seen is None or seen.server_time - seen.value < _LAST_MODIFIED_MARGIN:
        return None
    return seen.value


@dataclass
class Listing:
    complete: bool
    etags: dict[str, str]
    deleted: frozenset[str]
    token: str | None
    #: The collection's getlastmodified read before the listing (see ``server_unchanged``).
    last_modified: LastModified | None = None

    def is_empty_delta(self) -> bool:
        """The server says nothing changed since our token (not a full listing)."""
        return not self.complete and not self.etags and not self.deleted

    def last_modified_to_keep(self) -> dt.datetime | None:
        """The getlastmodified value to keep with this listing's token (``_trusted``)."""
        return _trusted(self.last_modified)


class Lister:
    """Lists one account's calendar for a pass; reads the state only where a quirk needs it."""

    def __init__(self, account: str, calendar: CalendarStore, db: Database) -> None:
        self.account = account
        self.calendar = calendar
        self.db = db

    def changes(
        self,
        collection: CollectionState,
        state: Callable[[], dict[str, StateEntry]],
        *,
        full: bool,
    ) -> Listing:
        """What changed since the last pass (``full``: every resource, token or not).

        ``state`` gives the recorded entries, read only if a quirk workaround needs them.
        """
        seen = self._last_modified()
        if not full and self._server_unchanged(collection, seen):
            listing = Listing(False, {}, frozenset(), collection.sync_token)
        else:
            token = collection.sync_token if not full else None
            try:
                listing = self._list(token, state, collection.last_run_at)
            except SyncCollectionUnsupported:
                # No server_kind, or a wrong one: the server said so, and the calendar's
                # capabilities now say so too, so the second try lists ETags.
                log.info(
                    "%s: the server has no sync-collection; comparing the full href/ETag listing",
                    self.account,
                )
                listing = self._list(token, state, collection.last_run_at)
        listing.last_modified = seen
        return listing

    def _last_modified(self) -> LastModified | None:
        """The collection's getlastmodified, on servers where it covers every member."""
        if not self.calendar.capabilities.lastmodified_covers_members:
            return None
        try:
            return self.calendar.last_modified()
        except StoreError as exc:  # the listing that follows decides whether the pass goes on
            log.info(
                "%s: getlastmodified unreadable (%s); asking with the token", self.account, exc
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
        log.debug("%s: getlastmodified unchanged since the token; nothing to list", self.account)
        return True

    def _list(
        self,
        token: str | None,
        state: Callable[[], dict[str, StateEntry]],
        last_run: dt.datetime | None,
    ) -> Listing:
        caps = self.calendar.capabilities
        if caps.sync_token:
            if token:
                try:
                    delta = self.calendar.changes_since(token)
                except InvalidSyncToken:
                    log.info(
                        "%s: the server no longer knows our sync token; listing everything",
                        self.account,
                    )
                else:
                    if caps.sync_token_trustworthy or not self._may_be_full_listing(
                        delta, state, token, last_run
                    ):
                        return Listing(False, delta.changed, delta.deleted, delta.token)
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
                        self.account,
                    )
                    return Listing(True, self.calendar.list_etags(), frozenset(), delta.token)
            delta = self.calendar.changes_since(None)
            return Listing(True, delta.changed, frozenset(), delta.token)
        # No sync-collection (SabreDAV 1.8): every pass compares the full href/ETag listing.
        return Listing(True, self.calendar.list_etags(), frozenset(), None)

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
            when = repo.recorded_at(session, self.account, relisted)
        # One second of slack: our clock and the server's are read at different moments.
        return any(
            href not in when or as_utc(when[href]) < second - dt.timedelta(seconds=1)
            for href in relisted
        )

    def token_after_writes(self, listing: Listing, *, wrote: bool) -> str | None:
        """A token that already covers our own writes of this pass, when that is safe.

        RFC 6578 lets a server leave out a resource created *and* deleted since a token
        (Xandikos does): with the listing's token kept, a resource we created this pass
        and a client deleted afterwards would never show up as deleted. So after writing
        (``wrote``), ask once more; take the newer token only if every change it reports is
        our own write (its ETag is the one recorded), else keep the old one and see them
        next pass.

        Quirk workaround (capabilities.sync_token_seconds, SOGo): a client's resource this
        pass listed and deliberately left alone (import_new off) would be listed again as
        long as the token stays in its second, and look new then. So when the pass skipped
        such items, wait until the token's second is over (at most ~1 s) and ask once more,
        accepting items seen unchanged in this pass as well as our own writes.
        """
        caps = self.calendar.capabilities
        if listing.token is None or not caps.sync_token:
            return listing.token
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
            log.info("%s: no fresh sync token after writing: %s", self.account, exc)
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

    def _recorded_etags(self, hrefs: Collection[str]) -> Iterator[tuple[list[str], dict[str, str]]]:
        """(batch of ``hrefs``, href -> recorded ETag of those in the state), batch by batch."""
        wanted = sorted(hrefs)
        with self.db.session() as session:
            for start in range(0, len(wanted), _ROWS):
                batch = wanted[start : start + _ROWS]
                yield batch, repo.recorded_etags(session, self.account, batch)
