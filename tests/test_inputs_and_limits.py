"""Hostile input and hostile clients: one clear error, never a traceback or a 500 (#15, #22).

The command line is run as a user types it (the installed script, a subprocess); the API
is served by the same uvicorn set-up the daemon and ``followup-sync api`` use
(``sync.api.limits.server_config``) and spoken to over real sockets.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.api.app import create_app
from sync.api.limits import server_config
from sync.state.db import Database
from tests import factories
from tests.servers import HOST
from tests.sync.api.served import serve

SCRIPT = Path(sys.executable).parent / "followup-sync"
TOKEN = "limits-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 64 * 1024
READ_TIMEOUT = 1.5


def weekly(fid: str = "77", **overrides: Any) -> dict[str, Any]:
    """Three Mondays; ``overrides`` replace fields as they are (even with a wrong type)."""
    series = factories.weekly(fid, title="Status", start="2026-01-05T09:00:00", count=3)
    return {**series, **overrides}


def _text(document: Any) -> str:
    return json.dumps(document)


#: name -> (the bytes of a JSON file or body, the field the error names, words of the message)
POISON: dict[str, tuple[str, str | None, str]] = {
    "cycle-1e9": (
        _text([weekly(recurrence={**weekly()["recurrence"], "WeekPattern": {
            "Weekdays": "Monday", "Cycle": 10**9}})]),
        "document",
        "OverflowError",
    ),
    "starts-9999-12-27": (
        _text([weekly(start="9999-12-27T10:00:00", end="9999-12-27T11:00:00")]),
        "document",
        "out of range",
    ),
    "start-is-a-number": (_text([weekly(start=5)]), "start", "5 is not an ISO date"),
    "lone-surrogate": (
        _text([weekly(title="a\ud800b")]).replace("\\ud800", "\\ud800"),
        "title",
        "lone UTF-16 surrogate",
    ),
}  # fmt: skip

#: Bodies the JSON parser itself chokes on: (text, words of the message).
UNPARSABLE: dict[str, tuple[str, str]] = {
    "nested-100000": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "number-100000-digits": (
        '[{"id": "n", "RecurrenceCounter": ' + "9" * 100_000 + "}]",
        "more than 4300 digits",
    ),
}


# --- the command line --------------------------------------------------------------------------


def run_script(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("name", sorted(POISON))
def test_import_refuses_a_poisoned_followup_naming_it(name: str, tmp_path: Path) -> None:
    text, field, words = POISON[name]
    database = tmp_path / "state.sqlite"
    line = one_line(run_script("import", "--database", str(database), "-", stdin=text))
    assert line.startswith("error: follow-up '77', field "), line
    assert f"field '{field}'" in line and words in line, line
    if database.exists():  # checked before or after opening the database: nothing stored
        exported = run_script("export", "--database", str(database), stdin="")
        assert exported.returncode == 0 and json.loads(exported.stdout) == []


@pytest.mark.parametrize("name", sorted(UNPARSABLE))
def test_unparsable_json_is_one_line_and_exit_2(name: str, tmp_path: Path) -> None:
    text, words = UNPARSABLE[name]
    for command in (["import", "--database", str(tmp_path / "s.sqlite")], ["map"]):
        line = one_line(run_script(*command, "-", stdin=text))
        assert line == f"error: not valid JSON: {words}" or words in line, line


def test_two_followups_with_one_id_are_refused_naming_both_positions(tmp_path: Path) -> None:
    text = _text([weekly("a"), weekly("b"), weekly("a", title="Other")])
    line = one_line(run_script("import", "--database", str(tmp_path / "s.sqlite"), "-", stdin=text))
    assert line == (
        "error: follow-up 'a', field 'id': appears twice in this file: follow-ups number 1 "
        "and 3 (counting from 1) have this id"
    )


# --- the API, served for real ------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The host and port: some tests below speak raw sockets to the server."""
    db = Database.open(str(tmp_path_factory.mktemp("limits") / "api.sqlite"))
    app = create_app(db, token=TOKEN, max_body_bytes=MAX_BODY)
    with serve(app, config=server_config, read_timeout=READ_TIMEOUT) as url:
        yield HOST, int(url.rsplit(":", 1)[1])
    db.close()


