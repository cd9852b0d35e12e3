"""Shared fixtures: real CalDAV servers (see tests/servers.py), one per kind per test session.

``FOLLOWUP_SYNC_SERVERS`` picks the kinds every ``dav_server`` test runs against
(default ``radicale,xandikos``: pip-only, so ``make test`` needs nothing but python3).
``make test-interop`` sets it to ``radicale,xandikos,davical,sogo,cyrus,sabredav``; the
last four come from Debian packages (tests/servers_debian.py,
tests/servers_cyrus_sabredav.py, scripts/install-debian-tier.sh).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.servers import RunningServer, ServerInfo, _http, running

#: The test CA, TLS fronts and proxies of the sign-in tests (also used by the secrets tests).
pytest_plugins = ["tests.reach.fixtures"]

SERVERS_ENV = "FOLLOWUP_SYNC_SERVERS"
ALL_KINDS = ("radicale", "xandikos", "davical", "sogo", "cyrus", "sabredav")
DEBIAN_KINDS = frozenset({"davical", "sogo", "cyrus", "sabredav"})
#: Servers where a UID may live only once among all of a user's calendars.
UID_PER_USER_KINDS = frozenset({"cyrus"})


def _selected_kinds() -> list[str]:
    raw = os.environ.get(SERVERS_ENV, "radicale,xandikos")
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        raise pytest.UsageError(
            f"{SERVERS_ENV}: unknown server kind(s) {unknown}; known {ALL_KINDS}"
        )
    return kinds


SERVER_KINDS = _selected_kinds()


def _start(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    if kind in DEBIAN_KINDS:
        if kind not in SERVER_KINDS:
            pytest.skip(f"{kind}: interop tier only (set {SERVERS_ENV} or run make test-interop)")
        from tests import servers_cyrus_sabredav, servers_debian

        module = servers_debian if kind in ("davical", "sogo") else servers_cyrus_sabredav
        absent = module.missing(kind)
        if absent:
            # Asked for explicitly, so a missing package is an error, not a silent skip.
            pytest.fail(
                f"{kind} requested via {SERVERS_ENV} but missing: {', '.join(absent)}; "
                "run scripts/install-debian-tier.sh",
                pytrace=False,
            )
    with running(kind, tmp_path_factory.mktemp(kind)) as server:
        yield server


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _start("radicale", tmp_path_factory)


@pytest.fixture(scope="session")
def xandikos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _start("xandikos", tmp_path_factory)


@pytest.fixture(scope="session")
def davical_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _start("davical", tmp_path_factory)


@pytest.fixture(scope="session")
def sogo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _start("sogo", tmp_path_factory)


@pytest.fixture(scope="session")
def cyrus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _start("cyrus", tmp_path_factory)


@pytest.fixture(scope="session")
def sabredav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _start("sabredav", tmp_path_factory)


@pytest.fixture(params=SERVER_KINDS)
def dav_server(request: pytest.FixtureRequest) -> ServerInfo:
    """One server kind per parametrization; the server itself lives for the whole session."""
    server: RunningServer = request.getfixturevalue(f"{request.param}_server")
    return server.info()


@pytest.fixture
def calendar_url(dav_server: ServerInfo, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty calendar on ``dav_server``, named after the test so data never mixes.

    On a server that keeps a UID once per user (Cyrus), the calendar is deleted after the
    test: every test pushes the same follow-ups, and their UIDs would otherwise be taken.
    """
    url = dav_server.calendar_url_factory(_calendar_name(request))
    yield url
    if dav_server.kind in UID_PER_USER_KINDS:
        _delete_calendar(request.getfixturevalue(f"{dav_server.kind}_server"), url)


@pytest.fixture
def second_calendar(
    dav_server: ServerInfo, request: pytest.FixtureRequest
) -> Iterator[tuple[ServerInfo, str]]:
    """Another fresh calendar for the same follow-ups (a second CRM syncing them).

    Where a UID lives once per user (Cyrus) it belongs to a second user, bob, since the
    first user's calendar already holds those UIDs; elsewhere to the same user.
    """
    if dav_server.kind not in UID_PER_USER_KINDS:
        yield dav_server, dav_server.calendar_url_factory(_calendar_name(request))
        return
    alice: RunningServer = request.getfixturevalue(f"{dav_server.kind}_server")
    bob = dataclasses.replace(
        alice,
        username="bob",
        password=alice.password,  # the fixtures give every user the same one
        home_path=alice.home_path.replace(f"/{alice.username}/", "/bob/"),
        _log_file=None,
    )
    url = bob.make_calendar(_calendar_name(request))
    yield dataclasses.replace(bob.info(), url=dav_server.url), url
    _delete_calendar(bob, url)


def _calendar_name(request: pytest.FixtureRequest) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"{safe}-{uuid.uuid4().hex[:8]}"


def _delete_calendar(server: RunningServer, url: str) -> None:
    status = _http(server, "DELETE", url, None, {})
    assert status in (200, 204, 404), f"DELETE {url} answered {status}"


@pytest.fixture(autouse=True)
def _no_personal_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The CLI looks for a config file in the user's config directory: never the tester's."""
    monkeypatch.delenv("FOLLOWUP_SYNC_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "xdg-config"))
