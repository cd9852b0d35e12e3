"""What the parts of a DavCalendar share: the collection's URL, its capabilities, its requests.

``Collection`` is the one object the listing, reading, writing and busy-time parts hold:
it turns hrefs into keys and URLs, sends requests through the calendar's ``Sender`` with
retries, reads multistatus answers, and refines a guessed server kind from what the
server shows of itself (headers, sync tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from lxml import etree

from sync.errors import NotFound, StoreError, TransportError
from sync.stores.base import RequestStats
from sync.stores.caldav.multistatus import DAV, PARSER, MsResponse, responses, tag
from sync.stores.caldav.transport import (
    Reply,
    RetryPolicy,
    Sender,
    checked,
    dav_request,
    with_retries,
)
from sync.stores.capabilities import (
    Capabilities,
    capabilities_for,
    detect_kind_from_token,
    detect_server_kind,
)

# Characters left unescaped when turning a normalised path back into a request URL.
PATH_SAFE = "/:@!$&'()*+,;=-._~"


class Collection:
    """One calendar collection as every part of the client sees it."""

    def __init__(
        self,
        calendar_url: str,
        *,
        sender: Sender,
        stats: RequestStats,
        server_kind: str | None,
        capability_overrides: Mapping[str, object] | None,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        max_sync_pages: int,
    ) -> None:
        if not calendar_url.endswith("/"):
            calendar_url += "/"
        parts = urlsplit(calendar_url)
        self.url = calendar_url
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.path = unquote(parts.path)
        self.sender = sender
        self.stats = stats
        self.retry = retry
        self.sleep = sleep
        self.max_sync_pages = max_sync_pages
        self.overrides = dict(capability_overrides or {})
        # A kind given by config is final; a guessed "generic" is refined from the first answers.
        self.kind_guessed = server_kind is None
        kind = server_kind or detect_server_kind(url=calendar_url)
        self.capabilities: Capabilities = capabilities_for(kind, self.overrides)

    # ----------------------------------------------------------------- hrefs

    def normalise_href(self, href: str) -> str:
        """The key form of an href: the unquoted URL path.

        A full URL or a relative name is taken as the server would send it (quoted); a
        path starting with "/" is taken as already normalised, so that a name containing
        a literal "%" survives a round trip.
        """
        if href.startswith("/"):
            return href
        return unquote(urlsplit(urljoin(self.url, href)).path)

    def from_server(self, href: str) -> str:
        """An href as the server sent it (quoted, maybe relative) in key form."""
        return unquote(urlsplit(urljoin(self.url, href)).path)

    def url_for(self, href: str) -> str:
        """The request URL for an href in key form (or as the server sent it)."""
        return self.origin + quote(self.normalise_href(href), safe=PATH_SAFE)

    # ----------------------------------------------------------------- the server's kind

    def refine_kind_from_headers(self, headers: Mapping[str, str]) -> None:
        if self.kind_guessed and self.capabilities.kind == "generic":
            kind = detect_server_kind(headers, self.url)
            if kind != "generic":
                self.capabilities = capabilities_for(kind, self.overrides)

    def refine_kind_from_token(self, token: str) -> None:
        if self.kind_guessed and self.capabilities.kind == "generic":
            kind = detect_kind_from_token(token)
            if kind is not None:
                self.capabilities = capabilities_for(kind, self.overrides)

    # ----------------------------------------------------------------- requests

    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Reply:
        """Send one request through the sender, retrying transient failures."""
        request = dav_request(method, url, body, headers)

        def once() -> Reply:
            reply = self.sender.send(request)
            self.refine_kind_from_headers(reply.headers)
            return checked(request, reply)

        return with_retries(once, self.retry, self.sleep)

    def unexpected(self, reply: Reply, method: str, key: str) -> StoreError:
        """The error for an answer no caller expected: TransportError for a 5xx."""
        if reply.status >= 500:
            return TransportError(
                f"{method} {key}: server error {reply.status}", href=key, status=reply.status
            )
        return StoreError(
            f"{method} {key}: unexpected answer {reply.status}", href=key, status=reply.status
        )

    def multistatus_root(self, reply: Reply, what: str) -> Any:
        """The DAV:multistatus element of an answer; NotFound for a 404 on the collection."""
        if reply.status == 404:
            raise NotFound(f"{what}: {self.path} does not exist", href=self.path, status=404)
        if reply.status not in (200, 207):
            raise self.unexpected(reply, what, self.path)
        try:
            root = etree.fromstring(reply.body, PARSER)
        except (etree.XMLSyntaxError, ValueError) as exc:
            raise TransportError(
                f"malformed XML in answer to {what} from {reply.url}: {exc}",
                href=self.path,
                status=reply.status,
            ) from exc
        if root.tag != tag(DAV, "multistatus"):
            raise TransportError(
                f"answer to {what} from {reply.url} is not a DAV:multistatus",
                href=self.path,
                status=reply.status,
            )
        return root

    def responses(self, root: Any, what: str) -> list[MsResponse]:
        return responses(root, what, path=self.path, from_server=self.from_server)

    def multistatus(self, reply: Reply, what: str) -> list[MsResponse]:
        return self.responses(self.multistatus_root(reply, what), what)

    def dav_property(
        self, url: str, name: str, what: str, *, gone: bool = False
    ) -> tuple[Reply, str | None]:
        """One DAV: property of one resource (PROPFIND Depth 0): the answer and the value.

        The value is None when the property is absent or empty, and, with ``gone``, when
        the resource does not exist (404/410) instead of raising NotFound.
        """
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<D:propfind xmlns:D="DAV:"><D:prop><D:{name}/></D:prop></D:propfind>'
        )
        reply = self.request("PROPFIND", url, body.encode(), {"Depth": "0"})
        if gone and reply.status in (404, 410):
            return reply, None
        for resp in self.multistatus(reply, what):
            el = resp.props.get(tag(DAV, name))
            if el is not None and (el.text or "").strip():
                return reply, str(el.text).strip()
        return reply, None

    def etag_of(self, key: str) -> str | None:
        """Current etag of one resource (PROPFIND Depth 0); None when it does not exist."""
        _, etag = self.dav_property(self.url_for(key), "getetag", f"PROPFIND {key}", gone=True)
        return etag
