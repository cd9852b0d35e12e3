"""A Radicale CalDAV server inside this process, on loopback, for the demo.

``make demo`` must work on a machine with nothing but python3: Radicale installs from
PyPI and runs as a WSGI app, so the demo serves it from a thread on 127.0.0.1 with a
port the OS picks and its data in a folder we own. Tests use real server processes
instead (``tests/servers.py``); this is only for showing the whole loop.
"""

from __future__ import annotations

import socketserver
import threading
from pathlib import Path
from types import TracebackType
from typing import Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import radicale.config
from radicale import Application  # type: ignore[attr-defined]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


class EmbeddedRadicale:
    def __init__(self, directory: Path, *, username: str = "demo", password: str = "demo") -> None:
        self.directory = directory
        self.username = username
        self.password = password
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/"

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        users = self.directory / "users"
        users.write_text(f"{self.username}:{self.password}\n")
        configuration = radicale.config.load()
        configuration.update(
            {
                "storage": {"filesystem_folder": str(self.directory / "collections")},
                "auth": {
                    "type": "htpasswd",
                    "htpasswd_filename": str(users),
                    "htpasswd_encryption": "plain",
                },
                "rights": {"type": "owner_only"},
                "logging": {"level": "warning", "mask_passwords": "True"},
            },
            "followup-sync demo",
            privileged=True,
        )
        # Made here so Radicale does not warn that it had to create them.
        (self.directory / "collections" / "collection-root").mkdir(parents=True, exist_ok=True)
        app = Application(configuration)
        self._server = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="radicale", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
