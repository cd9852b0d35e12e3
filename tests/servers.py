"""Real CalDAV servers for the integration tests, started as subprocesses.

Subprocesses rather than threads: a crashed or hung server cannot take the test
process with it, shutdown is a plain SIGTERM, and each server gets its own
throw-away directory and a free port picked at start time (caldav.testing pins
ports 5232/8993, which collides with anything else running on the machine).

Nothing here imports the project: the fixtures must keep working when
``sync.stores.caldav`` is broken, so that its tests can say so. Their own requests go through httpx,
which answers a server's Basic or Digest challenge (``auth`` says which one it wants).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, TypeVar

import httpx

HOST = "127.0.0.1"
USERNAME = "alice"
PASSWORD = "secret"
START_TIMEOUT = 20.0

CalendarUrlFactory = Callable[[str | None], str]
#: How a server wants its users to sign in: an account's ``auth`` for it.
ServerAuth = Literal["basic", "digest"]


def http_auth(auth: ServerAuth, username: str | None, password: str | None) -> httpx.Auth | None:
    """httpx's Basic or Digest (RFC 7616, answered from the server's challenge); None: no login."""
    if username is None or password is None:
        return None
    if auth == "digest":
        return httpx.DigestAuth(username, password)
    return httpx.BasicAuth(username, password)


@dataclass(frozen=True)
class ServerInfo:
    """What a test needs to talk to one server; ``calendar_url_factory(name)`` makes a calendar."""

    kind: str
    url: str
    username: str | None
    password: str | None
    calendar_url_factory: CalendarUrlFactory
    auth: ServerAuth = "basic"


@dataclass
class RunningServer:
    """A started server process plus where its calendars live."""

    kind: str
    base_url: str
    home_path: str  # calendar home, where MKCALENDAR goes
    username: str | None
    password: str | None
    process: subprocess.Popen[bytes]
    log_path: Path
    _log_file: IO[bytes] | None = field(repr=False, default=None)
    auth: ServerAuth = "basic"

    @property
    def home_url(self) -> str:
        return self.base_url.rstrip("/") + self.home_path

    def make_calendar(self, name: str | None = None) -> str:
        """MKCALENDAR a fresh, empty calendar and return its URL (with a trailing slash)."""
        name = name or f"cal-{uuid.uuid4().hex[:12]}"
        url = f"{self.home_url}{name}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:set><D:prop><D:displayname>{name}</D:displayname></D:prop></D:set>"
            "</C:mkcalendar>"
        ).encode()
        status = _http(self, "MKCALENDAR", url, body, {"Content-Type": "application/xml"})
        if status not in (200, 201):
            raise RuntimeError(f"MKCALENDAR {url} on {self.kind} answered {status}")
        return url

    def info(self) -> ServerInfo:
        return ServerInfo(
            kind=self.kind,
            url=self.base_url,
            username=self.username,
            password=self.password,
            calendar_url_factory=self.make_calendar,
            auth=self.auth,
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the server does not go within 5 s."""
        stop_process(self.process)
        if self._log_file is not None:
            self._log_file.close()


def _http(
    server: RunningServer, method: str, url: str, body: bytes | None, headers: dict[str, str]
) -> int:
    """One request with httpx, so the fixtures never depend on the code under test."""
    response = httpx.request(
        method,
        url,
        content=body,
        headers=headers,
        auth=http_auth(server.auth, server.username, server.password),
        timeout=10,
    )
    return response.status_code


def free_port() -> int:
    """A port the kernel just considered free; the caller retries if someone grabs it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if the process has not gone within ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)


def wait_until_started(
    name: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    answers: Callable[[], bool],
    stop: Callable[[], None],
) -> None:
    """Poll ``answers`` until it is true; a process that exits first fails with its log's
    tail, one that does not answer within START_TIMEOUT is stopped and fails."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {process.returncode} during start-up:\n"
                + log_path.read_text(errors="replace")[-2000:]
            )
        if answers():
            return
        time.sleep(0.05)
    stop()
    raise RuntimeError(f"{name} did not answer within {START_TIMEOUT} s")


