"""The calendar side's one contract: ``CalendarStore``, what a sync pass asks of a calendar.

Modelled on vdirsyncer's ``Storage`` and httpx's ``BaseTransport``: a small set of
operations on one collection of calendar object resources, each keyed by href and
guarded by ETags, each docstring naming the exception (from ``sync.errors``) it raises.
``DavCalendar`` (``sync.stores.caldav``) is the CalDAV implementation and
``MemoryCalendar`` (``sync.stores.memory``) the in-memory one with the same ETag and
precondition rules; ``tests/sync/stores/test_store_contract.py`` runs one suite against
both and against every real server. The engine is typed against this Protocol only.

Rules every implementation keeps:

* hrefs are keys: the unquoted URL path (``/alice/cal/a b.ics``). ``normalise_href``
  turns any form the caller holds into that key.
* Every write returns the new ETag ("" when the store changed what it stored and has no
  ETag for it yet: read it again), and every write is conditional: ``create`` only where
  nothing is, ``update`` and ``delete`` only at the ETag the caller read.
* Failures are ``sync.errors.StoreError`` and its subclasses; ``TransportError`` means
  "try again later", ``PreconditionFailed`` (AlreadyExists, WrongEtag, NotFound) means
  "the store is not in the state you thought: re-plan".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from sync.stores.capabilities import Capabilities

__all__ = [
    "BulkUpload",
    "CalendarStore",
    "Delta",
    "FetchError",
    "LastModified",
    "RequestStats",
    "Resource",
    "is_safe_name",
    "resource_name",
]

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: A resource name may hold "@" too: see ``resource_name``.
_SAFE_RESOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


# --------------------------------------------------------------------------- what stores hand back


@dataclass(frozen=True)
class Resource:
    """One calendar object resource as the server holds it.

    ``data`` is the calendar-data text as the server sent it, UTF-8 encoded. Inside an XML
    answer CRLF line ends arrive as LF (XML parsers must normalise them), so compare
    content after parsing, not byte for byte with what was PUT.
    """

    href: str
    etag: str
    data: bytes


@dataclass(frozen=True)
class FetchError:
    """An href a multiget could not return; the other hrefs of the batch still come through.

    ``status`` 0 means the server silently left the href out of its answer. A 404 here is a
    reason to re-list, not proof of deletion: only a sync delta or a listing proves that.
    """

    href: str
    status: int
    reason: str


@dataclass(frozen=True)
class Delta:
    """What changed since a sync token. An empty ``etag`` means the server did not report one."""

    changed: dict[str, str]
    deleted: frozenset[str]
    token: str


@dataclass(frozen=True)
class LastModified:
    """A collection's DAV:getlastmodified, and the server's clock when it was read."""

    value: datetime
    server_time: datetime


@dataclass
class RequestStats:
    """Request counters for tests and benchmarks; byte counts are bodies only, not headers."""

    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    #: Wall time inside HTTP exchanges, from sending a request to the end of its answer:
    #: what a pass spends outside them is the client's own cost (benchmarks).
    seconds: float = 0.0
    #: The same wall time by phase where the sender measures it (``caldav.direct``):
    #: "connect", "send", "wait" (the server's turn), "read"; benchmarks print them.
    phases: dict[str, float] = field(default_factory=dict)

    def count_request(self, method: str, body_bytes: int) -> None:
        """One request sent (the answer's bytes and time are counted by whoever reads it)."""
        self.requests += 1
        self.bytes_sent += body_bytes
        self.by_method[method] = self.by_method.get(method, 0) + 1

    def copy(self) -> RequestStats:
        return RequestStats(
            self.requests,
            self.bytes_sent,
            self.bytes_received,
            dict(self.by_method),
            self.seconds,
            dict(self.phases),
        )

    def since(self, earlier: RequestStats) -> RequestStats:
        """The traffic between ``earlier`` (a copy) and now: tests assert on one call this way."""
        return RequestStats(
            self.requests - earlier.requests,
            self.bytes_sent - earlier.bytes_sent,
            self.bytes_received - earlier.bytes_received,
            {
                m: n - earlier.by_method.get(m, 0)
                for m, n in self.by_method.items()
                if n - earlier.by_method.get(m, 0)
            },
            self.seconds - earlier.seconds,
            {p: t - earlier.phases.get(p, 0.0) for p, t in self.phases.items()},
        )


# --------------------------------------------------------------------------- the contract


def resource_name(uid: str) -> str:
    """The file name a new resource for ``uid`` gets: the UID itself when it is a safe name.

    Anything else (slashes, spaces, non-ASCII, very long, leading dot) is replaced by its
    SHA-1, so the name is valid on every server's storage and needs no quoting.

    "@" counts as safe: UIDs are "id@host" by RFC 5545's own advice and by ours
    (``followup-42@followup-sync``), RFC 3986 allows "@" unquoted in a path, and a server
    that lists it as "%40" is read back through ``normalise_href``. The UID as the name
    tells an operator looking at the server's storage which follow-up a file is, and it
    is cheaper for a server that keeps an index of names: a push of 1,000 to Xandikos
    (git) took 32.39 s with these names and 33.21 s with 40-hex hashes (medians of seven
    alternating rounds, each on a fresh server, the same bodies). Calendar names keep
    the stricter ``is_safe_name``.
    """
    safe = _SAFE_RESOURCE_NAME.fullmatch(uid)
    name = uid if safe else hashlib.sha1(uid.encode()).hexdigest()
    return f"{name}.ics"


def is_safe_name(name: str) -> bool:
    """Whether ``name`` can be a resource or calendar name as is (see ``resource_name``)."""
    return _SAFE_NAME.fullmatch(name) is not None


class CalendarStore(Protocol):
    """One calendar collection, as the sync engine uses it."""

    #: The collection's URL (ends with "/"); the state database keys the collection by it.
    url: str
    #: The collection's path, the prefix of every href in it (ends with "/").
    path: str
    #: Request counters: what a pass cost (``since`` a ``copy``).
    stats: RequestStats

    @property
    def capabilities(self) -> Capabilities:
        """What the store does and which quirks apply; the engine branches on these only."""
        ...

    def close(self) -> None:
        """Release the connection; the store is not used afterwards. Raises nothing."""
        ...

    def normalise_href(self, href: str) -> str:
        """The key form of ``href`` (a full URL, a relative name or a key). Raises nothing."""
        ...

    def href_for_uid(self, uid: str) -> str:
        """Where a new resource for ``uid`` goes (``path`` + ``resource_name(uid)``).

        Not the way back from a UID to an href: that is ``find_by_uid``. Raises nothing.
        """
        ...

    def sync_token(self) -> str | None:
        """The collection's current sync token, None when it has none.

        Raises NotFound when the collection does not exist, TransportError when it
        cannot be asked.
        """
        ...

    def last_modified(self) -> LastModified | None:
        """The collection's last modification and the store's clock, or None if unknown.

        Worth something only where ``capabilities.lastmodified_covers_members``. Raises
        NotFound when the collection does not exist, TransportError when it cannot be asked.
        """
        ...

    def changes_since(self, token: str | None) -> Delta:
        """What changed since ``token`` (None: everything, as changed), and the new token.

        Raises InvalidSyncToken when the store refuses ``token`` (list everything and
        compare instead), SyncCollectionUnsupported (or StoreError where
        ``capabilities.sync_token`` is already False) when it has no change tracking,
        NotFound when the collection does not exist, TransportError when it cannot be asked.
        """
        ...

    def list_etags(self) -> dict[str, str]:
        """href -> ETag of every resource in the collection (the full listing).

        Raises NotFound when the collection does not exist, TransportError when it
        cannot be asked.
        """
        ...

    def get_multi(
        self, hrefs: Iterable[str], batch_size: int = 50
    ) -> Iterator[Resource | FetchError]:
        """Each href (once, in order) as a Resource, or a FetchError when it cannot be read.

        A missing href is a FetchError, not an exception: the others still come through.
        Raises ValueError for ``batch_size`` < 1, TransportError when a whole batch
        cannot be read (nothing in it can be trusted).
        """
        ...

    def find_by_uid(
        self, uid: str, components: tuple[str, ...] = ("VEVENT", "VTODO")
    ) -> Resource | None:
        """The resource holding exactly ``uid`` (in one of ``components``), or None.

        Raises NotFound when the collection does not exist, TransportError when it
        cannot be asked.
        """
        ...

    def create(self, href: str, data: bytes) -> str:
        """Store ``data`` at ``href`` only if nothing is there; return the new ETag.

        Raises AlreadyExists when something is at ``href`` or a UID of ``data`` lives
        under another href of the collection, UidInOtherCalendar when the store keeps
        each UID once per user and another calendar has it, Refused when the store will
        not take ``data`` for what it is (size), TransportError when it cannot be asked.
        """
        ...

    def update(self, href: str, data: bytes, etag: str) -> str:
        """Replace the resource at ``href`` only if its ETag is still ``etag``; the new ETag.

        Raises NotFound when the resource is gone, WrongEtag when it changed, AlreadyExists
        when a UID of ``data`` lives under another href, Refused when the store will not
        take ``data`` for what it is (size), TransportError when it cannot be asked.
        """
        ...

    def delete(self, href: str, etag: str) -> None:
        """Delete the resource at ``href`` only if its ETag is still ``etag``.

        Raises NotFound when it is already gone, WrongEtag when it changed, TransportError
        when the store cannot be asked.
        """
        ...


@runtime_checkable
class BulkUpload(Protocol):
    """What a store offers on top of ``CalendarStore`` where ``bulk_upload_into_empty`` holds.

    Optional: the engine asks ``isinstance(store, BulkUpload)`` and the capability, and
    otherwise pushes item by item. ``MemoryCalendar`` does not offer it.
    """

    def upload_into_empty(self, resources: Sequence[bytes]) -> dict[str, str] | None:
        """Store every one of ``resources`` in one request, only if the calendar is empty.

        Reads the collection (its members and ETag) and uploads only under a precondition
        the server keeps: nothing may have appeared in the calendar since it was read
        empty. Returns href -> ETag of what the calendar then holds (one listing, since
        the server names the resources itself); None when the upload was not made (not
        empty, refused by the precondition, or properties it would lose): push item by
        item then. Raises TransportError when the store cannot be asked (whether the
        upload landed is unknown: the per-item push finds out, by UID).
        """
        ...


@runtime_checkable
class SaysWhenSent(Protocol):
    """A store that says when a request has left and the server has the turn.

    Optional, as ``BulkUpload``. A push spends about a millisecond of our CPU per series
    and tens of milliseconds waiting for the server; work done on another thread of ours
    overlaps that wait only if it runs *during* it. Started any earlier, it holds the GIL
    while the sending thread resolves, connects and sends, and every request starts late
    (measured: 0.3 ms per PUT on Radicale, in ``benchmarks.bench_sync``'s phase table).
    """

    def call_when_sent(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` on the sending thread each time a request body has been sent.

        None stops the calls. A store that sends a request without a body may not call.
        """
        ...
