"""Follow-up documents and accounts that many tests start from, built in one place.

Each builder returns the plain JSON document a CRM sends (what ``followup-sync import``, the
API and ``FollowUpStore`` take), so a test can break one field of it, send it over HTTP or
load it with ``mappings.model.load_followup``. Keyword arguments beyond the named ones are
top-level fields set last, so they add fields (``owner``, ``location``, ``exceptions``...)
or replace any field the builder wrote, ``recurrence`` included.

The defaults are the shapes the suites agreed on long ago: a meeting on Monday 2 March 2026
at 10:00 in Oslo, lasting an hour; a weekly series of ten such Mondays. Tests that need other
dates pass them; ``status_meeting`` is the six-Monday series of the engine's tests.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sync.config import Account
from tests.servers import ServerInfo

OSLO = "Europe/Oslo"

#: The first Monday of the shared series, 10:00 wall-clock time in Oslo.
FIRST_MONDAY = "2026-03-02T10:00:00"


def an_hour_after(start: str) -> str:
    """The end of a one-hour meeting starting at ``start`` (a naive ISO date-time)."""
    return (dt.datetime.fromisoformat(start) + dt.timedelta(hours=1)).isoformat()


def weekly_rule(count: int, *, cycle: int = 1, weekdays: str = "Monday") -> dict[str, Any]:
    """The CRM's recurrence for ``count`` occurrences on ``weekdays``, every ``cycle`` weeks."""
    return {
        "Pattern": "Weekly",
        "WeekPattern": {"Weekdays": weekdays, "Cycle": cycle},
        "RecurrenceEndType": "Counter",
        "RecurrenceCounter": count,
    }


def appointment(
    fid: str,
    *,
    title: str | None = None,
    start: str = FIRST_MONDAY,
    end: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One follow-up in Oslo time: ``title`` defaults to "Meeting <fid>", ``end`` to an hour
    after ``start``."""
    document: dict[str, Any] = {
        "id": fid,
        "title": f"Meeting {fid}" if title is None else title,
        "start": start,
        "end": an_hour_after(start) if end is None else end,
        "timezone": OSLO,
    }
    document.update(fields)
    return document


def weekly(
    fid: str,
    *,
    title: str = "Weekly status",
    start: str = FIRST_MONDAY,
    end: str | None = None,
    count: int = 10,
    cycle: int = 1,
    **fields: Any,
) -> dict[str, Any]:
    """``count`` meetings on Mondays from ``start`` (every ``cycle`` weeks), an hour long
    unless ``end`` says otherwise."""
    document = appointment(fid, title=title, start=start, end=end)
    document["recurrence"] = weekly_rule(count, cycle=cycle)
    document.update(fields)
    return document


def status_meeting(fid: str = "1001", **fields: Any) -> dict[str, Any]:
    """The engine tests' common ancestor: six Mondays at 09:00 in Oslo from 6 January 2025;
    ``fields`` replace any of its fields as they are."""
    document = weekly(fid, title="Status meeting", start="2025-01-06T09:00:00", count=6)
    document.update(fields)
    return document


# --- accounts ---------------------------------------------------------------------------------

#: Where a test account's password travels: the environment, as in a deployment.
PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"


def account_for(
    server: ServerInfo,
    calendar_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    password_env: str = PASSWORD_ENV,
    **fields: Any,
) -> Account:
    """The account "alice" on one calendar of a fixtures' server, signing in as its user.

    The server's password, if it has one, is put in ``password_env`` for the test's
    duration; ``fields`` set or replace any other field of the account.
    """
    if server.password is not None:
        monkeypatch.setenv(password_env, server.password)
    settings: dict[str, Any] = {
        "name": "alice",
        "url": server.url,
        "username": server.username,
        "auth": server.auth,
        "password_env": password_env if server.password is not None else None,
        "calendar_url": calendar_url,
        "server_kind": server.kind,
    }
    settings.update(fields)
    return Account(**settings)