def _wait_until_up(server: RunningServer) -> None:
    """Until the server answers anything over HTTP (401/404 count: it is listening)."""

    def answers() -> bool:
        try:
            _http(server, "OPTIONS", server.base_url, None, {})
        except httpx.TransportError:
            return False
        return True

    wait_until_started(server.kind, server.process, server.log_path, answers, server.stop)


def _launch(
    kind: str, argv: list[str], port: int, tmp: Path, home_path: str, auth: bool
) -> RunningServer:
    log_path = tmp / f"{kind}-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(  # the argv is built here from fixed parts, not user input
        argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp
    )
    server = RunningServer(
        kind=kind,
        base_url=f"http://{HOST}:{port}/",
        home_path=home_path,
        username=USERNAME if auth else None,
        password=PASSWORD if auth else None,
        process=process,
        log_path=log_path,
        _log_file=log_file,
    )
    _wait_until_up(server)
    return server


_Started = TypeVar("_Started")


def _with_port_retry(start: Callable[[int], _Started]) -> _Started:
    """Retry with a new port when the picked one was taken between probing and binding."""
    last: Exception | None = None
    for _ in range(3):
        try:
            return start(free_port())
        except RuntimeError as exc:
            last = exc
    assert last is not None
    raise last


def start_radicale(tmp: Path, extra_args: Sequence[str] = ()) -> RunningServer:
    """Radicale 3 with htpasswd plain auth (alice/secret) and owner_only rights.

    ``extra_args``: more Radicale options (a test of its size limits sets them small).
    """
    users = tmp / "users"
    users.write_text(f"{USERNAME}:{PASSWORD}\n")

    def start(port: int) -> RunningServer:
        argv = [
            sys.executable, "-m", "radicale",
            "--config", "",  # ignore /etc/radicale and ~/.config/radicale
            "--server-hosts", f"{HOST}:{port}",
            "--storage-filesystem-folder", str(tmp / "collections"),
            "--auth-type", "htpasswd",
            "--auth-htpasswd-filename", str(users),
            "--auth-htpasswd-encryption", "plain",
            "--rights-type", "owner_only",
            "--logging-level", "warning",
            *extra_args,
        ]  # fmt: skip
        server = _launch("radicale", argv, port, tmp, f"/{USERNAME}/", auth=True)
        # Radicale creates the principal collection on the owner's first PROPFIND.
        _http(server, "PROPFIND", f"{server.base_url}{USERNAME}/", None, {"Depth": "0"})
        return server

    return _with_port_retry(start)


def start_xandikos(tmp: Path) -> RunningServer:
    """Xandikos without auth (its --htpasswd needs HTTPS); principal /alice/."""

    def start(port: int) -> RunningServer:
        argv = [
            sys.executable, "-m", "xandikos", "serve",
            "-d", str(tmp / "data"),
            "--state-dir", str(tmp / "state"),
            "--defaults",
            "-l", HOST, "-p", str(port),
            "--current-user-principal", f"/{USERNAME}/",
            "--no-detect-systemd",
        ]  # fmt: skip
        return _launch("xandikos", argv, port, tmp, f"/{USERNAME}/calendars/", auth=False)

    return _with_port_retry(start)


STARTERS: dict[str, Callable[[Path], RunningServer]] = {
    "radicale": start_radicale,
    "xandikos": start_xandikos,
}


@contextlib.contextmanager
def running(kind: str, tmp: Path) -> Iterator[RunningServer]:
    if kind in STARTERS:
        start = STARTERS[kind]
    else:  # interop tier: Debian packages, imported only when asked for
        from tests.servers_cyrus_sabredav import STARTERS as MORE_STARTERS
        from tests.servers_debian import STARTERS as DEBIAN_STARTERS

        start = {**DEBIAN_STARTERS, **MORE_STARTERS}[kind]
    server = start(tmp)
    try:
        yield server
    finally:
        server.stop()
