"""A fault-injecting HTTP proxy on 127.0.0.1, between the sync worker and a real CalDAV server.

At a configured ``rate`` (per request, from a seeded RNG) it answers in one of these ways
instead of passing the exchange through untouched:

``status``      500, 502 or 503 without forwarding; a third of the 503s carry ``Retry-After``
``reset``       the connection is reset (RST) before the request reaches the server
``reset_after`` the request IS forwarded (the server applies it), then the connection is
                reset: the client never learns whether its write happened
``stall``       nothing is answered for ``stall_seconds`` (longer than the client timeout)
``truncate``    the request is forwarded, the answer is cut in half (Content-Length kept)
``bad_xml``     a multistatus answer is cut and ends in garbage (the length is right)
``bad_ical``    one calendar-data of a multiget/query answer is replaced by broken iCalendar
                that keeps the UID, so the error can name the item

It is bounded: at most ``max_faults`` faults (and ``max_stalls`` stalls) are injected,
and the server shuts itself down after ``lifetime`` seconds whatever happens. Every request
is recorded (method, path, conditional headers, fault) for the assertions; ``force`` lets
a test fail chosen requests every time (a run that keeps failing).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

FAULT_KINDS = ("status", "reset", "reset_after", "stall", "truncate", "bad_xml", "bad_ical")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade"}
_CAL_DATA = re.compile(
    rb"(<(?:[A-Za-z0-9_]+:)?calendar-data[^>]*>)(.*?)(</(?:[A-Za-z0-9_]+:)?calendar-data>)", re.S
)
_UID = re.compile(rb"\nUID:([^\r\n]*)")

#: Decides a fault for one request regardless of the rate: (method, path, body) -> kind or None.
ForceRule = Callable[[str, str, bytes], str | None]
#: Replaces an answer body: (method, path, request body, answer body) -> new body or None.
Rewrite = Callable[[str, str, bytes, bytes], bytes | None]


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it."""

    method: str
    path: str
    if_match: bool
    if_none_match: bool
    fault: str | None


