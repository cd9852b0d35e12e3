"""Writing resources: PUT and DELETE with preconditions, and what a refusal meant.

Every write carries If-Match or If-None-Match: * (never If-Schedule-Tag-Match), so a
repeat after a lost answer turns into a 412 the caller already handles. The quirks of
servers that do not keep those preconditions are worked around here, each driven by a
``Capabilities`` flag.
"""

from __future__ import annotations

import logging

from sync.errors import (
    AlreadyExists,
    NotFound,
    Refused,
    StoreError,
    TransportError,
    UidInOtherCalendar,
    WrongEtag,
)
from sync.stores import zero_length
from sync.stores.caldav.collection import Collection
from sync.stores.caldav.multistatus import error_href, has_error
from sync.stores.caldav.reading import Reading, unfold_uids
from sync.stores.caldav.transport import Reply

# One logger for the whole client, as before the split: log lines keep their "logger" name.
log = logging.getLogger("sync.stores.caldav")

_ICS_CONTENT_TYPE = "text/calendar; charset=utf-8"


def too_large(action: str, key: str, data: bytes, status: int) -> Refused:
    """Refused for a resource the server will not store for its size (413, or Radicale's 412)."""
    size = f"{len(data):,} bytes"
    reason = (
        "larger than the server accepts"
        if status == 413
        else "refused although its condition held (412): most likely over the server's size "
        "limit (Radicale: max_resource_size, 10 MB by default)"
    )
    return Refused(f"{action} {key}: the resource ({size}) was {reason}", href=key, status=status)


def same_etag(a: str, b: str) -> bool:
    """ETags compared as RFC 9110 weak comparison does (``W/`` and the quotes aside)."""

    def bare(value: str) -> str:
        return value.strip().removeprefix("W/").strip('"')

    return bare(a) == bare(b)


