"""Daemon test helpers: config files, daemon subprocesses, waiting for conditions."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from mappings.documents import load_followups_json
from mappings.model import uid_for_id
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from tests.factories import appointment
from tests.servers import PASSWORD, USERNAME, RunningServer, free_port

ROOT = Path(__file__).resolve().parents[3]
DAEMON_START_TIMEOUT = 60.0


def write_config(
    path: Path,
    *,
    database: str,
    accounts: dict[str, dict[str, Any]],
    http_port: int = 0,
    daemon: dict[str, Any] | None = None,
) -> Path:
    """A TOML config; account tables get Radicale credentials unless given."""

    def value(v: Any) -> str:
        return json.dumps(v)  # JSON scalars and lists of strings are valid TOML

    lines = [f"database = {value(database)}", "", "[daemon]", f"http_port = {http_port}"]
    for key, v in {
        "crm_poll_seconds": 0.5,
        "crm_debounce_seconds": 0.2,
        "log_format": "json",
        "shutdown_timeout_seconds": 20,
        **(daemon or {}),
    }.items():
        lines.append(f"{key} = {value(v)}")
    for name, values in accounts.items():
        lines += ["", f"[accounts.{name}]"]
        merged = {
            "username": USERNAME,
            "password_env": "DAV_PASSWORD",
            "server_kind": "radicale",
            "interval_seconds": 1.5,
            "jitter_seconds": 0,
            "full_every": 0,
            **values,
        }
        lines += [f"{k} = {value(v)}" for k, v in merged.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class AliceConfig:
    """What ``alice_config`` made: the config file, alice's calendar and the state database."""

    path: Path
    calendar_url: str
    database: str


