"""The CalDAV side of the sync worker: one calendar collection, spoken to with explicit requests.

python-caldav provides the HTTP session, authentication and discovery; the requests the
sync path depends on (sync-collection, PROPFIND getetag, calendar-multiget, conditional
PUT/DELETE, calendar-query by UID) are built here by hand, because caldav's high-level
calls add requests we cannot afford or control: ``.sync()`` does one GET per changed
object, ``save()`` bumps SEQUENCE and switches to If-Schedule-Tag-Match when the server
sends a Schedule-Tag, and its sync fallback invents a token instead of failing.

Rules this module keeps so callers can rely on them:

* Every HTTP request, including caldav's own discovery requests, is counted in ``stats``.
* hrefs are returned as the unquoted URL path (``/alice/cal/a b.ics``), whatever quoting the
  server used, so they can be used as keys. Methods accept that form back, or a full URL.
* Retrying happens here and only for requests that are safe to repeat: PROPFIND/REPORT, and
  PUT/DELETE because ours always carry If-Match or If-None-Match (a repeat after a lost
  answer turns into a 412 the caller already handles).
* Failures are the exceptions of ``sync.errors``; caldav and niquests exceptions never leak.
* Answers are untrusted: bodies are read streaming and refused beyond ``max_response_bytes``
  (default 20 MB), and the XML parser expands no entities.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import quote, unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

import tenacity
from caldav import __version__ as caldav_version
from caldav.collection import Calendar, Principal
from caldav.davclient import DAVClient
from caldav.lib import error as caldav_error
from caldav.lib.http_sync import requests as http
from lxml import etree

from sync.errors import (
    AlreadyExists,
    InvalidSyncToken,
    NotFound,
    Refused,
    StoreError,
    SyncCollectionUnsupported,
    TransportError,
    UidInOtherCalendar,
    WrongEtag,
    network_failure,
)
from sync.stores import zero_length
from sync.stores.capabilities import (
    Capabilities,
    capabilities_for,
    detect_kind_from_token,
    detect_server_kind,
)
from sync.stores.tls_probe import server_requests_client_certificate

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BusyPeriod",
    "DavCalendar",
    "Delta",
    "FetchError",
    "LastModified",
    "RequestStats",
    "Resource",
    "ResponseTooLarge",
    "RetryPolicy",
    "Transport",
    "describe_transport_failure",
]

log = logging.getLogger(__name__)

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
_XML_HEADERS = {"Content-Type": "application/xml; charset=utf-8"}
_ICS_CONTENT_TYPE = "text/calendar; charset=utf-8"
_USER_AGENT = f"followup-sync (python-caldav {caldav_version})"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The largest answer body read into memory; a multiget batch of 50 ordinary series is < 1 MB.
DEFAULT_MAX_RESPONSE_BYTES = 20 * 1024 * 1024
_CHUNK = 64 * 1024
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Characters left unescaped when turning a normalised path back into a request URL.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# No entity expansion, no network, no huge text nodes: answers are untrusted input.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


# --------------------------------------------------------------------------- public data


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
class HomeCalendar:
    """One calendar collection in the owner's calendar home, as listed for busy time."""

    url: str
    name: str  # the last path segment
    display_name: str | None
    #: Holds events and is not marked transparent (RFC 6638 schedule-calendar-transp):
    #: its events make the owner busy.
    holds_busy_time: bool


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
class BusyPeriod:
    """A stretch of busy time in a calendar, in UTC.

    ``summary`` and ``uid`` are None when the server answered with free-busy only (RFC 4791
    7.10 carries neither), so a caller can still say *that* the time is taken.
    """

    start: datetime
    end: datetime
    summary: str | None = None
    uid: str | None = None


@dataclass(frozen=True)
class LastModified:
    """A collection's DAV:getlastmodified, and the server's clock when it was read."""

    value: datetime
    server_time: datetime


@dataclass(frozen=True)
class Transport:
    """How requests reach the server, beyond the URL: sign-in, TLS trust, client certificate, proxy.

    ``verify`` is niquests' ``verify``: True (the system's CAs), False, the path of a CA
    bundle, or ``"sha256_<hex>"`` to accept exactly one certificate (pinning). ``auth`` is a
    niquests auth object; None means Basic from the username and password, as before.
    ``proxy`` None leaves the standard proxy environment variables in charge.
    """

    auth: Any = None
    verify: bool | str = True
    cert: tuple[str, str] | str | None = None
    proxy: str | None = None

    @property
    def proxies(self) -> dict[str, str] | None:
        return {"http": self.proxy, "https": self.proxy} if self.proxy else None


def _http_date(text: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110 5.6.7) as an aware datetime; None if absent or unreadable."""
    if not text or not text.strip():
        return None
    try:
        value = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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

    def copy(self) -> RequestStats:
        return RequestStats(
            self.requests, self.bytes_sent, self.bytes_received, dict(self.by_method), self.seconds
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
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying transient failures; tests pass tiny values to stay fast.

    ``attempts`` counts the first try. Waits grow from ``backoff_initial`` doubling up to
    ``backoff_max``; a Retry-After on 429/503 is honoured up to ``retry_after_max``.
    """

    attempts: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 30.0


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    url: str


class ResponseTooLarge(TransportError):
    """The server's answer exceeded ``max_response_bytes``; repeating it would not help."""


class _Retryable(TransportError):
    """A transient failure; carries the server's Retry-After if it sent one."""

    def __init__(
        self,
        message: str,
        *,
        href: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, href=href, status=status)
        self.retry_after = retry_after


@dataclass
class _MsResponse:
    """One DAV:response of a multistatus, reduced to what we read."""

    href: str
    status: int | None  # response-level status (deletions, 404s, truncation)
    props: dict[str, Any]  # tag -> element, from 200 propstats only
    prop_status: int | None  # first non-200 propstat status, if any
    element: Any


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _status_code(text: str | None, where: str) -> int:
    """'HTTP/1.1 404 Not Found' -> 404."""
    parts = (text or "").split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    raise TransportError(f"unreadable DAV:status {text!r} in {where}")


