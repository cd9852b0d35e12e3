"""Reading resources: calendar-multiget in batches, calendar-query by UID."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote
from xml.sax.saxutils import escape

from sync.stores import zero_length
from sync.stores.base import FetchError, Resource
from sync.stores.caldav.collection import PATH_SAFE, Collection
from sync.stores.caldav.multistatus import CALDAV, DAV, tag

# One logger for the whole client, as before the split: log lines keep their "logger" name.
log = logging.getLogger("sync.stores.caldav")


def unfold_uids(data: bytes) -> set[str]:
    """UID values of an iCalendar text; a text-match is a substring match, so recheck exactly."""
    text = data.decode("utf-8", errors="replace")
    text = re.sub(r"\r?\n[ \t]", "", text)
    uids: set[str] = set()
    for line in text.splitlines():
        if line[:3].upper() != "UID" or len(line) < 4 or line[3] not in ":;":
            continue
        # The value starts after the first colon outside a quoted parameter value.
        in_quotes = False
        for i, ch in enumerate(line):
            if ch == '"':
                in_quotes = not in_quotes
            elif ch == ":" and not in_quotes:
                uids.add(line[i + 1 :])
                break
    return uids


class Reading:
    """Resources by href (multiget) and by UID (calendar-query)."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection

    def incoming(self, data: bytes) -> bytes:
        """What a read returns: zero-length events restored where ``outgoing`` lengthened them.

        Quirk workaround (``capabilities.zero_length_events`` False, Cyrus): see
        sync.stores.zero_length.
        """
        caps = self.collection.capabilities
        return data if caps.zero_length_events else zero_length.shorten(data)

    def get_multi(
        self, hrefs: Iterable[str], batch_size: int = 50
    ) -> Iterator[Resource | FetchError]:
        """calendar-multiget in batches, one REPORT per batch (never one GET per object)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        col = self.collection
        wanted = list(dict.fromkeys(col.normalise_href(h) for h in hrefs))
        for start in range(0, len(wanted), batch_size):
            batch = wanted[start : start + batch_size]
            label = (
                f"calendar-multiget batch {start // batch_size + 1} "
                f"({len(batch)} hrefs, {batch[0]} .. {batch[-1]})"
            )
            href_xml = "".join(
                f"<D:href>{escape(quote(h, safe=PATH_SAFE))}</D:href>" for h in batch
            )
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<C:calendar-multiget xmlns:D="DAV:" xmlns:C="{CALDAV}">'
                "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
                f"{href_xml}</C:calendar-multiget>"
            )
            reply = col.request("REPORT", col.url, body.encode(), {"Depth": "1"})
            if reply.status == 404 and not col.capabilities.multiget_reports_missing_href:
                yield from self._multiget_one_by_one(batch, label)
                continue
            responses = col.multistatus(reply, label)
            seen: set[str] = set()
            for resp in responses:
                if resp.href not in batch or resp.href in seen:
                    continue
                seen.add(resp.href)
                data_el = resp.props.get(tag(CALDAV, "calendar-data"))
                etag_el = resp.props.get(tag(DAV, "getetag"))
                if data_el is not None and resp.status in (None, 200):
                    yield Resource(
                        href=resp.href,
                        etag=str(etag_el.text or "").strip() if etag_el is not None else "",
                        data=self.incoming(str(data_el.text or "").encode("utf-8")),
                    )
                else:
                    status = resp.status or resp.prop_status or 0
                    yield FetchError(resp.href, status, f"{label}: server answered {status}")
            for href in batch:
                if href not in seen:
                    yield FetchError(href, 0, f"{label}: missing from the server's answer")

    def _multiget_one_by_one(self, batch: list[str], label: str) -> Iterator[Resource | FetchError]:
        """A batch answered 404 as a whole: ask for each href alone, so only the gone ones fail.

        Quirk workaround (``capabilities.multiget_reports_missing_href`` False, SabreDAV
        1.8): one href that no longer exists (a client deleted it after our listing) makes
        the server answer the whole calendar-multiget 404 "Calendar object not found",
        which would otherwise read as "this calendar does not exist". Costs one REPORT per
        href of that batch, only when something in it is gone.
        """
        if len(batch) == 1:
            yield FetchError(batch[0], 404, f"{label}: server answered 404")
            return
        log.info("%s: answered 404 as a whole; fetching its %d hrefs one by one", label, len(batch))
        for href in batch:
            yield from self.get_multi([href], batch_size=1)

    def find_by_uid(
        self, uid: str, components: tuple[str, ...] = ("VEVENT", "VTODO")
    ) -> Resource | None:
        """The resource holding ``uid``: one calendar-query REPORT per component type."""
        col = self.collection
        for comp in components:
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}">'
                "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
                '<C:filter><C:comp-filter name="VCALENDAR">'
                f'<C:comp-filter name="{comp}"><C:prop-filter name="UID">'
                f'<C:text-match collation="i;octet">{escape(uid)}</C:text-match>'
                "</C:prop-filter></C:comp-filter></C:comp-filter></C:filter>"
                "</C:calendar-query>"
            )
            reply = col.request("REPORT", col.url, body.encode(), {"Depth": "1"})
            for resp in col.multistatus(reply, f"calendar-query UID={uid!r}"):
                data_el = resp.props.get(tag(CALDAV, "calendar-data"))
                if data_el is None:
                    continue
                data = str(data_el.text or "").encode("utf-8")
                if uid not in unfold_uids(data):
                    continue
                etag_el = resp.props.get(tag(DAV, "getetag"))
                etag = str(etag_el.text or "").strip() if etag_el is not None else ""
                return Resource(href=resp.href, etag=etag, data=self.incoming(data))
        return None
