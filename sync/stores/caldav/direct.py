"""The production Sender for the common case: HTTP/1.1 on the standard library's http.client.

Why by hand, next to niquests (``SessionSender``): a push is one PUT after another, and
every millisecond of our CPU per request is a millisecond the server waits. niquests
builds each request through four layers (session, adapter, urllib3-future's pool, the
h11 state machine): measured on this project's 2-core machine, a PUT of 1.7 KB to a
local Radicale costs ~1.4 ms of client time through niquests, ~0.6 ms through http.client
(``benchmarks.bench_sync`` prints both, phase by phase), and with the machine busy a
500-series push took 28.0 s through niquests and 22.8 s through http.client (three
alternating rounds each, fresh Radicale each). No maintained library offers a thinner
synchronous HTTP/1.1 client than the standard library's, so this module is the glue
around it: sign-in, TLS trust, keep-alive, gzip, the size limit, errors in words.

It is used only where the account's transport needs nothing niquests alone offers
(``sends_directly``): Basic or no sign-in (an auth object, such as OAuth or Digest, goes
through niquests), no proxy (configured or from the environment), TLS trusted by the
system, a CA bundle or not checked (a pinned certificate goes through niquests), a
client certificate or none. caldav's own requests (discovery, scheduling questions)
keep using its niquests session either way.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from urllib.parse import quote, urljoin, urlsplit
from urllib.request import (  # type: ignore[attr-defined]  # not in typeshed
    getproxies_environment,
    proxy_bypass_environment,
)

from sync.errors import TransportError
from sync.stores.base import RequestStats
from sync.stores.caldav.transport import (
    DavRequest,
    Reply,
    ResponseTooLarge,
    Retryable,
    Transport,
    describe_transport_failure,
)

_CHUNK = 64 * 1024
#: What may stand unquoted in a request target (RFC 3986 pchar, "/", "?" and "%").
_TARGET_SAFE = "/%?=&;:@!$'()*+,~-._"
_BREAKS_HEAD = re.compile(r"[\r\n\x00]")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
#: A kept-alive connection the server closed while idle fails like this on reuse.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

Origin = tuple[str, str, int]  # scheme, host, port


def sends_directly(url: str, transport: Transport) -> bool:
    """Whether ``DirectSender`` can send for this account (see the module docstring)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if transport.auth is not None or transport.proxy:
        return False
    if isinstance(transport.verify, str) and transport.verify.startswith("sha256_"):
        return False
    proxies = getproxies_environment()
    return not (parts.scheme in proxies and not proxy_bypass_environment(parts.hostname))