@pytest.fixture
def http(served: tuple[str, int]) -> Iterator[httpx.Client]:
    host, port = served
    with httpx.Client(base_url=f"http://{host}:{port}", headers=AUTH, timeout=30) as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def post_json(http: httpx.Client, path: str, text: str) -> httpx.Response:
    return http.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("name", sorted(POISON))
@pytest.mark.parametrize("route", ["post", "put", "calculate"])
def test_the_api_refuses_a_poisoned_followup_with_422(
    name: str, route: str, http: httpx.Client
) -> None:
    text, field, words = POISON[name]
    document = text[1:-1]  # the one follow-up, not the array
    if route == "post":
        response = post_json(http, "/followups", document)
    elif route == "put":
        response = http.put(
            "/followups/77", content=document.encode(), headers={"Content-Type": "application/json"}
        )
    else:
        response = post_json(http, "/dates/calculate", document)
    body = problem(response, 422)
    assert body["field"] == field and words in body["detail"], body
    assert http.get("/followups/77").status_code == 404  # nothing was stored


@pytest.mark.parametrize("name", sorted(UNPARSABLE))
def test_the_api_answers_an_unparsable_body_with_a_problem_not_a_500(
    name: str, http: httpx.Client
) -> None:
    text, words = UNPARSABLE[name]
    if len(text) > MAX_BODY:
        text = text[: MAX_BODY // 2 - 1] + text[-(MAX_BODY // 2 - 1) :]  # under the cap
    body = problem(post_json(http, "/followups", text), 400)
    assert body["field"] == "body" and words in body["detail"], body


MALFORMED = [
    ('{"id": "1", "title": "x",\n  "start": }', 2, 12),
    ("{not json", 1, 2),
    ('{"id": "1"', 1, 11),
    ('[\n\n   {"a": 1,}]', 3, 12),
    ("", None, None),
    ("{\"id\": 'single'}", 1, 8),
]


@pytest.mark.parametrize(("text", "line", "column"), MALFORMED)
def test_malformed_json_names_the_body_and_line_and_column(
    text: str, line: int | None, column: int | None, http: httpx.Client
) -> None:
    body = problem(post_json(http, "/followups", text), 422)
    assert body["field"] == "body", body
    if line is not None:
        assert body["detail"].startswith("the request body is not valid JSON: "), body
        assert body["detail"].endswith(f" at line {line} column {column}"), body


def test_a_body_over_the_cap_is_refused_with_413_and_not_stored(http: httpx.Client) -> None:
    big = weekly("big", description="x" * (MAX_BODY + 1))
    body = problem(http.post("/followups", json=big), 413)
    assert body["title"] == "Request body too large"
    assert http.get("/followups/big").status_code == 404
    assert http.post("/followups", json=weekly("small", description="x" * 1000)).status_code == 201


def _stalled_request(served: tuple[str, int], request: bytes) -> tuple[float, bytes]:
    """Send ``request`` and nothing more; how long until the server closed, and what it said."""
    started = time.monotonic()
    with socket.create_connection(served, timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return time.monotonic() - started, received


def test_a_client_that_declares_a_body_and_stalls_is_dropped_within_seconds(
    served: tuple[str, int],
) -> None:
    head = (
        "POST /followups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 500\r\n\r\n"
    ).encode()
    took, answer = _stalled_request(served, head + b'{"id": "slow", ')
    assert READ_TIMEOUT <= took < READ_TIMEOUT + 5, took
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"application/problem+json" in answer


def test_a_client_that_never_finishes_its_headers_is_dropped_within_seconds(
    served: tuple[str, int],
) -> None:
    took, answer = _stalled_request(served, b"GET /followups HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert READ_TIMEOUT <= took < READ_TIMEOUT + 5, took
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_slow_app_is_not_cut_off_and_a_kept_alive_connection_still_works(
    served: tuple[str, int],
) -> None:
    """The deadline covers receiving; two requests on one connection, spaced out, both work."""
    connection = HTTPConnection(*served, timeout=30)
    try:
        for _ in range(3):
            connection.request("GET", "/followups", headers=AUTH)
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            time.sleep(READ_TIMEOUT * 0.7)  # three of these outlast one deadline
    finally:
        connection.close()
