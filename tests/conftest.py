"""Shared fixtures: real CalDAV servers (see tests/servers.py), one per kind per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.servers import RunningServer, ServerInfo, running

SERVER_KINDS = ["radicale", "xandikos"]


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running("radicale", tmp_path_factory.mktemp("radicale")) as server:
        yield server


@pytest.fixture(scope="session")
def xandikos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running("xandikos", tmp_path_factory.mktemp("xandikos")) as server:
        yield server


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
