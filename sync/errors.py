"""Every error the sync service raises on purpose, in one tree.

    FollowupSyncError
    ├── ConfigError            user-facing; message only, no traceback (bad config, missing secret)
    ├── AccountBusy            another process is syncing this account right now (sync.state.locks)
    ├── MappingError           (mappings.errors) one item could not be mapped; skip it, report it
    ├── StoreError             the CalDAV side failed
    │   ├── TransportError     network, timeout, 5xx, garbage answer: safe to retry later
    │   ├── InvalidSyncToken   the server no longer knows our token: do a full listing
    │   ├── Refused            the server will not store these bytes (too large): no retry
    │   ├── UidInOtherCalendar the UID lives in another calendar of the same user (Cyrus)
    │   ├── SyncCollectionUnsupported  no sync-collection REPORT (SabreDAV 1.8): list ETags
    │   └── PreconditionFailed the server refused a conditional write (412/409): re-read, re-plan
    │       ├── AlreadyExists  If-None-Match: * failed, something lives at that href or UID
    │       ├── WrongEtag      If-Match failed, someone changed the resource since we read it
    │       └── NotFound       the resource is gone
    └── SafetyStop             the pass is aborted before anything is deleted
        ├── SideEmpty          a listing came back empty while the state says it held items
        └── TooManyDeletes     the plan deletes more than the configured share of a calendar

Errors carry the fields that describe them (href, uid, status) so callers can
report the item by name instead of parsing messages.
"""

from __future__ import annotations

import socket
import ssl

from mappings.errors import FollowupSyncError, MappingError

__all__ = [
    "AccountBusy",
    "AlreadyExists",
    "ConfigError",
    "FollowupSyncError",
    "InvalidSyncToken",
    "MappingError",
    "NotFound",
    "PreconditionFailed",
    "Refused",
    "SafetyStop",
    "SideEmpty",
    "StoreError",
    "SyncCollectionUnsupported",
    "TooManyDeletes",
    "TransportError",
    "UidInOtherCalendar",
    "WrongEtag",
    "network_failure",
]


class ConfigError(FollowupSyncError):
    """Bad configuration or a secret that cannot be read. Shown to the user as is."""


class AccountBusy(FollowupSyncError):
    """Another process holds the account's lock (``sync.state.locks``): nothing was done."""


class StoreError(FollowupSyncError):
    """The CalDAV server did not do what we asked."""

    def __init__(self, message: str, *, href: str | None = None, status: int | None = None):
        super().__init__(message)
        self.href = href
        self.status = status


class TransportError(StoreError):
    """Network failure, timeout, 5xx or an unreadable answer. Retrying later is safe."""


class InvalidSyncToken(StoreError):
    """The server rejected our sync token (RFC 6578 valid-sync-token): list everything."""


class Refused(StoreError):
    """The server refused a write for what it is, not for the state it found.

    A resource over the server's size limit: a 413, or a 412 to a write whose condition
    held (nothing at the href nor with the UID for a create, our etag still current for
    an update), which is how Radicale answers one over ``max_resource_size``. Writing the
    same bytes again cannot succeed, so this is the item's error, with no re-read.
    """


class SyncCollectionUnsupported(StoreError):
    """The server answered a sync-collection REPORT with "not supported": list ETags instead."""


class UidInOtherCalendar(StoreError):
    """A create was refused: the server keeps a UID once per user and another calendar has it.

    Not a PreconditionFailed: re-reading this calendar cannot resolve it. The item is
    reported and tried again next pass.
    """


class PreconditionFailed(StoreError):
    """A conditional request was refused: the resource is not in the state we expected."""


class AlreadyExists(PreconditionFailed):
    """A create-only write found something at that href (or that UID elsewhere)."""


class WrongEtag(PreconditionFailed):
    """An If-Match write or delete found a different version on the server."""


class NotFound(PreconditionFailed):
    """The resource we wanted to change or read is not on the server any more."""


class SafetyStop(FollowupSyncError):
    """The pass would do something destructive that looks like a mistake; nothing was applied."""


class SideEmpty(SafetyStop):
    """A side listed no items although the state remembers some: never read that as 'delete all'."""


class TooManyDeletes(SafetyStop):
    """The plan deletes more than the configured share of the calendar."""

    def __init__(self, message: str, *, deletions: int, total: int, threshold_percent: float):
        super().__init__(message)
        self.deletions = deletions
        self.total = total
        self.threshold_percent = threshold_percent


def network_failure(exc: BaseException) -> str:
    """Why a request never got an answer, in words: "connection refused", "host not found"…

    The HTTP library's own message is a nested repr ("HTTPConnectionPool(host=…): Max
    retries exceeded … NewConnectionError('<urllib3.connection… object at 0x…>…')").
    The cause that matters is an OS-level error further down the chain (the exception's
    ``__cause__``/``__context__``, or the ``reason`` urllib3 keeps); its class says what
    happened. Unknown causes fall back to the innermost message.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    innermost = exc
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        innermost = current
        words = _failure_words(current)
        if words:
            return words
        for nested in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *(a for a in current.args if isinstance(a, BaseException)),
        ):
            if isinstance(nested, BaseException):
                pending.append(nested)
    return str(innermost) or type(innermost).__name__


def _failure_words(exc: BaseException) -> str | None:
    if isinstance(exc, socket.gaierror):
        return "host name not found (DNS)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, TimeoutError) or type(exc).__name__.endswith("Timeout"):
        return "no answer in time (timed out)"
    if isinstance(exc, ConnectionResetError):
        return "the server closed the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return None
