"""How much and how slowly a client may send to our HTTP servers (the daemon's, ``api``'s).

Two limits, one of them written here:

* **Request body size**: FastAPI's own ``max_body_size`` (``create_app(max_body_bytes=)``)
  answers 413 before a larger body is read; ``Content-Length`` is checked first.
  ``TooLargeAsProblem`` only turns Starlette's plain-text 413 into problem+json.
* **Time to send a request**: uvicorn's h11 server has no header or body read timeout.
  Its only timer (``timeout_keep_alive``) is armed after a response, for the idle time
  before the next request; h11 is sans-IO and keeps no time at all. So a client that
  connects and sends half a header block, or declares ``Content-Length: 100`` and sends
  nothing, holds a connection and a task for as long as it likes. ``ReadTimeoutProtocol``
  (a subclass of uvicorn's h11 protocol, passed as ``uvicorn.Config(http=...)``) arms a
  deadline when a request starts to arrive and cancels it once h11 holds the whole
  request; when it fires first the client gets a 408 problem+json and the connection is
  closed. The app's own work time is not limited: only the client's sending.

Header size stays h11's own limit (``h11_max_incomplete_event_size``, 16 KiB), answered
with 400 by uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from sync.config import DEFAULT_READ_TIMEOUT

log = logging.getLogger(__name__)


#: h11 states of the client while its request is not fully received.
_RECEIVING = (h11.IDLE, h11.SEND_BODY)


class ReadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each request."""

    read_timeout: float = DEFAULT_READ_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._read_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection starts arriving
        super().data_received(data)
        if self.conn.their_state not in _RECEIVING:
            self._disarm()  # the whole request is in; the app's own time is not limited

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._read_deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _timed_out(self) -> None:
        self._read_deadline = None
        if self.conn.their_state not in _RECEIVING or self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("%s did not send its request within %g s: closed", client, self.read_timeout)
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(self._timeout_response())
        self.transport.close()

    def _timeout_response(self) -> bytes:
        """A 408 problem+json, written as bytes: the connection closes right after it."""
        body = json.dumps(
            {
                "type": "https://followup-sync.invalid/problems/request-timeout",
                "title": "Request timeout",
                "status": 408,
                "detail": f"the request was not received within {self.read_timeout:g} s",
            }
        ).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\n"
            "Content-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + body


class TooLargeAsProblem:
    """Starlette answers its body cap with a text/plain 413 (hard-coded in its middleware).

    Every error of our API is problem+json, so this ASGI wrapper, around the whole served
    app, replaces that one response; everything else passes through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_problem(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                replaced = True
                body = _TOO_LARGE_BODY
                await send(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            elif not replaced:
                await send(message)

        await self.app(scope, receive, send_problem)


_TOO_LARGE_BODY = json.dumps(
    {
        "type": "https://followup-sync.invalid/problems/request-body-too-large",
        "title": "Request body too large",
        "status": 413,
        "detail": "the request body is larger than this server accepts "
        "([daemon] api_max_body_bytes, or followup-sync api --max-body-bytes)",
        "field": "body",
    }
).encode()


def protocol_with_timeout(read_timeout: float) -> type[ReadTimeoutProtocol]:
    """The protocol class for one server (uvicorn instantiates it per connection)."""
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), {"read_timeout": read_timeout})


def server_config(
    app: Any, *, host: str, port: int, read_timeout: float = DEFAULT_READ_TIMEOUT, **options: Any
) -> uvicorn.Config:
    """``uvicorn.Config`` with the read deadline and problem+json 413s; ``options`` go to
    uvicorn as they are."""
    return uvicorn.Config(
        TooLargeAsProblem(app),
        host=host,
        port=port,
        http=protocol_with_timeout(read_timeout),
        **options,
    )