def alice_config(
    tmp_path: Path,
    server: RunningServer,
    *,
    http_port: int,
    prefix: str,
    daemon: dict[str, Any] | None = None,
    **account: Any,
) -> AliceConfig:
    """A fresh calendar on ``server`` (named ``prefix``-<random>), a SQLite state database
    brought to the current schema (``db upgrade``, as an operator does first), and a config
    whose one account, alice, syncs alice's follow-ups to it; ``account`` adds settings."""
    calendar_url = server.make_calendar(f"{prefix}-{uuid.uuid4().hex[:8]}")
    database = f"sqlite:///{tmp_path / 'state.sqlite'}"
    config = write_config(
        tmp_path / "config.toml",
        database=database,
        http_port=http_port,
        daemon=daemon,
        accounts={
            "alice": {
                "url": server.base_url,
                "calendar_url": calendar_url,
                "owners": ["alice"],
                **account,
            }
        },
    )
    upgraded = run_cli("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    return AliceConfig(config, calendar_url, database)


@dataclass
class DaemonProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    http_port: int
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def wait_ready(self, timeout: float = DAEMON_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.process.returncode}:\n{self.log_text()[-4000:]}"
                )
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("daemon not ready in time:\n" + self.log_text()[-4000:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    records.append(json.loads(line))
        return records

    def terminate(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.close()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def start_daemon(
    config: Path, log_path: Path, *, http_port: int, env: dict[str, str] | None = None
) -> DaemonProcess:
    environ = {**os.environ, "DAV_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", **(env or {})}
    environ.pop("FOLLOWUP_SYNC_DATABASE", None)
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync.cli.main",
            "daemon",
            "--config",
            str(config),
            "--http-port",
            str(http_port),
        ],
        cwd=ROOT,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    return DaemonProcess(process, log_path, http_port, log)


def start_ready(
    daemons: list[DaemonProcess],
    config: Path,
    log_path: Path,
    *,
    http_port: int,
    env: dict[str, str] | None = None,
) -> DaemonProcess:
    """Start a daemon, hand it to the test's ``daemons`` (killed at the end whatever
    happens) and wait until it is ready."""
    daemon = start_daemon(config, log_path, http_port=http_port, env=env)
    daemons.append(daemon)
    daemon.wait_ready()
    return daemon


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "DAV_PASSWORD": PASSWORD, **(env or {})}
    environ.pop("FOLLOWUP_SYNC_DATABASE", None)
    return subprocess.run(
        [sys.executable, "-m", "sync.cli.main", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def wait_for_title(
    server: RunningServer, calendar_url: str, fid: str, title: str, timeout: float, what: str
) -> None:
    """Until the calendar shows follow-up ``fid`` under ``title``."""
    wait_for(lambda: summaries(server, calendar_url).get(uid_for_id(fid)) == title, timeout, what)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Every daemon a test starts is appended here and killed at the end, whatever happens."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()


@pytest.fixture
def http_port() -> int:
    return free_port()


__all__ = [
    "AliceConfig",
    "DaemonProcess",
    "RunningServer",
    "alice_config",
    "run_cli",
    "start_daemon",
    "start_ready",
    "wait_for",
    "wait_for_title",
    "write_config",
]


# --- the calendar side, as a client would see it: plain HTTP, nothing from sync.stores ---


def _request(
    server: RunningServer,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers), exc.read()


def calendar_items(server: RunningServer, calendar_url: str) -> dict[str, tuple[str, bytes]]:
    """href -> (etag, data) of every resource in the calendar (PROPFIND + GETs)."""
    body = (
        b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:">'
        b"<D:prop><D:getetag/></D:prop></D:propfind>"
    )
    status, _, data = _request(
        server, "PROPFIND", calendar_url, body, {"Depth": "1", "Content-Type": "application/xml"}
    )
    assert status == 207, status
    hrefs = [
        h
        for h in re.findall(rb"<(?:\w+:)?href>([^<]+)</(?:\w+:)?href>", data)
        if h.endswith(b".ics")
    ]
    items = {}
    origin = calendar_url.split("/", 3)
    for href in hrefs:
        url = f"{origin[0]}//{origin[2]}{href.decode()}"
        status, headers, content = _request(server, "GET", url)
        if status == 200:
            items[url] = (headers.get("ETag", headers.get("Etag", "")), content)
    return items


def summaries(server: RunningServer, calendar_url: str) -> dict[str, str]:
    """UID -> SUMMARY of every event in the calendar."""
    result = {}
    for _, data in calendar_items(server, calendar_url).values():
        text = data.decode().replace("\r\n ", "")
        uid = next(line[4:] for line in text.splitlines() if line.startswith("UID:"))
        summary = next((line[8:] for line in text.splitlines() if line.startswith("SUMMARY:")), "")
        result[uid.strip()] = summary.strip()
    return result


def client_retitle(server: RunningServer, url: str, etag: str, data: bytes, title: str) -> None:
    """What a calendar client does to rename an event: GET, change SUMMARY, PUT If-Match."""
    lines = data.decode().split("\r\n")
    changed, done = [], False
    for line in lines:
        if line.startswith("SUMMARY:") and not done:
            changed.append(f"SUMMARY:{title}")
            done = True
        else:
            changed.append(line)
    status, _, body = _request(
        server,
        "PUT",
        url,
        "\r\n".join(changed).encode(),
        {"Content-Type": "text/calendar", "If-Match": etag},
    )
    assert status in (200, 201, 204), (status, body[:300])


def client_retitles(server: RunningServer, calendar_url: str, fid: str, title: str) -> None:
    """A calendar client renames the event of follow-up ``fid``, found by its UID."""
    uid = uid_for_id(fid).encode()
    url, (etag, data) = next(
        (u, v) for u, v in calendar_items(server, calendar_url).items() if uid in v[1]
    )
    client_retitle(server, url, etag, data, title)


def followup(fid: str, title: str, owner: str = "alice") -> dict[str, Any]:
    """A one-hour appointment on 2 March 2026, as the CRM writes it."""
    return appointment(fid, title=title, kind="appointment", owner=owner)


def put_followups(database: str, items: list[dict[str, Any]]) -> None:
    """A CRM write, as the CRM integration (or the API) does it: through FollowUpStore."""
    db = Database(database)
    try:
        FollowUpStore(db).import_followups(load_followups_json(json.dumps(items).encode()))
    finally:
        db.close()


def crm_titles(database: str) -> dict[str, str]:
    db = Database(database)
    try:
        return {f.id: f.title for f in FollowUpStore(db).all()}
    finally:
        db.close()