@dataclass
class ProxyStats:
    requests: list[Seen] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    retry_after_sent: int = 0

    @property
    def injected(self) -> int:
        return sum(self.faults.values())

    def unconditional_writes(self) -> list[Seen]:
        """PUTs without If-Match/If-None-Match and DELETEs without If-Match: never allowed."""
        return [
            s
            for s in self.requests
            if (s.method == "PUT" and not (s.if_match or s.if_none_match))
            or (s.method == "DELETE" and not s.if_match)
        ]


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        rate: float,
        seed: int,
        kinds: tuple[str, ...] = FAULT_KINDS,
        max_faults: int = 10_000,
        max_stalls: int = 3,
        stall_seconds: float = 3.5,
        lifetime: float = 600.0,
        retry_after: str = "1",
        force: ForceRule | None = None,
        rewrite: Rewrite | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.rate = rate
        self.kinds = kinds
        self.max_faults = max_faults
        self.max_stalls = max_stalls
        self.stall_seconds = stall_seconds
        self.lifetime = lifetime
        self.retry_after = retry_after
        self.force = force
        self.rewrite = rewrite
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.enabled = True
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._watchdog = threading.Thread(
            target=self._expire, name="fault-proxy-watchdog", daemon=True
        )

    def url_for(self, upstream_url: str) -> str:
        """The same URL, through the proxy."""
        parts = urlsplit(upstream_url)
        return parts._replace(netloc=f"127.0.0.1:{self.port}").geturl()

    def start(self) -> Self:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._server.shutdown()
            self._server.server_close()

    def _expire(self) -> None:
        if not self._stopped.wait(self.lifetime):
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def decide(self, method: str, path: str, body: bytes) -> str | None:
        with self._lock:
            roll = self._rng.random()
            pick = self._rng.choice(self.kinds)
            if self.force is not None:
                forced = self.force(method, path, body)
                if forced is not None:
                    return forced
            if not self.enabled or roll >= self.rate or self.stats.injected >= self.max_faults:
                return None
            if pick == "stall" and self.stats.faults["stall"] >= self.max_stalls:
                pick = "status"
            return pick

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.stats.requests.append(seen)
            if seen.fault is not None:
                self.stats.faults[seen.fault] += 1

    def status_fault(self) -> tuple[int, bool]:
        with self._lock:
            status = self._rng.choice((500, 502, 503))
            retry_after = status == 503 and self._rng.random() < 1 / 3
            if retry_after:
                self.stats.retry_after_sent += 1
            return status, retry_after

    def cut(self, length: int) -> int:
        with self._lock:
            return self._rng.randrange(1, max(2, length))


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle plus delayed ACK
        # add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, OSError):
            self.close_connection = True

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def _any(self) -> None:
        proxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        method = self.command
        fault = proxy.decide(method, self.path, body)
        target: bytes | None = None
        if fault is not None and fault.startswith("bad_ical="):  # break this UID's data only
            fault, target = "bad_ical", fault.partition("=")[2].encode()
        # A fault that needs an XML answer falls back to a status fault for other requests.
        if fault in ("bad_xml", "bad_ical") and method not in ("PROPFIND", "REPORT"):
            fault = "status"
        proxy.record(
            Seen(
                method,
                self.path,
                "If-Match" in self.headers,
                "If-None-Match" in self.headers,
                fault,
            )
        )
        if fault == "status":
            status, retry_after = proxy.status_fault()
            headers = {"Retry-After": proxy.retry_after} if retry_after else {}
            self._answer(status, headers, b"injected fault\n")
            return
        if fault == "reset":
            self._reset()
            return
        if fault == "stall":
            time.sleep(proxy.stall_seconds)
            self._reset()
            return
        status, headers, data = self._forward(method, body)
        if proxy.rewrite is not None:
            data = proxy.rewrite(method, self.path, body, data) or data
        if fault == "reset_after":
            self._reset()
            return
        if fault == "truncate" and data:
            self._answer(status, headers, data[: len(data) // 2], declared=len(data))
            self._reset()
            return
        if fault == "bad_xml" and data:
            data = data[: proxy.cut(len(data))] + b"<D:garbage attr='"
        elif fault == "bad_ical":
            data = _break_one_calendar(data, proxy.cut, target)
        self._answer(status, headers, data)

    do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_OPTIONS = do_MKCALENDAR = do_HEAD = (
        _any
    )
    do_POST = do_PROPPATCH = do_MOVE = do_COPY = _any

    def _forward(self, method: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        proxy = self.owner
        conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
            headers = {
                k: v for k, v in headers.items() if k.lower() != "accept-encoding"
            }  # plain bodies to corrupt
            conn.request(
                method,
                self.path,
                body=body if body or method in ("PUT", "POST") else None,
                headers=headers,
            )
            resp = conn.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP}
            return resp.status, out, data
        finally:
            conn.close()

    def _answer(
        self, status: int, headers: dict[str, str], data: bytes, *, declared: int | None = None
    ) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data) if declared is None else declared))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _reset(self) -> None:
        """Close with RST: the client sees 'connection reset', not a clean end."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


def _break_one_calendar(
    data: bytes, cut: Callable[[int], int], target: bytes | None = None
) -> bytes:
    """Replace one calendar-data text by iCalendar that cannot be read but keeps its UID."""
    matches = list(_CAL_DATA.finditer(data))
    if target is not None:
        matches = [m for m in matches if b"UID:" + target in m.group(2)]
    if not matches:
        return data
    match = matches[cut(len(matches) + 1) - 1]
    uid = _UID.search(match.group(2))
    broken = (
        b"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//fault-proxy//EN\nBEGIN:VEVENT\n"
        + (b"UID:" + uid.group(1).strip() + b"\n" if uid else b"")
        + b"DTSTART:2026-13-45T99:99\nSUMMARY:broken by the proxy\nEND:VEVENT\nEND:VCALENDAR\n"
    )
    return data[: match.start(2)] + broken + data[match.end(2) :]
