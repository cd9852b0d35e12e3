"""What the sync benchmark compares us with: vdirsyncer, and a counting HTTP proxy.

* ``CountingProxy``: a reverse proxy on loopback in front of one CalDAV server that counts
  requests and body bytes both ways, so a peer's traffic can be measured the same way as
  ours (``RequestStats`` counts bodies only, no headers; so does the proxy).
* ``Vdirsyncer``: a generated config that syncs a filesystem folder of .ics files (one
  per series, the same bodies our raw PUT loop sends) with one calendar collection.

vdirsyncer lives in its own environment (``.bench-venv``, made by ``make bench``), so
its dependencies never mix with ours; it is run as a subprocess.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Traffic:
    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    by_method: dict[str, int] = field(default_factory=dict)


class CountingProxy:
    """``http://127.0.0.1:<port>/...`` forwards to ``upstream`` and counts what passes."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.traffic = Traffic()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn = proxy._connection()
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                with proxy._lock:
                    t = proxy.traffic
                    t.requests += 1
                    t.bytes_sent += len(body)
                    t.bytes_received += len(data)
                    t.by_method[self.command] = t.by_method.get(self.command, 0) + 1
                self.send_response(resp.status, resp.reason)
                for key, value in resp.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_POST = do_HEAD = _forward
            do_OPTIONS = do_PROPFIND = do_PROPPATCH = do_REPORT = do_MKCALENDAR = _forward
            do_MKCOL = do_MOVE = do_COPY = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=600)

    def url_for(self, upstream_url: str) -> str:
        parts = urlsplit(upstream_url)
        return f"http://127.0.0.1:{self.port}{parts.path}"

    def reset(self) -> Traffic:
        with self._lock:
            old, self.traffic = self.traffic, Traffic()
        return old

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def find_vdirsyncer(root: Path) -> Path | None:
    """.bench-venv/bin/vdirsyncer, else one on PATH; None when not installed."""
    local = root / ".bench-venv" / "bin" / "vdirsyncer"
    if local.exists():
        return local
    found = shutil.which("vdirsyncer")
    return Path(found) if found else None


@dataclass
class Vdirsyncer:
    """One pair: filesystem folder <-> one CalDAV calendar, with its own status dir."""

    binary: Path
    work: Path
    folder: Path
    calendar_url: str
    username: str | None
    password: str | None

    @property
    def config(self) -> Path:
        return self.work / "config"

    def write_config(self, calendar_url: str | None = None) -> None:
        auth = (
            f'username = "{self.username}"\npassword = "{self.password}"\n'
            if self.username and self.password
            else ""
        )
        self.config.write_text(
            "[general]\n"
            f'status_path = "{self.work / "status"}/"\n\n'
            "[pair bench]\n"
            'a = "bench_local"\nb = "bench_remote"\ncollections = null\n'
            'conflict_resolution = "a wins"\n\n'
            "[storage bench_local]\n"
            f'type = "filesystem"\npath = "{self.folder}/"\nfileext = ".ics"\n\n'
            "[storage bench_remote]\n"
            f'type = "caldav"\nurl = "{calendar_url or self.calendar_url}"\n{auth}'
        )

    def run(self, *args: str) -> float:
        """Run ``vdirsyncer <args>``; seconds taken. Fails loudly on a non-zero exit."""
        env = {**os.environ, "HOME": str(self.work)}
        started = time.perf_counter()
        result = subprocess.run(  # fixed argv, no shell
            [str(self.binary), "-c", str(self.config), *args],
            stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(
                f"vdirsyncer {' '.join(args)} exited {result.returncode}:\n"
                + result.stderr.decode(errors="replace")[-2000:]
            )
        return seconds
