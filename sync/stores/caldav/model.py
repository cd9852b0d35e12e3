"""What a DavCalendar hands back: resources, fetch failures, deltas, the collection's clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
