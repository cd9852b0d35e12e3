"""DavCalendar: one CalDAV calendar collection, composed of its listing, reading and writing parts.

The class is thin on purpose: each request and each server quirk lives in the part that
sends it (``listing``, ``reading``, ``writing``, ``busy``), on top of one ``Collection``
(URL forms, capabilities, requests through the ``Sender`` seam, multistatus reading).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Self, cast

from caldav.collection import Calendar, Principal
from caldav.davclient import DAVClient
from caldav.lib import error as caldav_error
from caldav.lib.http_sync import requests as http

from sync.errors import NotFound, StoreError, TransportError
from sync.stores.base import (
    Delta,
    FetchError,
    LastModified,
    RequestStats,
    Resource,
    is_safe_name,
    resource_name,
)
from sync.stores.caldav.bulk import BulkWriting
from sync.stores.caldav.busy import BusyPeriod, BusyTime, HomeCalendar, last_segment
from sync.stores.caldav.collection import Collection
from sync.stores.caldav.direct import DirectSender, sends_directly
from sync.stores.caldav.listing import Listing
from sync.stores.caldav.reading import Reading
from sync.stores.caldav.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    RetryPolicy,
    Sender,
    SessionSender,
    Transport,
    describe_transport_failure,
    make_client,
    on_body_sent,
)
from sync.stores.caldav.writing import Writing
from sync.stores.capabilities import Capabilities

# One logger for the whole client, as before the split: log lines keep their "logger" name.
log = logging.getLogger("sync.stores.caldav")


class DavCalendar:
    """One CalDAV calendar collection. Build it with ``connect`` or ``discover``.

    Every request goes through ``sender`` (the I/O seam, ``transport.Sender``): pass one to
    ``connect`` to answer in-process, or wrap it (``cal.sender = Spy(cal.sender)``) to watch.
    """

    url: str
    path: str
    stats: RequestStats

    def __init__(
        self,
        client: DAVClient,
        calendar_url: str,
        *,
        stats: RequestStats,
        server_kind: str | None,
        capability_overrides: Mapping[str, object] | None = None,
        timeout: float = 30,
        verify_tls: bool = True,
        retry: RetryPolicy | None = None,
        max_sync_pages: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: Transport | None = None,
        sender: Sender | None = None,
    ) -> None:
        """Prefer ``connect``/``discover``; this takes an already-counting caldav client."""
        self._client = client
        self._timeout = timeout
        self._transport = transport or Transport(verify=verify_tls)
        self._max_response_bytes = max_response_bytes
        self._collection = Collection(
            calendar_url,
            sender=sender
            or _production_sender(
                client, calendar_url, self._transport, stats, timeout, max_response_bytes
            ),
            stats=stats,
            server_kind=server_kind,
            capability_overrides=capability_overrides,
            retry=retry or RetryPolicy(),
            sleep=sleep,
            max_sync_pages=max_sync_pages,
        )
        self.url = self._collection.url
        self.path = self._collection.path
        self.stats = stats
        if not verify_tls or self._transport.verify is False:
            log.warning(
                "TLS certificate verification is OFF for %s (verify_tls = false): "
                "anyone on the network path can read and change this calendar",
                self._collection.origin,
            )
        self._listing = Listing(self._collection)
        self._reading = Reading(self._collection)
        self._writing = Writing(self._collection, self._reading)
        self._busy = BusyTime(self._collection)
        self._bulk = BulkWriting(self._collection, self._listing)
        self._when_sent: Callable[[], None] | None = None
        self._tell_sent = lambda: None if self._when_sent is None else self._when_sent()
        if sender is None:
            _call_after_send(self._collection.sender, client, self._tell_sent)

    @property
    def capabilities(self) -> Capabilities:
        """What this server does and which quirks apply; refined from the first answers."""
        return self._collection.capabilities

    @capabilities.setter
    def capabilities(self, value: Capabilities) -> None:
        self._collection.capabilities = value

    @property
    def sender(self) -> Sender:
        """The I/O seam every request goes through; replace or wrap it (see the class)."""
        return self._collection.sender

    @sender.setter
    def sender(self, value: Sender) -> None:
        self._collection.sender = value

    @classmethod
    def connect(
        cls,
        calendar_url: str,
        *,
        username: str | None,
        password: str | None,
        timeout: float = 30,
        verify_tls: bool = True,
        server_kind: str | None = None,
        capability_overrides: Mapping[str, object] | None = None,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: Transport | None = None,
        sender: Sender | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> DavCalendar:
        """A calendar whose URL is known: no request is sent until a method is called.

        ``sender`` replaces the HTTP session (an in-process server); ``sleep`` is the clock
        retries wait on (tests pass one that records the waits).
        """
        stats = RequestStats()
        transport = transport or Transport(verify=verify_tls)
        client = make_client(calendar_url, username, password, timeout, transport, stats)
        return cls(
            client,
            calendar_url,
            stats=stats,
            server_kind=server_kind,
            capability_overrides=capability_overrides,
            timeout=timeout,
            verify_tls=verify_tls,
            retry=retry,
            sleep=sleep,
            max_response_bytes=max_response_bytes,
            transport=transport,
            sender=sender,
        )

    @classmethod
    def discover(
        cls,
        base_url: str,
        *,
        username: str | None,
        password: str | None,
        calendar: str,
        create: bool = True,
        timeout: float = 30,
        verify_tls: bool = True,
        server_kind: str | None = None,
        capability_overrides: Mapping[str, object] | None = None,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: Transport | None = None,
    ) -> DavCalendar:
        """Principal -> calendar home -> the calendar whose id or display name is ``calendar``.

        Done once per account set-up, so it uses caldav's discovery as is (not retried);
        store the resulting ``url`` and use ``connect`` afterwards.
        """
        stats = RequestStats()
        transport = transport or Transport(verify=verify_tls)
        client = make_client(base_url, username, password, timeout, transport, stats)
        calendar_url = _discovered_url(client, base_url, calendar, create, transport)
        return cls(
            client,
            calendar_url,
            stats=stats,
            server_kind=server_kind,
            capability_overrides=capability_overrides,
            timeout=timeout,
            verify_tls=verify_tls,
            retry=retry,
            max_response_bytes=max_response_bytes,
            transport=transport,
        )

    def principal(self) -> Principal:
        """caldav's principal of this connection (``sync.stores.scheduling``); raises caldav's."""
        return self._client.get_principal()

    def sibling(
        self, calendar_url: str, *, capability_overrides: Mapping[str, object] | None = None
    ) -> DavCalendar:
        """Another calendar of the same account, over this one's connection (do not close it)."""
        col = self._collection
        return DavCalendar(
            self._client,
            calendar_url,
            stats=self.stats,
            server_kind=self.capabilities.kind,
            capability_overrides={**col.overrides, **(capability_overrides or {})},
            timeout=self._timeout,
            verify_tls=self._transport.verify is not False,
            retry=col.retry,
            max_response_bytes=self._max_response_bytes,
            transport=self._transport,
            sender=None if isinstance(col.sender, (SessionSender, DirectSender)) else col.sender,
        )

    def close(self) -> None:
        self._client.close()
        if isinstance(self._collection.sender, DirectSender):
            self._collection.sender.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call_when_sent(self, callback: Callable[[], None] | None) -> None:
        """``callback`` after each request body sent (``base.SaysWhenSent``)."""
        self._when_sent = callback

    def normalise_href(self, href: str) -> str:
        """The key form of an href: the unquoted URL path (see ``Collection.normalise_href``)."""
        return self._collection.normalise_href(href)

    def href_for_uid(self, uid: str) -> str:
        """Where a new resource for ``uid`` goes: the UID itself when it is a safe file name.

        Anything else (slashes, spaces, non-ASCII, very long, leading dot) is replaced by
        its SHA-1, so the name is valid on every server's storage and needs no quoting.
        find_by_uid, not this function, is the way back from a UID to an href.
        """
        return f"{self.path}{resource_name(uid)}"

    def sync_token(self) -> str | None:
        """The collection's current DAV:sync-token, or None if the server has none."""
        return self._listing.sync_token()

    def last_modified(self) -> LastModified | None:
        """The collection's DAV:getlastmodified and the server's Date header for it.

        One PROPFIND Depth 0. None when the server gives either one no usable value (an
        answer that is no multistatus raises, as for any request); what the pair is worth
        depends on the server (``Capabilities.lastmodified_covers_members``).
        """
        return self._listing.last_modified()

    def changes_since(self, token: str | None) -> Delta:
        """sync-collection (RFC 6578), level 1, etags only; None = initial full enumeration.

        One request when nothing changed. Truncated answers (507 on the collection) are
        followed with the intermediate token. An invalid token raises InvalidSyncToken:
        there is no silent fallback, the caller does the full listing and mark-and-sweep.
        A server without sync-collection raises SyncCollectionUnsupported (and the
        capabilities say so from then on). On servers whose
        ``capabilities.sync_token_trustworthy`` is False a stale token is answered with a
        full listing instead, which this method cannot tell apart.
        """
        return self._listing.changes_since(token)

    def list_etags(self) -> dict[str, str]:
        """href -> etag of every calendar object resource: one PROPFIND Depth 1.

        This is the full listing for reconciliation and for servers whose tokens cannot
        be trusted; the collection itself and any sub-collection are left out.
        """
        return self._listing.list_etags()

    def get_multi(
        self, hrefs: Iterable[str], batch_size: int = 50
    ) -> Iterator[Resource | FetchError]:
        """calendar-multiget in batches, one REPORT per batch (never one GET per object).

        Missing hrefs come back as FetchError and do not stop the others; an unreadable
        answer raises TransportError naming the batch, since nothing in it can be trusted.
        """
        return self._reading.get_multi(hrefs, batch_size)

    def find_by_uid(
        self, uid: str, components: tuple[str, ...] = ("VEVENT", "VTODO")
    ) -> Resource | None:
        """The resource holding ``uid`` under whatever href it has (VEVENT first, then VTODO).

        Used after a crash between PUT and recording the href, and on servers where the
        same UID may exist under another name. One REPORT per component type asked for.
        """
        return self._reading.find_by_uid(uid, components)

    def create(self, href: str, data: bytes) -> str:
        """PUT with If-None-Match: * and return the new etag (see ``Writing.create``).

        AlreadyExists if something is at ``href`` or the UID lives under another href;
        UidInOtherCalendar where the server keeps a UID once per user (Cyrus); Refused when
        the server will not store the bytes (size).
        """
        return self._writing.create(href, data)

    def update(self, href: str, data: bytes, etag: str) -> str:
        """PUT with If-Match ``etag`` and return the new etag (see ``Writing.update``).

        NotFound if the resource is gone, WrongEtag if it changed, Refused when the server
        will not store the bytes although our etag still holds (size).
        """
        return self._writing.update(href, data, etag)

    def delete(self, href: str, etag: str) -> None:
        """DELETE with If-Match; WrongEtag if it changed meanwhile, NotFound if already gone."""
        self._writing.delete(href, etag)

    def upload_into_empty(self, resources: Sequence[bytes]) -> dict[str, str] | None:
        """All ``resources`` in one PUT, only into an empty calendar (``caldav.bulk``)."""
        return self._bulk.upload_into_empty(resources)

    def query_busy(self, start: datetime, end: datetime, *, zone: tzinfo = UTC) -> list[BusyPeriod]:
        """What makes the owner busy between ``start`` and ``end`` (see ``BusyTime.query_busy``)."""
        return self._busy.query_busy(start, end, zone=zone)

    def home_calendars(self) -> list[HomeCalendar]:
        """Every calendar collection in the owner's calendar home (this one included)."""
        return self._busy.home_calendars()


