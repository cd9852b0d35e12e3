"""How a DavCalendar's requests reach the server: the I/O seam, the HTTP session, retries.

``Sender`` is the one seam between the calendar and the network, as httpx's
``BaseTransport``: one method, ``send(request) -> Reply``, one HTTP exchange, no retries.
``SessionSender`` is the production one (python-caldav's niquests session: sign-in, TLS
trust, client certificate, proxy, bodies read streaming up to ``max_response_bytes``).
A test or a benchmark passes another (an in-process server, a wrapper that counts or
fails requests) and keeps everything above it: XML, quirks, retries, errors.

Above the seam, ``checked`` turns an answer into the errors of ``sync.errors`` (a 429/5xx
into a retryable TransportError, a 401 into a sign-in error) and ``with_retries`` repeats
what is safe to repeat within the ``RetryPolicy``.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import tenacity
from caldav import __version__ as caldav_version
from caldav.davclient import DAVClient
from caldav.lib.http_sync import requests as http

from sync.errors import StoreError, TransportError, network_failure
from sync.stores.base import RequestStats
from sync.stores.tls_probe import server_requests_client_certificate

# One logger for the whole client, as before the split: log lines keep their "logger" name.
log = logging.getLogger("sync.stores.caldav")

_XML_HEADERS = {"Content-Type": "application/xml; charset=utf-8"}
_USER_AGENT = f"followup-sync (python-caldav {caldav_version})"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The largest answer body read into memory; a multiget batch of 50 ordinary series is < 1 MB.
DEFAULT_MAX_RESPONSE_BYTES = 20 * 1024 * 1024
_CHUNK = 64 * 1024


# --------------------------------------------------------------------------- settings


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


# --------------------------------------------------------------------------- the seam


@dataclass(frozen=True)
class DavRequest:
    """One request as the calendar sends it, User-Agent and Content-Type already in ``headers``."""

    method: str
    url: str
    body: bytes | None
    headers: Mapping[str, str]

    @property
    def href(self) -> str:
        """The unquoted path of ``url``, as errors and logs name it."""
        return unquote(urlsplit(self.url).path)


@dataclass(frozen=True)
class Reply:
    """One answer: ``headers`` names are lower-cased; ``body`` is the whole body, read."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class Sender(Protocol):
    """The I/O seam of a DavCalendar: one HTTP exchange, as httpx's ``BaseTransport``.

    ``send`` sends ``request`` once (no retry: the calendar retries above it) and returns
    the answer whatever its status. A network failure that is worth repeating raises
    ``Retryable``; any other raises ``TransportError``. The sender counts what it sends
    and receives into the calendar's ``RequestStats`` if it wants the figures to show.
    """

    def send(self, request: DavRequest) -> Reply: ...


class ResponseTooLarge(TransportError):
    """The server's answer exceeded ``max_response_bytes``; repeating it would not help."""


class Retryable(TransportError):
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


