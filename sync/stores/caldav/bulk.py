"""One PUT of a whole calendar into an empty collection (``Capabilities.bulk_upload_into_empty``).

Radicale's cost per PUT grows with the collection, so a first push of 5,000 series item by
item takes most of an hour and a half; the same series as one VCALENDAR PUT to the
collection URL replace the (empty) collection in one request. That request replaces
whatever the collection holds, so it is made only under a precondition the server keeps
under its write lock: ``If-Match`` with the collection's ETag as read by the PROPFIND that
found the collection empty (Radicale hashes every member's href and ETag and the
properties into it, app/put.py compares it before writing). A resource a client adds in
between changes that ETag and the upload is refused (412): the caller pushes item by item.

The collection's properties are replaced too: Radicale keeps the display name and the
description (sent as X-WR-CALNAME and X-WR-CALDESC) and nothing else, so a collection
with a colour or a time zone set is not uploaded to this way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sync.stores.caldav.collection import Collection
from sync.stores.caldav.listing import Listing
from sync.stores.caldav.multistatus import DAV, tag

log = logging.getLogger("sync.stores.caldav")

_CALDAV = "urn:ietf:params:xml:ns:caldav"
_APPLE = "http://apple.com/ns/ical/"
_PROPFIND = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" '
    b'xmlns:A="http://apple.com/ns/ical/"><D:prop><D:getetag/><D:resourcetype/>'
    b"<D:displayname/><C:calendar-description/><C:calendar-timezone/><A:calendar-color/>"
    b"</D:prop></D:propfind>"
)
#: Properties the upload would lose: with one of them set, no upload.
_LOST = (tag(_CALDAV, "calendar-timezone"), tag(_APPLE, "calendar-color"))


def _text(value: str) -> str:
    """A property value on one line, unescaped: Radicale stores an X- property's value as sent."""
    return " ".join(value.splitlines())


def _components(data: bytes) -> list[tuple[str, list[str]]]:
    """The components directly inside a resource's VCALENDAR: (name, lines), unfolded lines kept."""
    out: list[tuple[str, list[str]]] = []
    depth = 0
    current: list[str] = []
    name = ""
    for line in data.decode("utf-8").replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        upper = line.upper()
        if upper.startswith("BEGIN:"):
            depth += 1
            if depth == 2:
                name, current = upper[6:].strip(), []
        if depth >= 2:
            current.append(line)
        if upper.startswith("END:"):
            if depth == 2:
                out.append((name, current))
            depth -= 1
    return out


def joined_calendar(resources: Sequence[bytes], name: str | None, description: str | None) -> bytes:
    """One VCALENDAR holding the components of every resource, each VTIMEZONE once (by TZID).

    Of several definitions of one TZID the one starting earliest is kept: Radicale writes
    every resource's zone anew from the one it parsed (vobject keeps one tzinfo per TZID),
    so that one must cover the earliest date-time of the upload.
    """
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//followup-sync//bulk upload//EN"]
    if name:
        head.append(f"X-WR-CALNAME:{_text(name)}")
    if description:
        head.append(f"X-WR-CALDESC:{_text(description)}")
    zones: dict[str, list[str]] = {}
    body: list[str] = []
    for data in resources:
        for component, lines in _components(data):
            if component != "VTIMEZONE":
                body.extend(lines)
                continue
            tzid = next((li for li in lines if li.upper().startswith("TZID")), "")
            kept = zones.get(tzid)
            if kept is None or _first_onset(lines) < _first_onset(kept):
                zones[tzid] = lines
    lines = [*head, *(li for zone in zones.values() for li in zone), *body, "END:VCALENDAR"]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _first_onset(zone: list[str]) -> str:
    """The earliest DTSTART of a VTIMEZONE's observances (YYYYMMDDTHHMMSS sorts as text)."""
    return min(
        (li.split(":", 1)[1].strip() for li in zone if li.upper().startswith("DTSTART")),
        default="",
    )


class BulkWriting:
    """``upload_into_empty`` for ``DavCalendar`` (see ``sync.stores.base.BulkUpload``)."""

    def __init__(self, collection: Collection, listing: Listing) -> None:
        self.collection = collection
        self.listing = listing

    def upload_into_empty(self, resources: Sequence[bytes]) -> dict[str, str] | None:
        """PROPFIND Depth 1 (empty? ETag?), one PUT with If-Match, one listing; None if not made."""
        col = self.collection
        reply = col.request("PROPFIND", col.url, _PROPFIND, {"Depth": "1"})
        etag = name = description = None
        for resp in col.multistatus(reply, "PROPFIND collection"):
            if resp.href.rstrip("/") != col.path.rstrip("/"):
                log.info("bulk upload to %s: the calendar is not empty", col.path)
                return None
            if any(
                el is not None and (el.text or "").strip()
                for el in (resp.props.get(key) for key in _LOST)
            ):
                log.info("bulk upload to %s: it would lose the colour or time zone", col.path)
                return None
            etag = _prop(resp.props, tag(DAV, "getetag"))
            name = _prop(resp.props, tag(DAV, "displayname"))
            description = _prop(resp.props, tag(_CALDAV, "calendar-description"))
        if not etag:
            return None
        headers = {"If-Match": etag, "Content-Type": "text/calendar; charset=utf-8"}
        body = joined_calendar(resources, name, description)
        reply = col.request("PUT", col.url, body, headers)
        if reply.status == 412:
            log.info("bulk upload to %s refused: the calendar changed since it was read", col.path)
            return None
        if not 200 <= reply.status < 300:
            raise col.unexpected(reply, "PUT", col.path)
        return self.listing.list_etags()


def _prop(props: dict[str, object], key: str) -> str | None:
    el = props.get(key)
    text = getattr(el, "text", None)
    return str(text).strip() if text and str(text).strip() else None