class Writing:
    """create / update / delete of one resource, with the errors the engine re-plans on."""

    def __init__(self, collection: Collection, reading: Reading) -> None:
        self.collection = collection
        self.reading = reading

    def create(self, href: str, data: bytes) -> str:
        """PUT with If-None-Match: * and return the new etag; AlreadyExists if taken.

        Also AlreadyExists when the server refuses because the UID lives under another
        href (409/412 no-uid-conflict). Quirk workarounds, each driven by ``capabilities``:

        * ``if_none_match_honoured`` False (SOGo stores over an existing resource and
          answers 204): the href is checked first (PROPFIND), and a 204 instead of 201 to
          our PUT, i.e. a resource created in between and now replaced, is reported as
          AlreadyExists (and logged) rather than taken as our create.
        * ``same_uid_other_href`` "accepted" (DAViCal, generic: the server would store a
          second copy of a UID that lives under another href): the UID is looked up first
          (one calendar-query REPORT), so a create never makes a duplicate series. A
          window between the look-up and the PUT remains; reconciliation by UID covers it.
        """
        col = self.collection
        key = col.normalise_href(href)
        caps = col.capabilities
        if not caps.if_none_match_honoured and col.etag_of(key) is not None:
            raise AlreadyExists(f"{key} already exists", href=key, status=412)
        if caps.same_uid_other_href == "accepted":
            self._check_uid_free(key, data)
        headers = {"If-None-Match": "*", "Content-Type": _ICS_CONTENT_TYPE}
        reply = col.request("PUT", col.url_for(key), self._outgoing(data), headers)
        if 200 <= reply.status < 300:
            if not caps.if_none_match_honoured and reply.status != 201:
                log.warning(
                    "create %s: %s ignored If-None-Match and replaced a resource created "
                    "after our check (answered %d, not 201)", key, caps.kind, reply.status,
                )  # fmt: skip
                raise AlreadyExists(
                    f"create {key}: something was created there meanwhile and the server "
                    f"replaced it (answered {reply.status}, not 201)",
                    href=key,
                    status=reply.status,
                )
            return self._etag_after_write(key, reply)
        if reply.status == 412 and not has_error(reply.body, "no-uid-conflict"):
            raise self._create_refused(key, data)
        if reply.status in (409, 412):
            what = (
                "a resource with the same UID exists under another href"
                if has_error(reply.body, "no-uid-conflict")
                else "something already exists there"
            )
            raise AlreadyExists(f"create {key}: {what}", href=key, status=reply.status)
        if reply.status == 413:
            raise too_large("create", key, data, 413)
        if (
            reply.status == 403
            and caps.same_uid_other_href == "403"
            and has_error(reply.body, "unique-scheduling-object-resource")
        ):
            raise self._uid_taken(key, reply)
        raise col.unexpected(reply, "PUT", key)

    def _create_refused(self, key: str, data: bytes) -> StoreError:
        """What a 412 to ``If-None-Match: *`` meant: taken, or refused for what it is.

        Something at the href, or the UID under another href (Xandikos says 412 for
        that), is AlreadyExists. Neither (one PROPFIND, one calendar-query) means the
        condition held and the server refused the bytes: Radicale's answer to a
        resource over its ``max_resource_size``.
        """
        if self.collection.etag_of(key) is not None:
            return AlreadyExists(
                f"create {key}: something already exists there", href=key, status=412
            )
        try:
            self._check_uid_free(key, data)
        except AlreadyExists as exc:
            exc.status = 412
            return exc
        return too_large("create", key, data, 412)

    def update(self, href: str, data: bytes, etag: str) -> str:
        """PUT with If-Match (never If-Schedule-Tag-Match) and return the new etag.

        A 412 is told apart with one PROPFIND: NotFound if the resource is gone,
        WrongEtag if it changed. After a retried PUT whose first answer was lost, the
        caller sees WrongEtag for its own write; re-reading shows its own content.

        Quirk workaround (``capabilities.if_match_missing_refused`` False, SOGo: a PUT with
        If-Match to an href that is gone *creates* it, 201): a 201 means a client deleted
        the resource meanwhile and we just brought it back, so it is deleted again and
        NotFound raised, as on a server that refuses.
        """
        col = self.collection
        key = col.normalise_href(href)
        headers = {"If-Match": etag, "Content-Type": _ICS_CONTENT_TYPE}
        reply = col.request("PUT", col.url_for(key), self._outgoing(data), headers)
        if reply.status == 201 and not col.capabilities.if_match_missing_refused:
            log.warning(
                "update %s: %s created the resource although If-Match named an etag "
                "(it was deleted meanwhile); deleting it again", key, col.capabilities.kind,
            )  # fmt: skip
            col.request("DELETE", col.url_for(key), None, {})
            raise NotFound(f"update {key}: gone (deleted meanwhile)", href=key, status=201)
        if 200 <= reply.status < 300:
            return self._etag_after_write(key, reply)
        if reply.status == 404:
            raise NotFound(f"update {key}: gone", href=key, status=404)
        if reply.status == 412:
            raise self._precondition_failed("update", key, sent=etag, data=data)
        if reply.status == 409 and has_error(reply.body, "no-uid-conflict"):
            raise AlreadyExists(
                f"update {key}: the new UID exists under another href", href=key, status=409
            )
        if reply.status == 413:
            raise too_large("update", key, data, 413)
        raise col.unexpected(reply, "PUT", key)

    def delete(self, href: str, etag: str) -> None:
        """DELETE with If-Match; WrongEtag if it changed meanwhile, NotFound if already gone.

        Quirk workaround (``capabilities.if_match_honoured_on_delete`` False, SOGo deletes
        whatever If-Match says): the current etag is read first (one PROPFIND) and compared,
        so a client's newer edit is not deleted unseen. A window of one round trip remains.
        """
        col = self.collection
        key = col.normalise_href(href)
        if not col.capabilities.if_match_honoured_on_delete:
            current = col.etag_of(key)
            if current is None:
                raise NotFound(f"delete {key}: already gone", href=key, status=404)
            if current != etag:
                raise WrongEtag(f"delete {key}: changed on the server", href=key, status=412)
        reply = col.request("DELETE", col.url_for(key), None, {"If-Match": etag})
        if 200 <= reply.status < 300:
            return
        if reply.status in (404, 410):
            raise NotFound(f"delete {key}: already gone", href=key, status=reply.status)
        if reply.status == 412:
            raise self._precondition_failed("delete", key)
        raise col.unexpected(reply, "DELETE", key)

    # ----------------------------------------------------------------- helpers

    def _check_uid_free(self, key: str, data: bytes) -> None:
        """AlreadyExists when a UID of ``data`` already lives under another href."""
        text = data.upper()
        components = tuple(c for c in ("VEVENT", "VTODO") if b"BEGIN:" + c.encode() in text)
        for uid in sorted(unfold_uids(data)):
            found = self.reading.find_by_uid(uid, components or ("VEVENT", "VTODO"))
            if found is not None and found.href != key:
                raise AlreadyExists(
                    f"create {key}: UID {uid!r} already lives at {found.href}",
                    href=found.href,
                    status=409,
                )

    def _outgoing(self, data: bytes) -> bytes:
        """What goes into a PUT: zero-length events lengthened where the server refuses them.

        Quirk workaround (``capabilities.zero_length_events`` False, Cyrus): see
        sync.stores.zero_length; ``Reading.incoming`` undoes it on every read.
        """
        caps = self.collection.capabilities
        return data if caps.zero_length_events else zero_length.lengthen(data)

    def _uid_taken(self, key: str, reply: Reply) -> StoreError:
        """What a 403 unique-scheduling-object-resource to our create means (RFC 6638 3.2.4.1).

        Quirk workaround (``capabilities.same_uid_other_href`` "403", Cyrus): the server
        keeps a UID once per *user* and refuses a second one with 403, naming the href that
        holds it. In this calendar that is AlreadyExists, which the sync re-plans against
        the resource found there (no duplicate, nothing overwritten). In another calendar
        of the same user nothing here can resolve it: UidInOtherCalendar says where it is,
        and the item is tried again next pass (it goes through once the other calendar
        lets go of the UID, e.g. when its own account's pass removes it).
        """
        col = self.collection
        holder = error_href(reply.body, "unique-scheduling-object-resource")
        where = col.from_server(holder) if holder else None
        if where is None or where.rsplit("/", 1)[0] + "/" == col.path:
            return AlreadyExists(
                f"create {key}: the UID already lives at {where or 'another href'}",
                href=where or key,
                status=403,
            )
        return UidInOtherCalendar(
            f"create {key}: the server keeps each UID once per user, and this one already "
            f"lives in another calendar, at {where}; it is written here once it is gone there",
            href=where,
            status=403,
        )

    def _etag_after_write(self, key: str, reply: Reply) -> str:
        """The etag to record for what we just wrote; "" when the server stored something else.

        A server that changes what it stores answers without an ETag (RFC 4791 §5.3.4):
        DAViCal does when it schedules (RFC 6638), adding SCHEDULE-STATUS and setting
        the attendees back to NEEDS-ACTION when the organizer moved the event. Recording
        "" makes the next pass read the resource again (its listed ETag differs), so
        what the server wrote comes back to the CRM like any other server-side change.
        """
        etag = reply.headers.get("etag", "").strip()
        if not etag:
            return ""
        if not etag.startswith("W/") and self.collection.capabilities.etag_on_put:
            return etag
        fetched = self.collection.etag_of(key)
        if fetched is None:
            raise TransportError(
                f"{key} was written but the server reports no etag for it",
                href=key,
                status=reply.status,
            )
        return fetched

    def _precondition_failed(
        self, action: str, key: str, *, sent: str | None = None, data: bytes | None = None
    ) -> StoreError:
        """NotFound if gone, WrongEtag if changed; Refused if our etag (``sent``) still holds."""
        current = self.collection.etag_of(key)
        if current is None:
            return NotFound(f"{action} {key}: gone", href=key, status=412)
        if sent is not None and data is not None and same_etag(current, sent):
            return too_large(action, key, data, 412)
        return WrongEtag(f"{action} {key}: changed on the server", href=key, status=412)