class SessionSender:
    """The production Sender: python-caldav's niquests session, with the account's transport.

    Bodies are read streaming and refused (ResponseTooLarge) beyond ``max_response_bytes``;
    an access token the server no longer takes is renewed once, on a 401, where the
    account's auth can (``renew_after_401``).
    """

    def __init__(
        self,
        client: DAVClient,
        transport: Transport,
        *,
        stats: RequestStats,
        timeout: float,
        max_response_bytes: int,
    ) -> None:
        self.client = client
        self.transport = transport
        self.stats = stats
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes

    def send(self, request: DavRequest) -> Reply:
        status, resp, content = self._exchange(request)
        renew = getattr(self.client.auth, "renew_after_401", None)
        if status == 401 and callable(renew) and renew():
            # An access token the server no longer takes (revoked, clock skew): one new
            # token, one repeat; a second 401 is a real refusal.
            status, resp, content = self._exchange(request)
        resp_headers = {k.lower(): v for k, v in resp.headers.items()}
        log.debug("%s %s -> %s (%d bytes)", request.method, request.href, status, len(content))
        return Reply(status=status, headers=resp_headers, body=content, url=request.url)

    def _exchange(self, request: DavRequest) -> tuple[int, Any, bytes]:
        """One HTTP exchange on the account's transport: status, response, body."""
        method, href = request.method, request.href
        started = time.perf_counter()
        transport = self.transport
        try:
            resp = self.client.session.request(
                method,
                request.url,
                data=request.body,
                headers=dict(request.headers),
                auth=self.client.auth,
                timeout=self.timeout,
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
            raise Retryable(
                f"{method} {href}: {type(exc).__name__}: {reason}",
                href=href,
            ) from exc
        finally:
            self.stats.seconds += time.perf_counter() - started
        self.stats.bytes_received += len(content)
        return int(resp.status_code or 0), resp, content

    def _read_body(self, resp: Any, method: str, href: str) -> bytes:
        """The body, refused (ResponseTooLarge) as soon as it passes ``max_response_bytes``."""
        limit = self.max_response_bytes
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


# --------------------------------------------------------------------------- above the seam


def dav_request(
    method: str, url: str, body: bytes | None, headers: Mapping[str, str]
) -> DavRequest:
    """The request as sent: our User-Agent, XML Content-Type on PROPFIND/REPORT bodies."""
    all_headers = {"User-Agent": _USER_AGENT}
    if body is not None and method in ("PROPFIND", "REPORT"):
        all_headers.update(_XML_HEADERS)
    all_headers.update(headers)
    return DavRequest(method, url, body, all_headers)


def checked(request: DavRequest, reply: Reply) -> Reply:
    """The answer, or the error it means: Retryable for 429/5xx-transient, 401 a sign-in error."""
    method, href, status = request.method, request.href, reply.status
    if status in _RETRY_STATUSES:
        raise Retryable(
            f"{method} {href}: server answered {status}",
            href=href,
            status=status,
            retry_after=_parse_retry_after(reply.headers.get("retry-after")),
        )
    if status >= 500:
        raise TransportError(f"{method} {href}: server answered {status}", href=href, status=status)
    if status == 401:
        raise StoreError(
            f"{method} {href}: authentication failed (401); check the account's sign-in "
            "(auth, username, password or token)",
            href=href,
            status=401,
        )
    return reply


def with_retries(
    attempt: Callable[[], Reply], policy: RetryPolicy, sleep: Callable[[float], None]
) -> Reply:
    """``attempt()``, repeated on Retryable within ``policy``: all we send is safe to repeat.

    The first try is made directly: tenacity's bookkeeping costs about 0.05 ms per call,
    which a 500-PUT push pays 500 times for retries it almost never makes.
    """
    try:
        return attempt()
    except Retryable as exc:
        if policy.attempts <= 1:
            raise
        first_wait = _wait_after(exc, 1, policy)
    sleep(first_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return _wait_after(exc, state.attempt_number + 1, policy)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts - 1)),
        wait=wait,
        retry=tenacity.retry_if_exception_type(Retryable),
        sleep=sleep,
        reraise=True,
    )
    for one in retrying:
        with one:
            return attempt()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def _wait_after(exc: BaseException | None, failed: int, policy: RetryPolicy) -> float:
    """The wait after ``failed`` tries: the server's Retry-After if it sent one, else backoff."""
    if isinstance(exc, Retryable) and exc.retry_after is not None:
        return min(exc.retry_after, policy.retry_after_max)
    return float(min(policy.backoff_initial * (2 ** (failed - 1)), policy.backoff_max))


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


# --------------------------------------------------------------------------- failures in words


def describe_transport_failure(
    exc: BaseException, transport: Transport, *, url: str | None = None
) -> str:
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
    if transport.cert is None and _hung_up(lowered) and _asked_for_certificate(exc, transport, url):
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


def _asked_for_certificate(exc: BaseException, transport: Transport, url: str | None) -> bool:
    """Whether a fresh handshake with the failed request's server shows CertificateRequest.

    Only a direct connection can be probed: through a proxy the probe would reach
    someone else, so no hint is given there.
    """
    url = url or getattr(getattr(exc, "request", None), "url", None)
    if not isinstance(url, str) or transport.proxy:
        return False
    return server_requests_client_certificate(url)


# --------------------------------------------------------------------------- the caldav client


def make_client(
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


def on_body_sent(session: Any, callback: Callable[[], None]) -> None:
    """Call ``callback`` each time ``session`` has handed a whole request body to the socket.

    niquests' ``on_upload`` hook; a session without it (python-caldav on requests) never
    calls, and a push then renders its next resources on the applying thread.
    """
    hooks = getattr(session, "hooks", None)
    if not isinstance(hooks, dict) or "on_upload" not in hooks:
        return

    def uploaded(request: Any, **_: Any) -> None:
        progress = getattr(request, "upload_progress", None)
        if progress is not None and progress.is_completed:
            callback()

    hooks["on_upload"].append(uploaded)


def _count_requests(session: Any, stats: RequestStats) -> None:
    """Wrap ``session.request`` so that every request, whoever sends it, is counted once."""
    original = session.request

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        sent = len(data.encode() if isinstance(data, str) else data) if data else 0
        stats.count_request(method.upper(), sent)
        resp = original(method, url, *args, **kwargs)
        if not kwargs.get("stream"):  # streamed bodies are counted by whoever reads them
            stats.bytes_received += len(resp.content or b"")
        return resp

    session.request = counted