def _production_sender(
    client: DAVClient,
    url: str,
    transport: Transport,
    stats: RequestStats,
    timeout: float,
    limit: int,
) -> Sender:
    """``DirectSender`` where the account's transport allows (``caldav.direct``), else niquests."""
    if sends_directly(url, transport):
        return DirectSender(
            username=client.username,
            password=client.password,
            transport=transport,
            stats=stats,
            timeout=timeout,
            max_response_bytes=limit,
        )
    return SessionSender(client, transport, stats=stats, timeout=timeout, max_response_bytes=limit)


def _call_after_send(sender: Sender, client: DAVClient, callback: Callable[[], None]) -> None:
    if isinstance(sender, DirectSender):
        sender.after_send = callback
    else:
        on_body_sent(client.session, callback)


def _find_calendar(client: DAVClient, base_url: str, calendar: str, *, create: bool) -> str:
    """The URL of the calendar whose id or display name is ``calendar``, made if asked.

    caldav's errors pass through (``DavCalendar.discover`` turns them into ours).
    """
    principal = client.get_principal()
    # A sync client returns plain values; caldav's hints also allow coroutines.
    calendars = cast("list[Calendar]", principal.get_calendars())
    # Ids first: they need no request. Display names are cached from the listing.
    found = next((c for c in calendars if last_segment(str(c.url)) == calendar), None)
    if found is None:
        found = next((c for c in calendars if c.get_display_name() == calendar), None)
    if found is None:
        if not create:
            client.close()
            raise NotFound(f"no calendar {calendar!r} under {base_url}", href=base_url)
        cal_id = calendar if is_safe_name(calendar) else None
        found = cast("Calendar", principal.make_calendar(name=calendar, cal_id=cal_id))
    return str(found.url)


def _discovered_url(
    client: DAVClient, base_url: str, calendar: str, create: bool, transport: Transport
) -> str:
    """``_find_calendar`` with caldav's and niquests' errors turned into ours; closes on failure."""
    try:
        calendar_url = _find_calendar(client, base_url, calendar, create=create)
    except (http.exceptions.RequestException, OSError) as exc:
        client.close()
        raise TransportError(
            f"cannot reach the CalDAV server at {base_url}: "
            f"{describe_transport_failure(exc, transport)}",
            href=base_url,
        ) from exc
    except caldav_error.AuthorizationError as exc:
        client.close()
        raise StoreError(
            f"discovery at {base_url} failed: {exc}: authentication failed; check the "
            "account's sign-in (auth, username, password or token)",
            href=base_url,
            status=401 if "Unauthorized" in str(exc) else 403,
        ) from exc
    except caldav_error.DAVError as exc:
        client.close()
        raise StoreError(f"discovery at {base_url} failed: {exc}", href=base_url) from exc
    except BaseException:
        client.close()
        raise
    return calendar_url
