"""Shared fixtures: real CalDAV servers (see tests/servers.py), one per kind per test session.

``FOLLOWUP_SYNC_SERVERS`` picks the kinds every ``dav_server`` test runs against
(default ``radicale,xandikos``: pip-only, so ``make test`` needs nothing but python3).
``make test-interop`` sets it to ``radicale,xandikos,davical,sogo``; DAViCal and SOGo
come from Debian packages (tests/servers_debian.py, scripts/install-debian-tier.sh).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.servers import RunningServer, ServerInfo, running

#: The test CA, TLS fronts and proxies of the sign-in tests (also used by the secrets tests).
pytest_plugins = ["tests.reach.fixtures"]

SERVERS_ENV = "FOLLOWUP_SYNC_SERVERS"
ALL_KINDS = ("radicale", "xandikos", "davical", "sogo")
DEBIAN_KINDS = frozenset({"davical", "sogo"})


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
        from tests.servers_debian import missing

        absent = missing(kind)
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


@pytest.fixture(params=SERVER_KINDS)
def dav_server(request: pytest.FixtureRequest) -> ServerInfo:
    """One server kind per parametrization; the server itself lives for the whole session."""
    server: RunningServer = request.getfixturevalue(f"{request.param}_server")
    return server.info()


@pytest.fixture
def calendar_url(dav_server: ServerInfo, request: pytest.FixtureRequest) -> str:
    """A fresh, empty calendar on ``dav_server``, named after the test so data never mixes."""
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return dav_server.calendar_url_factory(f"{safe}-{uuid.uuid4().hex[:8]}")
