"""The http.client sender's own duties, against small real HTTP servers on loopback.

What every server does (PUT, REPORT, ETags, errors) is covered by the store contract on
Radicale and Xandikos; these are the cases those servers do not produce on demand: a
kept-alive connection closed while idle, a gzip answer, redirects across origins, and a
header a hostile server could use to smuggle a second request.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sync.errors import TransportError
from sync.stores.base import RequestStats
from sync.stores.caldav import DavCalendar
from sync.stores.caldav.direct import DirectSender, sends_directly
from sync.stores.caldav.transport import DavRequest, ResponseTooLarge, Transport


@dataclass
class Seen:
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    connections: int = 0


Answer = Callable[[BaseHTTPRequestHandler, Seen], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], tuple[str, Seen]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> tuple[str, Seen]:
        seen = Seen()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                seen.connections += 1

            def log_message(self, format: str, *args: object) -> None:
                return

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen.requests.append((self.command, self.path, dict(self.headers.items())))
                answer(self, seen)

            do_GET = do_PUT = do_PROPFIND = do_REPORT = handle_one

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_port}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _reply(status: int, body: bytes = b"", **headers: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def _sender(**kwargs: object) -> DirectSender:
    options: dict[str, object] = {
        "username": "alice",
        "password": "secret",
        "transport": Transport(),
        "stats": RequestStats(),
        "timeout": 5.0,
        "max_response_bytes": 1024 * 1024,
    }
    options.update(kwargs)
    return DirectSender(**options)  # type: ignore[arg-type]


def test_an_etag_with_a_line_break_is_refused_before_anything_is_sent(
    serve: Callable[[Answer], tuple[str, Seen]],
) -> None:
    base, seen = serve(_reply(204, ETag='"2"'))
    calendar = DavCalendar.connect(
        f"{base}/alice/cal/", username="alice", password="secret", server_kind="radicale"
    )
    with pytest.raises(TransportError, match="line break"):
        calendar.update("/alice/cal/a.ics", b"BEGIN:VCALENDAR", '"1"\r\nX-Smuggled: yes')
    assert seen.requests == []


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(
    serve: Callable[[Answer], tuple[str, Seen]],
) -> None:
    def answer_then_hang_up_later(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        # Keep-alive is announced, but the server drops the connection after the answer
        # (as a server does with an idle timeout): the sender finds out on its next request.
        _reply(200, b"ok")(handler, seen)
        handler.close_connection = True

    base, seen = serve(answer_then_hang_up_later)
    sender = _sender()
    for _ in range(3):
        reply = sender.send(DavRequest("GET", f"{base}/alice/cal/a.ics", None, {}))
        assert reply.status == 200 and reply.body == b"ok"
    assert len(seen.requests) == 3
    assert seen.connections == 3


def test_a_gzip_answer_is_read_and_the_size_limit_applies_to_what_it_inflates_to(
    serve: Callable[[Answer], tuple[str, Seen]],
) -> None:
    text = b"<multistatus>" + b"x" * 50_000 + b"</multistatus>"
    base, seen = serve(_reply(207, gzip.compress(text), Content_Encoding="gzip"))
    reply = _sender().send(DavRequest("REPORT", f"{base}/alice/cal/", b"<q/>", {}))
    assert reply.body == text
    assert seen.requests[0][2]["Accept-Encoding"] == "gzip"
    with pytest.raises(ResponseTooLarge):
        _sender(max_response_bytes=10_000).send(
            DavRequest("REPORT", f"{base}/alice/cal/", b"<q/>", {})
        )


def test_a_redirect_keeps_the_sign_in_on_the_same_origin_only(
    serve: Callable[[Answer], tuple[str, Seen]],
) -> None:
    elsewhere, seen_elsewhere = serve(_reply(200, b"moved here"))
    base, seen = serve(
        lambda handler, s: (
            _reply(301, Location="/alice/cal/")(handler, s)
            if handler.path == "/alice/cal"
            else _reply(302, Location=f"{elsewhere}/x")(handler, s)
        )
    )
    reply = _sender().send(DavRequest("GET", f"{base}/alice/cal", None, {}))
    assert reply.status == 200 and reply.body == b"moved here"
    assert [path for _, path, _ in seen.requests] == ["/alice/cal", "/alice/cal/"]
    assert all("Authorization" in headers for _, _, headers in seen.requests)
    assert "Authorization" not in seen_elsewhere.requests[0][2]


def test_only_transports_it_can_serve_go_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://dav.example.com/alice/cal/"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert sends_directly(url, Transport())
    assert sends_directly(url, Transport(verify="/etc/ssl/certs/ca.pem", cert="/c.pem"))
    assert not sends_directly(url, Transport(auth=object()))
    assert not sends_directly(url, Transport(proxy="http://proxy:3128"))
    assert not sends_directly(url, Transport(verify="sha256_" + "ab" * 32))
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    assert not sends_directly(url, Transport())
    monkeypatch.setenv("no_proxy", "dav.example.com")
    assert sends_directly(url, Transport())
