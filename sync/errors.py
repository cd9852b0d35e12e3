"""Every error the sync service raises on purpose, in one tree.

    FollowupSyncError
    ├── ConfigError            user-facing; message only, no traceback (bad config, missing secret)
    ├── AccountBusy            another process is syncing this account right now (sync.locks)
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
]


class ConfigError(FollowupSyncError):
    """Bad configuration or a secret that cannot be read. Shown to the user as is."""


class AccountBusy(FollowupSyncError):
    """Another process holds the account's lock (``sync.locks``): nothing was done."""


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
