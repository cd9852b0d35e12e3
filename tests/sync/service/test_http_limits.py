"""The daemon's HTTP server, as configured, caps bodies and drops stalled clients (#15.6).

A real daemon process with ``[daemon] api_max_body_bytes`` and
``http_read_timeout_seconds`` set small, spoken to over real sockets.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sync.service.conftest import DaemonProcess, run_cli, start_daemon, write_config

TOKEN = "daemon-limits-token-0123"
READ_TIMEOUT = 1.5
MAX_BODY = 4000


@pytest.fixture
def daemon(tmp_path: Path, http_port: int) -> Iterator[DaemonProcess]:
    database = f"sqlite:///{tmp_path / 'state.sqlite'}"
    assert run_cli("db", "upgrade", "--database", database).returncode == 0
    config = write_config(
        tmp_path / "config.toml",
        database=database,
        accounts={"alice": {"url": "http://127.0.0.1:9/", "interval_seconds": 3600}},
        http_port=http_port,
        daemon={
            "api_token_env": "TEST_API_TOKEN",
            "api_max_body_bytes": MAX_BODY,
            "http_read_timeout_seconds": READ_TIMEOUT,
        },
    )
    process = start_daemon(
        config, tmp_path / "daemon.log", http_port=http_port, env={"TEST_API_TOKEN": TOKEN}
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.terminate()


def post(daemon: DaemonProcess, document: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        daemon.base + "/followups",
        data=json.dumps(document).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def meeting(fid: str, description: str) -> dict[str, object]:
    return {
        "id": fid,
        "title": "Meeting",
        "description": description,
        "start": "2026-03-02T10:00:00",
        "end": "2026-03-02T11:00:00",
    }


def test_the_daemon_caps_request_bodies_with_a_413_problem(daemon: DaemonProcess) -> None:
    status, headers, body = post(daemon, meeting("big", "x" * MAX_BODY))
    assert status == 413, body
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["title"] == "Request body too large"
    assert post(daemon, meeting("small", "x" * 100))[0] == 201


def test_the_daemon_drops_a_client_that_declares_a_body_and_sends_nothing(
    daemon: DaemonProcess,
) -> None:
    head = (
        "POST /followups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 300\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", daemon.http_port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    took = time.monotonic() - started
    assert READ_TIMEOUT <= took < READ_TIMEOUT + 5, took
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert daemon.get("/healthz")[0] == 200  # the server itself is fine