def _too_large(action: str, key: str, data: bytes, status: int) -> Refused:
    size = f"{len(data):,} bytes"
    reason = (
        "larger than the server accepts"
        if status == 413
        else "refused although its condition held (412): most likely over the server's size "
        "limit (Radicale: max_resource_size, 10 MB by default)"
    )
    return Refused(f"{action} {key}: the resource ({size}) was {reason}", href=key, status=status)


def _same_etag(a: str, b: str) -> bool:
    """ETags compared as RFC 9110 weak comparison does (``W/`` and the quotes aside)."""

    def bare(value: str) -> str:
        return value.strip().removeprefix("W/").strip('"')

    return bare(a) == bare(b)


def _has_error(body: bytes, name: str) -> bool:
    """True when a DAV:error body names the given precondition (valid-sync-token, ...)."""
    if not body:
        return False
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        return name.encode() in body
    return any(isinstance(el.tag, str) and etree.QName(el).localname == name for el in root.iter())


#: How SabreDAV 1.x names itself in an error body (<s:sabredav-version>1.8.12</...>).
_SABRE_1_VERSION = re.compile(rb"sabredav-version>\s*1\.")


def _error_href(body: bytes, name: str) -> str | None:
    """The DAV:href inside a DAV:error body's ``name`` precondition element, if any."""
    try:
        root = etree.fromstring(body, _PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == name:
            href = el.find(_tag(DAV, "href"))
            if href is not None and (href.text or "").strip():
                return str(href.text).strip()
    return None


def _last_segment(url: str) -> str:
    """The calendar id in a collection URL: its last path segment, unquoted."""
    return unquote(urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]


def _unfold_uids(data: bytes) -> set[str]:
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


# --------------------------------------------------------------------------- the calendar


class DavCalendar:
    """One CalDAV calendar collection. Build it with ``connect`` or ``discover``."""

    url: str
    capabilities: Capabilities
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
    ) -> None:
        """Prefer ``connect``/``discover``; this takes an already-counting caldav client."""
        if not calendar_url.endswith("/"):
            calendar_url += "/"
        parts = urlsplit(calendar_url)
        self.url = calendar_url
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.path = unquote(parts.path)
        self.stats = stats
        self._client = client
        self._session = client.session
        self._timeout = timeout
        self._transport = transport or Transport(verify=verify_tls)
        self._verify = self._transport.verify
        self._retry = retry or RetryPolicy()
        self._max_sync_pages = max_sync_pages
        self._sleep = sleep
        self._max_response_bytes = max_response_bytes
        if not verify_tls or self._verify is False:
            log.warning(
                "TLS certificate verification is OFF for %s (verify_tls = false): "
                "anyone on the network path can read and change this calendar",
                self._origin,
            )
        self._overrides = dict(capability_overrides or {})
        # A kind given by config is final; a guessed "generic" is refined from the first answers.
        self._kind_guessed = server_kind is None
        kind = server_kind or detect_server_kind(url=calendar_url)
        self.capabilities = capabilities_for(kind, self._overrides)

    # ----------------------------------------------------------------- construction

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
    ) -> DavCalendar:
        """A calendar whose URL is known: no request is sent until a method is called."""
        stats = RequestStats()
        transport = transport or Transport(verify=verify_tls)
        client = _make_client(calendar_url, username, password, timeout, transport, stats)
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
        client = _make_client(base_url, username, password, timeout, transport, stats)
        try:
            principal = client.get_principal()
            # A sync client returns plain values; caldav's hints also allow coroutines.
            calendars = cast("list[Calendar]", principal.get_calendars())
            # Ids first: they need no request. Display names are cached from the listing.
            found = next((c for c in calendars if _last_segment(str(c.url)) == calendar), None)
            if found is None:
                found = next((c for c in calendars if c.get_display_name() == calendar), None)
            if found is None:
                if not create:
                    client.close()
                    raise NotFound(f"no calendar {calendar!r} under {base_url}", href=base_url)
                cal_id = calendar if _SAFE_NAME.fullmatch(calendar) else None
                found = cast("Calendar", principal.make_calendar(name=calendar, cal_id=cal_id))
            calendar_url = str(found.url)
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

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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

    def _from_server(self, href: str) -> str:
        return unquote(urlsplit(urljoin(self.url, href)).path)

    def _url_for(self, href: str) -> str:
        return self._origin + quote(self.normalise_href(href), safe=_PATH_SAFE)

    def href_for_uid(self, uid: str) -> str:
        """Where a new resource for ``uid`` goes: the UID itself when it is a safe file name.

        Anything else (slashes, spaces, non-ASCII, very long, leading dot) is replaced by
        its SHA-1, so the name is valid on every server's storage and needs no quoting.
        find_by_uid, not this function, is the way back from a UID to an href.
        """
        name = uid if _SAFE_NAME.fullmatch(uid) else hashlib.sha1(uid.encode()).hexdigest()
        return f"{self.path}{name}.ics"

    # ----------------------------------------------------------------- reading

    def sync_token(self) -> str | None:
        """The collection's current DAV:sync-token, or None if the server has none."""
        _, token = self._dav_property(self.url, "sync-token", "PROPFIND sync-token")
        if token is not None:
            self._refine_kind_from_token(token)
        return token

    def last_modified(self) -> LastModified | None:
        """The collection's DAV:getlastmodified and the server's Date header for it.

        One PROPFIND Depth 0. None when the server gives either one no usable value (an
        answer that is no multistatus raises, as for any request); what the pair is worth
        depends on the server (``Capabilities.lastmodified_covers_members``).
        """
        reply, text = self._dav_property(self.url, "getlastmodified", "PROPFIND getlastmodified")
        value = _http_date(text)
        server_time = _http_date(reply.headers.get("date"))
        if value is None or server_time is None:
            return None
        return LastModified(value, server_time)

    def changes_since(self, token: str | None) -> Delta:
        """sync-collection (RFC 6578), level 1, etags only; None = initial full enumeration.

        One request when nothing changed. Truncated answers (507 on the collection) are
        followed with the intermediate token. An invalid token raises InvalidSyncToken:
        there is no silent fallback, the caller does the full listing and mark-and-sweep.
        On servers whose ``capabilities.sync_token_trustworthy`` is False a stale token is
        answered with a full listing instead, which this method cannot tell apart.
        """
        if not self.capabilities.sync_token:
            raise StoreError(
                f"{self.capabilities.kind} has no sync-collection; use list_etags()",
                href=self.path,
            )
        changed: dict[str, str] = {}
        deleted: set[str] = set()
        current = token
        for _ in range(self._max_sync_pages):
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
            reply = self._request("REPORT", self.url, body.encode(), {"Depth": "0"})
            if reply.status == 501 or (
                reply.status == 403 and _has_error(reply.body, "supported-report")
            ):
                raise self._no_sync_collection(reply)
            if (
                reply.status in (403, 409, 412)
                and current is not None
                and (reply.status == 412 or _has_error(reply.body, "valid-sync-token"))
            ):
                raise InvalidSyncToken(
                    f"{self.path}: server rejected sync token {current!r}",
                    href=self.path,
                    status=reply.status,
                )
            root = self._multistatus_root(reply, "sync-collection")
            truncated = False
            for resp in self._responses(root, "sync-collection"):
                if resp.href == self.path or resp.href.rstrip("/") == self.path.rstrip("/"):
                    if resp.status == 507:
                        truncated = True
                    continue
                if resp.status == 404:
                    deleted.add(resp.href)
                    changed.pop(resp.href, None)
                    continue
                etag_el = resp.props.get(_tag(DAV, "getetag"))
                if resp.status not in (None, 200) and etag_el is None:
                    continue
                changed[resp.href] = str(etag_el.text or "").strip() if etag_el is not None else ""
                deleted.discard(resp.href)
            token_el = root.find(_tag(DAV, "sync-token"))
            new_token = (token_el.text or "").strip() if token_el is not None else ""
            if not new_token:
                raise TransportError(
                    f"sync-collection answer for {self.path} carries no sync-token",
                    href=self.path,
                    status=reply.status,
                )
            self._refine_kind_from_token(new_token)
            current = new_token
            if not truncated:
                return Delta(changed=changed, deleted=frozenset(deleted), token=new_token)
        raise TransportError(
            f"{self.path}: sync-collection still truncated after {self._max_sync_pages} pages",
            href=self.path,
        )

    def _no_sync_collection(self, reply: _Reply) -> SyncCollectionUnsupported:
        """Learn from a refused sync-collection that this server has none (SabreDAV 1.8).

        The capabilities say so from now on (no further REPORT is tried on this calendar);
        an unconfigured kind becomes "sabredav" when the refusal names SabreDAV 1.x, the
        only place that version shows itself outside an OPTIONS answer.
        """
        guessed = self._kind_guessed and self.capabilities.kind == "generic"
        if guessed and _SABRE_1_VERSION.search(reply.body):
            self.capabilities = capabilities_for("sabredav", self._overrides)
        self.capabilities = self.capabilities.replace(sync_token=False)
        return SyncCollectionUnsupported(
            f"{self.path}: the server has no sync-collection REPORT (answered {reply.status})",
            href=self.path,
            status=reply.status,
        )

    def list_etags(self) -> dict[str, str]:
        """href -> etag of every calendar object resource: one PROPFIND Depth 1.

        This is the full listing for reconciliation and for servers whose tokens cannot
        be trusted; the collection itself and any sub-collection are left out.
        """
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:resourcetype/></D:prop>'
            "</D:propfind>"
        )
        reply = self._request("PROPFIND", self.url, body.encode(), {"Depth": "1"})
        etags: dict[str, str] = {}
        for resp in self._multistatus(reply, "PROPFIND getetag"):
            if resp.href.rstrip("/") == self.path.rstrip("/"):
                continue
            rtype = resp.props.get(_tag(DAV, "resourcetype"))
            if rtype is not None and rtype.find(_tag(DAV, "collection")) is not None:
                continue
            etag_el = resp.props.get(_tag(DAV, "getetag"))
            if etag_el is not None and (etag_el.text or "").strip():
                etags[resp.href] = str(etag_el.text).strip()
        return etags

    def get_multi(
        self, hrefs: Iterable[str], batch_size: int = 50
    ) -> Iterator[Resource | FetchError]:
        """calendar-multiget in batches, one REPORT per batch (never one GET per object).

        Missing hrefs come back as FetchError and do not stop the others; an unreadable
        answer raises TransportError naming the batch, since nothing in it can be trusted.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        wanted = list(dict.fromkeys(self.normalise_href(h) for h in hrefs))
        for start in range(0, len(wanted), batch_size):
            batch = wanted[start : start + batch_size]
            label = (
                f"calendar-multiget batch {start // batch_size + 1} "
                f"({len(batch)} hrefs, {batch[0]} .. {batch[-1]})"
            )
            href_xml = "".join(
                f"<D:href>{escape(quote(h, safe=_PATH_SAFE))}</D:href>" for h in batch
            )
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<C:calendar-multiget xmlns:D="DAV:" xmlns:C="{CALDAV}">'
                "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
                f"{href_xml}</C:calendar-multiget>"
            )
            reply = self._request("REPORT", self.url, body.encode(), {"Depth": "1"})
            if reply.status == 404 and not self.capabilities.multiget_reports_missing_href:
                yield from self._multiget_one_by_one(batch, label)
                continue
            responses = self._multistatus(reply, label)
            seen: set[str] = set()
            for resp in responses:
                if resp.href not in batch or resp.href in seen:
                    continue
                seen.add(resp.href)
                data_el = resp.props.get(_tag(CALDAV, "calendar-data"))
                etag_el = resp.props.get(_tag(DAV, "getetag"))
                if data_el is not None and resp.status in (None, 200):
                    yield Resource(
                        href=resp.href,
                        etag=str(etag_el.text or "").strip() if etag_el is not None else "",
                        data=self._incoming(str(data_el.text or "").encode("utf-8")),
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
        """The resource holding ``uid`` under whatever href it has (VEVENT first, then VTODO).

        Used after a crash between PUT and recording the href, and on servers where the
        same UID may exist under another name. One REPORT per component type asked for.
        """
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
            reply = self._request("REPORT", self.url, body.encode(), {"Depth": "1"})
            for resp in self._multistatus(reply, f"calendar-query UID={uid!r}"):
                data_el = resp.props.get(_tag(CALDAV, "calendar-data"))
                if data_el is None:
                    continue
                data = str(data_el.text or "").encode("utf-8")
                if uid not in _unfold_uids(data):
                    continue
                etag_el = resp.props.get(_tag(DAV, "getetag"))
                etag = str(etag_el.text or "").strip() if etag_el is not None else ""
                return Resource(href=resp.href, etag=etag, data=self._incoming(data))
        return None

    # ----------------------------------------------------------------- busy time

    def query_busy(self, start: datetime, end: datetime, *, zone: tzinfo = UTC) -> list[BusyPeriod]:
        """What makes the calendar's owner busy between ``start`` and ``end``: one REPORT.

        Where ``capabilities.free_busy_query`` holds, a free-busy-query (RFC 4791 7.10): the
        server expands recurrences itself and answers busy periods only, without summaries
        or UIDs. Elsewhere a time-range calendar-query returns the events themselves, which
        are expanded here with recurring-ical-events; transparent and cancelled ones do not
        make anyone busy. All-day and floating times are read in ``zone``. Periods come
        back in UTC, in start order.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("query_busy needs aware start and end times")
        lo, hi = start.astimezone(UTC), end.astimezone(UTC)
        if hi <= lo:
            return []
        stamp = "%Y%m%dT%H%M%SZ"
        time_range = f'<C:time-range start="{lo.strftime(stamp)}" end="{hi.strftime(stamp)}"/>'
        if self.capabilities.free_busy_query:
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<C:free-busy-query xmlns:C="{CALDAV}">{time_range}</C:free-busy-query>'
            )
            reply = self._request("REPORT", self.url, body.encode(), {"Depth": "1"})
            if reply.status != 200:
                raise self._unexpected(reply, "REPORT free-busy-query", self.path)
            return _free_busy_periods(reply.body, lo, hi)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f"{time_range}</C:comp-filter></C:comp-filter></C:filter>"
            "</C:calendar-query>"
        )
        reply = self._request("REPORT", self.url, body.encode(), {"Depth": "1"})
        periods: list[BusyPeriod] = []
        for resp in self._multistatus(reply, "calendar-query time-range"):
            data_el = resp.props.get(_tag(CALDAV, "calendar-data"))
            if data_el is None or not (data_el.text or "").strip():
                continue
            periods.extend(_event_periods(str(data_el.text).encode("utf-8"), lo, hi, zone))
        return sorted(periods, key=lambda p: (p.start, p.end))

    # ----------------------------------------------------------------- the calendar home

    def home_calendars(self) -> list[HomeCalendar]:
        """Every calendar collection in the owner's calendar home (this one included).

        Two PROPFINDs find the home (current-user-principal, then calendar-home-set; the
        parent collection where a server answers neither), one Depth 1 PROPFIND lists it.
        A calendar holds busy time unless its supported components leave out VEVENT or
        it says schedule-calendar-transp = transparent (RFC 6638 §9.1), as a birthdays or
        a subscribed holidays calendar may.
        """
        home = self._calendar_home()
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<D:propfind xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop>'
            "<D:resourcetype/><D:displayname/><C:supported-calendar-component-set/>"
            "<C:schedule-calendar-transp/></D:prop></D:propfind>"
        )
        reply = self._request("PROPFIND", home, body.encode(), {"Depth": "1"})
        found = []
        for resp in self._multistatus(reply, "PROPFIND calendar home"):
            kind = resp.props.get(_tag(DAV, "resourcetype"))
            if kind is None or kind.find(_tag(CALDAV, "calendar")) is None:
                continue
            components = resp.props.get(_tag(CALDAV, "supported-calendar-component-set"))
            events = components is None or any(
                str(c.get("name", "")).upper() == "VEVENT" for c in components
            )
            transp = resp.props.get(_tag(CALDAV, "schedule-calendar-transp"))
            transparent = (
                transp is not None and transp.find(_tag(CALDAV, "transparent")) is not None
            )
            name_el = resp.props.get(_tag(DAV, "displayname"))
            path = resp.href if resp.href.endswith("/") else resp.href + "/"
            found.append(
                HomeCalendar(
                    url=self._origin + quote(path, safe=_PATH_SAFE),
                    name=_last_segment(path),
                    display_name=(name_el.text or "").strip() or None
                    if name_el is not None
                    else None,
                    holds_busy_time=events and not transparent,
                )
            )
        return found

    def principal(self) -> Principal:
        """The caldav library's principal of this connection (asked once per connection).

        For questions about the account rather than this calendar, such as whether the
        server delivers invitations itself (``sync.stores.scheduling``). Raises what the
        caldav library raises.
        """
        return self._client.get_principal()

    def sibling(
        self, calendar_url: str, *, capability_overrides: Mapping[str, object] | None = None
    ) -> DavCalendar:
        """Another calendar of the same account, over this one's connection (do not close it)."""
        return DavCalendar(
            self._client,
            calendar_url,
            stats=self.stats,
            server_kind=self.capabilities.kind,
            capability_overrides={**self._overrides, **(capability_overrides or {})},
            timeout=self._timeout,
            verify_tls=self._verify is not False,
            retry=self._retry,
            max_response_bytes=self._max_response_bytes,
            transport=self._transport,
        )

    def _calendar_home(self) -> str:
        principal = self._href_property(self.url, DAV, "current-user-principal")
        if principal is not None:
            home = self._href_property(self._url_for(principal), CALDAV, "calendar-home-set")
            if home is not None:
                return self._url_for(home)
        return self._origin + quote(self.path.rstrip("/").rpartition("/")[0] + "/", safe=_PATH_SAFE)

    def _href_property(self, url: str, ns: str, name: str) -> str | None:
        """The DAV:href inside one property of ``url`` (PROPFIND Depth 0), or None."""
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<D:propfind xmlns:D="DAV:" xmlns:X="{ns}"><D:prop><X:{name}/></D:prop></D:propfind>'
        )
        reply = self._request("PROPFIND", url, body.encode(), {"Depth": "0"})
        if reply.status not in (200, 207):
            return None
        for resp in self._multistatus(reply, f"PROPFIND {name}"):
            el = resp.props.get(_tag(ns, name))
            href = el.find(_tag(DAV, "href")) if el is not None else None
            if href is not None and (href.text or "").strip():
                return self._from_server(str(href.text).strip())
        return None

    # ----------------------------------------------------------------- writing

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
        key = self.normalise_href(href)
        caps = self.capabilities
        if not caps.if_none_match_honoured and self._etag_of(key) is not None:
            raise AlreadyExists(f"{key} already exists", href=key, status=412)
        if caps.same_uid_other_href == "accepted":
            self._check_uid_free(key, data)
        headers = {"If-None-Match": "*", "Content-Type": _ICS_CONTENT_TYPE}
        reply = self._request("PUT", self._url_for(key), self._outgoing(data), headers)
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
        if reply.status == 412 and not _has_error(reply.body, "no-uid-conflict"):
            raise self._create_refused(key, data)
        if reply.status in (409, 412):
            what = (
                "a resource with the same UID exists under another href"
                if _has_error(reply.body, "no-uid-conflict")
                else "something already exists there"
            )
            raise AlreadyExists(f"create {key}: {what}", href=key, status=reply.status)
        if reply.status == 413:
            raise _too_large("create", key, data, 413)
        if (
            reply.status == 403
            and caps.same_uid_other_href == "403"
            and _has_error(reply.body, "unique-scheduling-object-resource")
        ):
            raise self._uid_taken(key, reply)
        raise self._unexpected(reply, "PUT", key)

    def _create_refused(self, key: str, data: bytes) -> StoreError:
        """What a 412 to ``If-None-Match: *`` meant: taken, or refused for what it is.

        Something at the href, or the UID under another href (Xandikos says 412 for
        that), is AlreadyExists. Neither (one PROPFIND, one calendar-query) means the
        condition held and the server refused the bytes: Radicale's answer to a
        resource over its ``max_resource_size``.
        """
        if self._etag_of(key) is not None:
            return AlreadyExists(
                f"create {key}: something already exists there", href=key, status=412
            )
        try:
            self._check_uid_free(key, data)
        except AlreadyExists as exc:
            exc.status = 412
            return exc
        return _too_large("create", key, data, 412)

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
        key = self.normalise_href(href)
        headers = {"If-Match": etag, "Content-Type": _ICS_CONTENT_TYPE}
        reply = self._request("PUT", self._url_for(key), self._outgoing(data), headers)
        if reply.status == 201 and not self.capabilities.if_match_missing_refused:
            log.warning(
                "update %s: %s created the resource although If-Match named an etag "
                "(it was deleted meanwhile); deleting it again", key, self.capabilities.kind,
            )  # fmt: skip
            self._request("DELETE", self._url_for(key), None, {})
            raise NotFound(f"update {key}: gone (deleted meanwhile)", href=key, status=201)
        if 200 <= reply.status < 300:
            return self._etag_after_write(key, reply)
        if reply.status == 404:
            raise NotFound(f"update {key}: gone", href=key, status=404)
        if reply.status == 412:
            raise self._precondition_failed("update", key, sent=etag, data=data)
        if reply.status == 409 and _has_error(reply.body, "no-uid-conflict"):
            raise AlreadyExists(
                f"update {key}: the new UID exists under another href", href=key, status=409
            )
        if reply.status == 413:
            raise _too_large("update", key, data, 413)
        raise self._unexpected(reply, "PUT", key)

    def delete(self, href: str, etag: str) -> None:
        """DELETE with If-Match; WrongEtag if it changed meanwhile, NotFound if already gone.

        Quirk workaround (``capabilities.if_match_honoured_on_delete`` False, SOGo deletes
        whatever If-Match says): the current etag is read first (one PROPFIND) and compared,
        so a client's newer edit is not deleted unseen. A window of one round trip remains.
        """
        key = self.normalise_href(href)
        if not self.capabilities.if_match_honoured_on_delete:
            current = self._etag_of(key)
            if current is None:
                raise NotFound(f"delete {key}: already gone", href=key, status=404)
            if current != etag:
                raise WrongEtag(f"delete {key}: changed on the server", href=key, status=412)
        reply = self._request("DELETE", self._url_for(key), None, {"If-Match": etag})
        if 200 <= reply.status < 300:
            return
        if reply.status in (404, 410):
            raise NotFound(f"delete {key}: already gone", href=key, status=reply.status)
        if reply.status == 412:
            raise self._precondition_failed("delete", key)
        raise self._unexpected(reply, "DELETE", key)

    # ----------------------------------------------------------------- helpers

    def _check_uid_free(self, key: str, data: bytes) -> None:
        """AlreadyExists when a UID of ``data`` already lives under another href."""
        text = data.upper()
        components = tuple(c for c in ("VEVENT", "VTODO") if b"BEGIN:" + c.encode() in text)
        for uid in sorted(_unfold_uids(data)):
            found = self.find_by_uid(uid, components or ("VEVENT", "VTODO"))
            if found is not None and found.href != key:
                raise AlreadyExists(
                    f"create {key}: UID {uid!r} already lives at {found.href}",
                    href=found.href,
                    status=409,
                )

    def _outgoing(self, data: bytes) -> bytes:
        """What goes into a PUT: zero-length events lengthened where the server refuses them.

        Quirk workaround (``capabilities.zero_length_events`` False, Cyrus): see
        sync.stores.zero_length; ``_incoming`` undoes it on every read.
        """
        return data if self.capabilities.zero_length_events else zero_length.lengthen(data)

    def _incoming(self, data: bytes) -> bytes:
        return data if self.capabilities.zero_length_events else zero_length.shorten(data)

    def _uid_taken(self, key: str, reply: _Reply) -> StoreError:
        """What a 403 unique-scheduling-object-resource to our create means (RFC 6638 3.2.4.1).

        Quirk workaround (``capabilities.same_uid_other_href`` "403", Cyrus): the server
        keeps a UID once per *user* and refuses a second one with 403, naming the href that
        holds it. In this calendar that is AlreadyExists, which the sync re-plans against
        the resource found there (no duplicate, nothing overwritten). In another calendar
        of the same user nothing here can resolve it: UidInOtherCalendar says where it is,
        and the item is tried again next pass (it goes through once the other calendar
        lets go of the UID, e.g. when its own account's pass removes it).
        """
        holder = _error_href(reply.body, "unique-scheduling-object-resource")
        where = self._from_server(holder) if holder else None
        if where is None or where.rsplit("/", 1)[0] + "/" == self.path:
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

    def _etag_after_write(self, key: str, reply: _Reply) -> str:
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
        if not etag.startswith("W/") and self.capabilities.etag_on_put:
            return etag
        fetched = self._etag_of(key)
        if fetched is None:
            raise TransportError(
                f"{key} was written but the server reports no etag for it",
                href=key,
                status=reply.status,
            )
        return fetched

    def _etag_of(self, key: str) -> str | None:
        """Current etag of one resource (PROPFIND Depth 0); None when it does not exist."""
        _, etag = self._dav_property(self._url_for(key), "getetag", f"PROPFIND {key}", gone=True)
        return etag

    def _dav_property(
        self, url: str, name: str, what: str, *, gone: bool = False
    ) -> tuple[_Reply, str | None]:
        """One DAV: property of one resource (PROPFIND Depth 0): the answer and the value.

        The value is None when the property is absent or empty, and, with ``gone``, when
        the resource does not exist (404/410) instead of raising NotFound.
        """
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<D:propfind xmlns:D="DAV:"><D:prop><D:{name}/></D:prop></D:propfind>'
        )
        reply = self._request("PROPFIND", url, body.encode(), {"Depth": "0"})
        if gone and reply.status in (404, 410):
            return reply, None
        for resp in self._multistatus(reply, what):
            el = resp.props.get(_tag(DAV, name))
            if el is not None and (el.text or "").strip():
                return reply, str(el.text).strip()
        return reply, None

    def _precondition_failed(
        self, action: str, key: str, *, sent: str | None = None, data: bytes | None = None
    ) -> StoreError:
        """NotFound if gone, WrongEtag if changed; Refused if our etag (``sent``) still holds."""
        current = self._etag_of(key)
        if current is None:
            return NotFound(f"{action} {key}: gone", href=key, status=412)
        if sent is not None and data is not None and _same_etag(current, sent):
            return _too_large(action, key, data, 412)
        return WrongEtag(f"{action} {key}: changed on the server", href=key, status=412)

    def _unexpected(self, reply: _Reply, method: str, key: str) -> StoreError:
        if reply.status >= 500:
            return TransportError(
                f"{method} {key}: server error {reply.status}", href=key, status=reply.status
            )
        return StoreError(
            f"{method} {key}: unexpected answer {reply.status}", href=key, status=reply.status
        )

    def _refine_kind_from_headers(self, headers: Mapping[str, str]) -> None:
        if self._kind_guessed and self.capabilities.kind == "generic":
            kind = detect_server_kind(headers, self.url)
            if kind != "generic":
                self.capabilities = capabilities_for(kind, self._overrides)

    def _refine_kind_from_token(self, token: str) -> None:
        if self._kind_guessed and self.capabilities.kind == "generic":
            kind = detect_kind_from_token(token)
            if kind is not None:
                self.capabilities = capabilities_for(kind, self._overrides)

    def _multistatus_root(self, reply: _Reply, what: str) -> Any:
        if reply.status == 404:
            raise NotFound(f"{what}: {self.path} does not exist", href=self.path, status=404)
        if reply.status not in (200, 207):
            raise self._unexpected(reply, what, self.path)
        try:
            root = etree.fromstring(reply.body, _PARSER)
        except (etree.XMLSyntaxError, ValueError) as exc:
            raise TransportError(
                f"malformed XML in answer to {what} from {reply.url}: {exc}",
                href=self.path,
                status=reply.status,
            ) from exc
        if root.tag != _tag(DAV, "multistatus"):
            raise TransportError(
                f"answer to {what} from {reply.url} is not a DAV:multistatus",
                href=self.path,
                status=reply.status,
            )
        return root

    def _multistatus(self, reply: _Reply, what: str) -> list[_MsResponse]:
        return self._responses(self._multistatus_root(reply, what), what)

    def _responses(self, root: Any, what: str) -> list[_MsResponse]:
        out: list[_MsResponse] = []
        for resp in root.iterchildren(_tag(DAV, "response")):
            href_els = resp.findall(_tag(DAV, "href"))
            if not href_els:
                raise TransportError(f"DAV:response without href in {what}", href=self.path)
            status_el = resp.find(_tag(DAV, "status"))
            status = _status_code(status_el.text, what) if status_el is not None else None
            props: dict[str, Any] = {}
            prop_status: int | None = None
            for propstat in resp.iterchildren(_tag(DAV, "propstat")):
                ps_el = propstat.find(_tag(DAV, "status"))
                ps = _status_code(ps_el.text if ps_el is not None else None, what)
                prop = propstat.find(_tag(DAV, "prop"))
                if ps == 200 and prop is not None:
                    for child in prop:
                        if isinstance(child.tag, str):
                            props[child.tag] = child
                elif prop_status is None:
                    prop_status = ps
            # A status response may list several hrefs (RFC 4918 14.24); expand them.
            for href_el in href_els:
                out.append(
                    _MsResponse(
                        href=self._from_server(str(href_el.text or "").strip()),
                        status=status,
                        props=props,
                        prop_status=prop_status,
                        element=resp,
                    )
                )
        return out

    # ----------------------------------------------------------------- HTTP

    def _request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> _Reply:
        """Send one request, retrying transient failures; every method we send is safe to repeat."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self._retry.attempts)),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._send_once(method, url, body, headers)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _wait(self, state: tenacity.RetryCallState) -> float:
        policy = self._retry
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, policy.retry_after_max)
        backoff = policy.backoff_initial * (2 ** (state.attempt_number - 1))
        return float(min(backoff, policy.backoff_max))

    def _send_once(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> _Reply:
        all_headers = {"User-Agent": _USER_AGENT}
        if body is not None and method in ("PROPFIND", "REPORT"):
            all_headers.update(_XML_HEADERS)
        all_headers.update(headers)
        href = unquote(urlsplit(url).path)
        status, resp, content = self._exchange(method, url, body, all_headers, href)
        renew = getattr(self._client.auth, "renew_after_401", None)
        if status == 401 and callable(renew) and renew():
            # An access token the server no longer takes (revoked, clock skew): one new
            # token, one repeat; a second 401 is a real refusal.
            status, resp, content = self._exchange(method, url, body, all_headers, href)
        resp_headers = {k.lower(): v for k, v in resp.headers.items()}
        log.debug("%s %s -> %s (%d bytes)", method, href, status, len(content))
        self._refine_kind_from_headers(resp_headers)
        if status in _RETRY_STATUSES:
            raise _Retryable(
                f"{method} {href}: server answered {status}",
                href=href,
                status=status,
                retry_after=_parse_retry_after(resp_headers.get("retry-after")),
            )
        if status >= 500:
            raise TransportError(
                f"{method} {href}: server answered {status}", href=href, status=status
            )
        if status == 401:
            raise StoreError(
                f"{method} {href}: authentication failed (401); check the account's sign-in "
                "(auth, username, password or token)",
                href=href,
                status=401,
            )
        return _Reply(status=status, headers=resp_headers, body=content, url=url)

    def _exchange(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], href: str
    ) -> tuple[int, Any, bytes]:
        """One HTTP exchange on the account's transport: status, response, body."""
        started = time.perf_counter()
        transport = self._transport
        try:
            resp = self._session.request(
                method,
                url,
                data=body,
                headers=dict(headers),
                auth=self._client.auth,
                timeout=self._timeout,
                verify=transport.verify,
                cert=transport.cert,
                proxies=transport.proxies,
                stream=True,  # read by _read_body, which stops at max_response_bytes
            )
            try:
                content = self._read_body(resp, method, href)
            finally:
                resp.close()
        except http.exceptions.SSLError as exc:
            # A certificate problem does not go away by asking again.
            raise TransportError(
                f"{method} {href}: {describe_transport_failure(exc, transport)}", href=href
            ) from exc
        except (http.exceptions.RequestException, OSError) as exc:
            reason = describe_transport_failure(exc, transport)
            raise _Retryable(
                f"{method} {href}: {type(exc).__name__}: {reason}",
                href=href,
            ) from exc
        finally:
            self.stats.seconds += time.perf_counter() - started
        self.stats.bytes_received += len(content)
        return int(resp.status_code or 0), resp, content

    def _read_body(self, resp: Any, method: str, href: str) -> bytes:
        """The body, refused (ResponseTooLarge) as soon as it passes ``max_response_bytes``."""
        limit = self._max_response_bytes
        declared = resp.headers.get("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > limit:
            raise ResponseTooLarge(
                f"{method} {href}: answer of {int(declared)} bytes exceeds "
                f"max_response_bytes ({limit})",
                href=href,
                status=int(resp.status_code or 0),
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_content(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(
                    f"{method} {href}: answer exceeds max_response_bytes ({limit})",
                    href=href,
                    status=int(resp.status_code or 0),
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _free_busy_periods(data: bytes, lo: datetime, hi: datetime) -> list[BusyPeriod]:
    """BUSY, BUSY-TENTATIVE and BUSY-UNAVAILABLE periods of a VFREEBUSY answer."""
    from icalendar import Calendar as ICalendar

    try:
        cal = ICalendar.from_ical(data)
    except ValueError as exc:
        raise TransportError(f"unreadable free-busy answer: {exc}") from exc
    periods: list[BusyPeriod] = []
    for component in cal.walk("VFREEBUSY"):
        lines = component.get("FREEBUSY")
        if lines is None:
            continue
        for line in lines if isinstance(lines, list) else [lines]:
            if str(line.params.get("FBTYPE", "BUSY")).upper() == "FREE":
                continue
            values = line.dts if hasattr(line, "dts") else [line]
            for value in values:
                period = value.dt if hasattr(value, "dt") else value
                if not isinstance(period, tuple):
                    continue
                begin, finish = period
                if isinstance(finish, timedelta):
                    finish = begin + finish
                begin, finish = _utc(begin, UTC), _utc(finish, UTC)
                if finish > lo and begin < hi:
                    periods.append(BusyPeriod(begin, finish))
    return sorted(periods, key=lambda p: (p.start, p.end))


def _event_periods(data: bytes, lo: datetime, hi: datetime, zone: tzinfo) -> list[BusyPeriod]:
    """The occurrences of one calendar object inside the window, as busy periods."""
    import recurring_ical_events
    from icalendar import Calendar as ICalendar

    try:
        cal = ICalendar.from_ical(data)
        events = recurring_ical_events.of(cal).between(lo, hi)
    except Exception as exc:  # a broken object must not hide the rest of the calendar
        log.warning("busy time: skipping an unreadable calendar object: %s", exc)
        return []
    periods: list[BusyPeriod] = []
    for event in events:
        if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
            continue
        if str(event.get("STATUS", "")).upper() == "CANCELLED":
            continue
        begin = event["DTSTART"].dt
        if "DTEND" in event:
            finish = event["DTEND"].dt
        elif "DURATION" in event:
            finish = begin + event["DURATION"].dt
        else:  # RFC 5545: a date lasts a day, a date-time no time at all
            finish = begin + timedelta(days=1) if not isinstance(begin, datetime) else begin
        start_utc, end_utc = _utc(begin, zone), _utc(finish, zone)
        if (end_utc > lo and start_utc < hi) or (start_utc == end_utc and lo <= start_utc < hi):
            summary = event.get("SUMMARY")
            uid = event.get("UID")
            periods.append(
                BusyPeriod(
                    start_utc,
                    end_utc,
                    str(summary) if summary is not None else None,
                    str(uid) if uid is not None else None,
                )
            )
    return periods


def _utc(value: date | datetime, zone: tzinfo) -> datetime:
    """A DATE or DATE-TIME from a calendar as an aware UTC datetime (floating read in ``zone``)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def describe_transport_failure(exc: BaseException, transport: Transport) -> str:
    """A transport failure in words a user can act on; names settings, never secrets."""
    text = str(exc)
    lowered = text.lower()
    pinned = isinstance(transport.verify, str) and transport.verify.startswith("sha256_")
    if pinned and "fingerprint" in lowered:
        return (
            "the server's TLS certificate does not match pin_sha256 "
            f"({str(transport.verify).removeprefix('sha256_')}); refusing to connect. "
            f"Detail: {text}"
        )
    if "certificate verify failed" in lowered or "certificate_verify_failed" in lowered:
        where = (
            f"the CA bundle {transport.verify}"
            if isinstance(transport.verify, str)
            else "the system's certificate authorities"
        )
        return f"the server's TLS certificate is not trusted by {where} ({text})"
    if "certificate required" in lowered or "alert_certificate_required" in lowered:
        return f"the server requires a client certificate (client_cert) ({text})"
    if "eof occurred in violation of protocol" in lowered or "unexpected_eof" in lowered:
        hint = (
            "; a server that wants a client certificate does this: set client_cert"
            if transport.cert is None
            else "; the server may not accept client_cert"
        )
        return f"the server broke off the TLS handshake{hint} ({text})"
    if transport.cert is None and _hung_up(lowered) and _asked_for_certificate(exc, transport):
        # TLS 1.3: the refusal of a missing certificate comes after the request went out,
        # as an alert or, depending on timing, as a bare hang-up; the probe tells which.
        return (
            "the server hung up, and its TLS handshake asks for a client certificate: "
            f"set client_cert; a client certificate may be required ({network_failure(exc)})"
        )
    return network_failure(exc)  # "connection refused", not the HTTP library's repr


def _hung_up(lowered: str) -> bool:
    """The connection ended without an answer (closed or reset), for whatever reason."""
    return any(
        words in lowered
        for words in ("remote end closed connection", "connection reset", "connection aborted")
    )


def _asked_for_certificate(exc: BaseException, transport: Transport) -> bool:
    """Whether a fresh handshake with the failed request's server shows CertificateRequest.

    Only a direct connection can be probed: through a proxy the probe would reach
    someone else, so no hint is given there.
    """
    url = getattr(getattr(exc, "request", None), "url", None)
    if not isinstance(url, str) or transport.proxy:
        return False
    return server_requests_client_certificate(url)


def _make_client(
    url: str,
    username: str | None,
    password: str | None,
    timeout: float,
    transport: Transport,
    stats: RequestStats,
) -> DAVClient:
    """A caldav client on the account's transport, with a counting session.

    Without an auth object, ``auth_type="basic"`` avoids the 401 round trip caldav otherwise
    makes before every first request; counting is done on the session so caldav's own
    requests show too. RFC 6764 discovery is ours (``sync.stores.discovery``): caldav's would
    ignore the CA bundle, the client certificate and the proxy.
    """
    client = DAVClient(
        url=url,
        username=username,
        password=password,
        auth=transport.auth,
        auth_type="basic" if transport.auth is None and password is not None else None,
        timeout=math.ceil(timeout),
        ssl_verify_cert=transport.verify,
        ssl_cert=transport.cert,
        proxy=transport.proxy,
        enable_rfc6764=False,
    )
    _count_requests(client.session, stats)
    return client


def _count_requests(session: Any, stats: RequestStats) -> None:
    """Wrap ``session.request`` so that every request, whoever sends it, is counted once."""
    original = session.request

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        sent = len(data.encode() if isinstance(data, str) else data) if data else 0
        stats.requests += 1
        stats.bytes_sent += sent
        key = method.upper()
        stats.by_method[key] = stats.by_method.get(key, 0) + 1
        resp = original(method, url, *args, **kwargs)
        if not kwargs.get("stream"):  # streamed bodies are counted by whoever reads them
            stats.bytes_received += len(resp.content or b"")
        return resp

    session.request = counted