class DirectSender:
    """Sends a calendar's requests on one kept-alive connection per origin (``Sender``).

    Counts into ``stats`` what ``SessionSender`` counts (requests, bytes, seconds) and
    the phases of each exchange (``RequestStats.phases``). ``after_send`` is called once
    the whole request has been handed to the socket (``base.SaysWhenSent``).
    """

    def __init__(
        self,
        *,
        username: str | None,
        password: str | None,
        transport: Transport,
        stats: RequestStats,
        timeout: float,
        max_response_bytes: int,
    ) -> None:
        self.transport = transport
        self.stats = stats
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.after_send: Callable[[], None] | None = None
        self._authorization = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            if username is not None and password is not None
            else None
        )
        self._tls: ssl.SSLContext | None = None
        self._connections: dict[Origin, http.client.HTTPConnection] = {}
        #: Origins whose connection has carried an exchange already (may have gone stale).
        self._kept: set[Origin] = set()
        self._lock = threading.Lock()  # one exchange at a time per sender

    def send(self, request: DavRequest) -> Reply:
        stats = self.stats
        stats.count_request(request.method, len(request.body or b""))
        started = time.perf_counter()
        try:
            with self._lock:
                reply = self._follow(request)
        finally:
            stats.seconds += time.perf_counter() - started
        stats.bytes_received += len(reply.body)
        return reply

    def close(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()

    # ------------------------------------------------------------------ one exchange

    def _follow(self, request: DavRequest) -> Reply:
        """The exchange, following redirects (sign-in only to the origin asked first)."""
        origin = _origin(request.url)
        url = request.url
        for _ in range(_MAX_REDIRECTS + 1):
            signed = _origin(url) == origin
            reply = self._exchange(request.method, url, request, signed=signed)
            location = reply.headers.get("location")
            if reply.status not in _REDIRECTS or not location:
                return reply
            url = urljoin(url, location)
        return reply

    def _exchange(self, method: str, url: str, request: DavRequest, *, signed: bool) -> Reply:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Accept-Encoding": "gzip", **request.headers}
        if signed and self._authorization is not None:
            headers["Authorization"] = self._authorization
        origin = _origin(url)
        try:
            try:
                response = self._request(origin, method, target, request.body, headers)
            except _STALE:
                if origin not in self._kept:
                    raise
                # The server closed the idle connection before reading this request:
                # nothing of it was processed, so it goes once more on a new connection.
                self._drop(origin)
                response = self._request(origin, method, target, request.body, headers)
            body = self._read(response, method, request.href)
            response.close()  # the body's reader, not the connection
        except ResponseTooLarge:
            self._drop(origin)
            raise
        except ssl.SSLError as exc:
            self._drop(origin)
            raise TransportError(
                f"{method} {request.href}: {self._describe(exc, url)}", href=request.href
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop(origin)
            raise Retryable(
                f"{method} {request.href}: {type(exc).__name__}: {self._describe(exc, url)}",
                href=request.href,
            ) from exc
        if response.will_close:
            self._drop(origin)
        reply_headers: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            reply_headers[key] = f"{reply_headers[key]}, {value}" if key in reply_headers else value
        return Reply(status=response.status, headers=reply_headers, body=body, url=url)

    def _request(
        self,
        origin: Origin,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> http.client.HTTPResponse:
        phases = self.stats.phases
        connection = self._connections.get(origin)
        mark = time.perf_counter()
        if connection is None:
            connection = self._connect(origin)
            self._kept.discard(origin)
            now = time.perf_counter()
            phases["connect"] = phases.get("connect", 0.0) + now - mark
            mark = now
        else:
            self._kept.add(origin)
        assert connection.sock is not None  # connected above
        # One sendall of head and body: http.client's request() sends them apart, and the
        # second segment cost ~0.15 ms per PUT on loopback (measured, caldav.direct docs).
        connection.sock.sendall(_wire(method, target, origin, headers, body))
        now = time.perf_counter()
        phases["send"] = phases.get("send", 0.0) + now - mark
        if self.after_send is not None:
            self.after_send()
        mark = time.perf_counter()
        response = http.client.HTTPResponse(connection.sock, method=method)
        response.begin()
        phases["wait"] = phases.get("wait", 0.0) + time.perf_counter() - mark
        return response

    def _connect(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self._tls_context()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        connection.connect()
        if connection.sock is not None:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections[origin] = connection
        return connection

    def _drop(self, origin: Origin) -> None:
        connection = self._connections.pop(origin, None)
        if connection is not None:
            connection.close()

    def _read(self, response: http.client.HTTPResponse, method: str, href: str) -> bytes:
        """The body (gzip undone), refused as soon as it passes ``max_response_bytes``."""
        mark = time.perf_counter()
        limit = self.max_response_bytes
        declared = response.getheader("Content-Length", "") or ""
        if declared.strip().isdigit() and int(declared) > limit:
            raise ResponseTooLarge(
                f"{method} {href}: answer of {int(declared)} bytes exceeds "
                f"max_response_bytes ({limit})",
                href=href,
                status=response.status,
            )
        gzipped = (response.getheader("Content-Encoding") or "").strip().lower() == "gzip"
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(_CHUNK):
            if inflate is not None:
                chunk = inflate.decompress(chunk, limit + 1 - size)
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(
                    f"{method} {href}: answer exceeds max_response_bytes ({limit})",
                    href=href,
                    status=response.status,
                )
            chunks.append(chunk)
        if inflate is not None:
            chunks.append(inflate.flush())
        phases = self.stats.phases
        phases["read"] = phases.get("read", 0.0) + time.perf_counter() - mark
        return b"".join(chunks)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = _tls_context(self.transport)
        return self._tls

    def _describe(self, exc: BaseException, url: str) -> str:
        return describe_transport_failure(exc, self.transport, url=url)


def _wire(
    method: str, target: str, origin: Origin, headers: dict[str, str], body: bytes | None
) -> bytes:
    """The request as bytes: request line, Host, ``headers``, Content-Length, body.

    A header that would break the head (a CR or LF, say in an ETag a server sent) is
    refused rather than sent: it could smuggle a second request.
    """
    scheme, host, port = origin
    default = 443 if scheme == "https" else 80
    host = f"[{host}]" if ":" in host else host
    lines = [f"{method} {quote(target, safe=_TARGET_SAFE)} HTTP/1.1"]
    lines.append(f"Host: {host}" if port == default else f"Host: {host}:{port}")
    for name, value in headers.items():
        if _BREAKS_HEAD.search(name) or _BREAKS_HEAD.search(value):
            raise TransportError(f"{method} {target}: header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    if body is not None or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body or b'')}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise TransportError(f"{method} {target}: a header is not Latin-1 ({exc})") from exc
    return head + (body or b"")


def _origin(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme or "http"
    return scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80)


def _tls_context(transport: Transport) -> ssl.SSLContext:
    """TLS trust as niquests would do it: system CAs, a CA bundle, or no check; a client cert."""
    verify = transport.verify
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str) and os.path.isdir(verify):
        context = ssl.create_default_context(capath=verify)
    elif isinstance(verify, str):
        context = ssl.create_default_context(cafile=verify)
    else:
        context = ssl.create_default_context()
    cert = transport.cert
    if isinstance(cert, tuple):
        context.load_cert_chain(cert[0], cert[1])
    elif isinstance(cert, str):
        context.load_cert_chain(cert)
    context.set_alpn_protocols(["http/1.1"])
    return context
