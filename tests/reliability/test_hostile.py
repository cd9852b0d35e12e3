"""Hostile server answers: an XML entity bomb, a 50 MB body, 100,000 occurrences per series.

The sync runs as its own process (``tests/reliability/worker.py``) against a real Radicale,
with the hostile answer put in by the proxy (or, for the huge series, stored on the server
by a "client"). Each time: the run ends in bounded time, its peak RSS stays under
``RSS_LIMIT_MB``, the hostile item is reported by name, and the rest of the run goes on
(a CRM edit made before the run reaches the server).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar, Event

from sync.config import Account
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from sync.testing.followups import realistic_followups
from tests.reliability.fault_proxy import FaultProxy, Rewrite
from tests.reliability.helpers import client_create, direct
from tests.servers import RunningServer

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"
RSS_LIMIT_MB = 300
SECONDS_LIMIT = 90
FIFTY_MB = 50 * 1024 * 1024
BOMB = (
    b'<!DOCTYPE multistatus [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]>"
)
_CAL_DATA = re.compile(
    rb"(<(?:[A-Za-z0-9_]+:)?calendar-data[^>]*>)(.*?)(</(?:[A-Za-z0-9_]+:)?calendar-data>)", re.S
)


def _with_bomb(data: bytes) -> bytes:
    """The billion laughs DOCTYPE right after the XML declaration (or at the very start)."""
    if data.startswith(b"<?xml"):
        end = data.index(b"?>") + 2
        return data[:end] + BOMB + data[end:]
    return BOMB + data


def _replace_calendar_of(data: bytes, uid: str, new: bytes) -> bytes | None:
    for match in _CAL_DATA.finditer(data):
        if f"UID:{uid}".encode() in match.group(2):
            return data[: match.start(2)] + new + data[match.end(2) :]
    return None


def bomb_in_multiget(uid: str) -> Rewrite:
    def rewrite(method: str, path: str, body: bytes, data: bytes) -> bytes | None:
        if method != "REPORT" or b"calendar-multiget" not in body:
            return None
        replaced = _replace_calendar_of(data, uid, b"&lol9;")
        return _with_bomb(replaced) if replaced is not None else None

    return rewrite


def bomb_in_listing(method: str, path: str, body: bytes, data: bytes) -> bytes | None:
    if method == "REPORT" and b"sync-collection" in body:
        return _with_bomb(
            re.sub(rb"(<(?:[A-Za-z0-9_]+:)?sync-token>)[^<]*", rb"\1&lol9;", data, count=1)
        )
    return None


def fifty_mb_in_multiget(uid: str) -> Rewrite:
    def rewrite(method: str, path: str, body: bytes, data: bytes) -> bytes | None:
        if method != "REPORT" or b"calendar-multiget" not in body:
            return None
        padding = b"X-PADDING:" + b"x" * FIFTY_MB + b"\n"
        match = next(
            (m for m in _CAL_DATA.finditer(data) if f"UID:{uid}".encode() in m.group(2)), None
        )
        if match is None:
            return None
        return data[: match.end(2)] + padding + data[match.end(2) :]

    return rewrite


def _run_worker(calendar_url: str, db_path: Path, server: RunningServer) -> dict[str, Any]:
    env = {**os.environ, PASSWORD_ENV: server.password or "", "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable, "-m", "tests.reliability.worker", "--database", str(db_path),
        "--calendar-url", calendar_url, "--server-kind", server.kind, "--import-new",
        "--timeout", "30",
        "--username", server.username or "", "--password-env", PASSWORD_ENV,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=SECONDS_LIMIT * 2)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    report["elapsed"] = round(elapsed, 1)
    return report


def _setup(server: RunningServer, tmp_path: Path, name: str) -> tuple[str, Path, str, str]:
    """A synced calendar of 20 series, one client event (the target), one pending CRM edit."""
    calendar_url = server.make_calendar(f"hostile-{name}-{time.monotonic_ns()}")
    db_path = tmp_path / f"{name}.sqlite"
    db = Database.open(str(db_path))
    store = FollowUpStore(db)
    followups = realistic_followups(20, seed=11)
    store.import_followups(followups)
    os.environ[PASSWORD_ENV] = server.password or ""
    account = Account(
        name="worker", url=calendar_url, username=server.username, password_env=PASSWORD_ENV,
        calendar_url=calendar_url, server_kind=server.kind, import_new=True,
    )  # fmt: skip
    upstream = direct(calendar_url, server.username, server.password)
    assert run_pass(account, db, calendar=upstream).ok
    target = f"hostile-target-{name}@example.org"
    client_create(
        upstream, target, "Target of the hostile answer", dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)
    )
    edited = followups[0].model_copy(update={"title": "CRM edit that must still go out"})
    store.put(edited)
    db.close()
    return calendar_url, db_path, target, edited.id


def _check(report: dict[str, Any], *, named: str, reason: str, edited: str | None) -> None:
    errors = {item: message for item, message in report["errors"]}
    print(
        f"  errors {json.dumps(report['errors'])[:400]}; done {report['done']}; "
        f"peak RSS {report['maxrss_kb'] // 1024} MB; {report['elapsed']} s"
    )
    assert report["maxrss_kb"] / 1024 < RSS_LIMIT_MB
    assert report["elapsed"] < SECONDS_LIMIT
    assert any(named in item or named in message for item, message in errors.items()), errors
    assert any(reason in message for message in errors.values()), errors
    if edited is not None:
        assert report["done"].get("server update") == 1, "the rest of the run did not go on"
        assert len(errors) == 1, f"only the hostile item may fail: {errors}"


def test_entity_bomb_in_a_multiget_answer(radicale_server: RunningServer, tmp_path: Path) -> None:
    calendar_url, db_path, target, edited = _setup(radicale_server, tmp_path, "bomb")
    with FaultProxy(
        radicale_server.base_url, rate=0, seed=1, rewrite=bomb_in_multiget(target), lifetime=300
    ) as proxy:
        report = _run_worker(proxy.url_for(calendar_url), db_path, radicale_server)
    print("entity bomb in calendar-multiget:")
    href = direct(calendar_url, None, None).href_for_uid(target)
    _check(report, named=href, reason="entity amplification", edited=edited)


def test_entity_bomb_in_the_listing_stops_the_pass_cleanly(
    radicale_server: RunningServer, tmp_path: Path
) -> None:
    calendar_url, db_path, _target, _edited = _setup(radicale_server, tmp_path, "bomblist")
    # The first pass of the worker lists with the stored token; force a full listing too.
    with FaultProxy(
        radicale_server.base_url, rate=0, seed=1, rewrite=bomb_in_listing, lifetime=300
    ) as proxy:
        report = _run_worker(proxy.url_for(calendar_url), db_path, radicale_server)
    print(f"entity bomb in sync-collection: {report}")
    assert report["maxrss_kb"] / 1024 < RSS_LIMIT_MB and report["elapsed"] < SECONDS_LIMIT
    assert not report["ok"] and "malformed XML in answer to sync-collection" in report.get(
        "stopped", ""
    ), report


def test_fifty_megabyte_answer(radicale_server: RunningServer, tmp_path: Path) -> None:
    calendar_url, db_path, target, edited = _setup(radicale_server, tmp_path, "big")
    rewrite = fifty_mb_in_multiget(target)
    with FaultProxy(
        radicale_server.base_url, rate=0, seed=1, rewrite=rewrite, lifetime=300
    ) as proxy:
        report = _run_worker(proxy.url_for(calendar_url), db_path, radicale_server)
    print("50 MB calendar-multiget answer:")
    href = direct(calendar_url, None, None).href_for_uid(target)
    _check(report, named=href, reason="max_response_bytes", edited=edited)


@pytest.mark.parametrize("rule", ["FREQ=MINUTELY;COUNT=100000", "FREQ=SECONDLY"])
def test_a_series_of_100000_occurrences(
    radicale_server: RunningServer, tmp_path: Path, rule: str
) -> None:
    """SECONDLY is stored on the server by a client; Radicale itself refuses COUNT=100000
    with a 400, so that one is put into the multiget answer by the proxy."""
    name = "count" if "COUNT" in rule else "open"
    calendar_url, db_path, _target, _edited = _setup(radicale_server, tmp_path, f"occ-{name}")
    upstream = direct(calendar_url, radicale_server.username, radicale_server.password)
    uid = f"huge-{name}@example.org"
    cal = Calendar()
    cal.add("prodid", "-//hostile//EN")
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    event.add("dtstart", dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC))
    event.add("dtend", dt.datetime(2026, 1, 5, 9, 0, 30, tzinfo=dt.UTC))
    event.add("summary", "A series of 100,000 occurrences")
    event.add("rrule", {"FREQ": "DAILY", "COUNT": 3})
    cal.add_component(event)
    data = cal.to_ical().replace(b"RRULE:FREQ=DAILY;COUNT=3", f"RRULE:{rule}".encode())
    if name == "open":
        upstream.create(upstream.href_for_uid(uid), data)
    else:
        upstream.create(upstream.href_for_uid(uid), cal.to_ical())

    def rewrite(method: str, path: str, body: bytes, answer: bytes) -> bytes | None:
        if method == "REPORT" and b"calendar-multiget" in body and f"UID:{uid}".encode() in answer:
            return answer.replace(b"RRULE:FREQ=DAILY;COUNT=3", f"RRULE:{rule}".encode())
        return None

    with FaultProxy(
        radicale_server.base_url, rate=0, seed=1, rewrite=rewrite, lifetime=300
    ) as proxy:
        report = _run_worker(proxy.url_for(calendar_url), db_path, radicale_server)
    print(f"{rule}:")
    errors = dict(report["errors"])
    _check(
        {**report, "errors": [(h, m) for h, m in report["errors"] if uid in m]}, named=uid,
        reason="more than 10000 occurrences", edited=None,
    )  # fmt: skip
    assert report["done"].get("server update") == 1, "the rest of the run did not go on"
    assert report["done"].get("crm create") == 1  # the ordinary client event (target) came in
    assert len(errors) == 1, errors
