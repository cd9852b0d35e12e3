"""Listing a collection: sync-collection (RFC 6578), PROPFIND getetag, sync token, mtime."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from sync.errors import InvalidSyncToken, StoreError, SyncCollectionUnsupported, TransportError
from sync.stores.base import Delta, LastModified
from sync.stores.caldav.collection import Collection
from sync.stores.caldav.multistatus import DAV, SABRE_1_VERSION, has_error, tag
from sync.stores.caldav.transport import Reply
from sync.stores.capabilities import capabilities_for


def http_date(text: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110 5.6.7) as an aware datetime; None if absent or unreadable."""
    if not text or not text.strip():
        return None
    try:
        value = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Listing:
    """What is in the collection and what changed: the requests behind a pass's first step."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection

    def sync_token(self) -> str | None:
        """The collection's current DAV:sync-token, or None if the server has none."""
        col = self.collection
        _, token = col.dav_property(col.url, "sync-token", "PROPFIND sync-token")
        if token is not None:
            col.refine_kind_from_token(token)
        return token

    def last_modified(self) -> LastModified | None:
        """The collection's DAV:getlastmodified and the server's Date header for it."""
        col = self.collection
        reply, text = col.dav_property(col.url, "getlastmodified", "PROPFIND getlastmodified")
        value = http_date(text)
        server_time = http_date(reply.headers.get("date"))
        if value is None or server_time is None:
            return None
        return LastModified(value, server_time)

    def changes_since(self, token: str | None) -> Delta:
        """sync-collection, level 1, etags only, following truncated (507) answers."""
        col = self.collection
        if not col.capabilities.sync_token:
            raise StoreError(
                f"{col.capabilities.kind} has no sync-collection; use list_etags()",
                href=col.path,
            )
        changed: dict[str, str] = {}
        deleted: set[str] = set()
        current = token
        for _ in range(col.max_sync_pages):
            token_xml = (
                f"<D:sync-token>{escape(current)}</D:sync-token>"
                if current
                else ("<D:sync-token/>")
            )
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<D:sync-collection xmlns:D="DAV:">{token_xml}'
                "<D:sync-level>1</D:sync-level>"
                "<D:prop><D:getetag/></D:prop></D:sync-collection>"
            )
            reply = col.request("REPORT", col.url, body.encode(), {"Depth": "0"})
            if reply.status == 501 or (
                reply.status == 403 and has_error(reply.body, "supported-report")
            ):
                raise self._no_sync_collection(reply)
            if (
                reply.status in (403, 409, 412)
                and current is not None
                and (reply.status == 412 or has_error(reply.body, "valid-sync-token"))
            ):
                raise InvalidSyncToken(
                    f"{col.path}: server rejected sync token {current!r}",
                    href=col.path,
                    status=reply.status,
                )
            root = col.multistatus_root(reply, "sync-collection")
            truncated = False
            for resp in col.responses(root, "sync-collection"):
                if resp.href == col.path or resp.href.rstrip("/") == col.path.rstrip("/"):
                    if resp.status == 507:
                        truncated = True
                    continue
                if resp.status == 404:
                    deleted.add(resp.href)
                    changed.pop(resp.href, None)
                    continue
                etag_el = resp.props.get(tag(DAV, "getetag"))
                if resp.status not in (None, 200) and etag_el is None:
                    continue
                changed[resp.href] = str(etag_el.text or "").strip() if etag_el is not None else ""
                deleted.discard(resp.href)
            token_el = root.find(tag(DAV, "sync-token"))
            new_token = (token_el.text or "").strip() if token_el is not None else ""
            if not new_token:
                raise TransportError(
                    f"sync-collection answer for {col.path} carries no sync-token",
                    href=col.path,
                    status=reply.status,
                )
            col.refine_kind_from_token(new_token)
            current = new_token
            if not truncated:
                return Delta(changed=changed, deleted=frozenset(deleted), token=new_token)
        raise TransportError(
            f"{col.path}: sync-collection still truncated after {col.max_sync_pages} pages",
            href=col.path,
        )

    def _no_sync_collection(self, reply: Reply) -> SyncCollectionUnsupported:
        """Learn from a refused sync-collection that this server has none (SabreDAV 1.8).

        The capabilities say so from now on (no further REPORT is tried on this calendar);
        an unconfigured kind becomes "sabredav" when the refusal names SabreDAV 1.x, the
        only place that version shows itself outside an OPTIONS answer.
        """
        col = self.collection
        guessed = col.kind_guessed and col.capabilities.kind == "generic"
        if guessed and SABRE_1_VERSION.search(reply.body):
            col.capabilities = capabilities_for("sabredav", col.overrides)
        col.capabilities = col.capabilities.replace(sync_token=False)
        return SyncCollectionUnsupported(
            f"{col.path}: the server has no sync-collection REPORT (answered {reply.status})",
            href=col.path,
            status=reply.status,
        )

    def list_etags(self) -> dict[str, str]:
        """href -> etag of every calendar object resource: one PROPFIND Depth 1."""
        col = self.collection
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:resourcetype/></D:prop>'
            "</D:propfind>"
        )
        reply = col.request("PROPFIND", col.url, body.encode(), {"Depth": "1"})
        etags: dict[str, str] = {}
        for resp in col.multistatus(reply, "PROPFIND getetag"):
            if resp.href.rstrip("/") == col.path.rstrip("/"):
                continue
            rtype = resp.props.get(tag(DAV, "resourcetype"))
            if rtype is not None and rtype.find(tag(DAV, "collection")) is not None:
                continue
            etag_el = resp.props.get(tag(DAV, "getetag"))
            if etag_el is not None and (etag_el.text or "").strip():
                etags[resp.href] = str(etag_el.text).strip()
        return etags
