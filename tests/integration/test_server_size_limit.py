"""A resource the server refuses for its size is reported as that, once (issue #15.6).

Radicale answers a PUT over its ``max_resource_size`` with a bare 412, the status it
also uses for "something exists there". The run must say what really failed (the size),
without re-reading and re-sending the same large body three times, and sync the rest.
The server here is a real Radicale started with small limits; a recording proxy
(tests/reliability/fault_proxy.py, no faults) counts the PUTs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mappings.documents import load_followup
from mappings.model import uid_for_id
from sync.config import Account
from sync.run import run_pass
from sync.state.db import Database
from sync.state.followups import FollowUpStore
from tests.factories import appointment
from tests.integration.client_edits import PlainClient, uid_of
from tests.reliability.fault_proxy import FaultProxy
from tests.servers import PASSWORD, USERNAME, RunningServer, start_radicale

pytestmark = pytest.mark.server

MAX_RESOURCE = 20_000
PASSWORD_ENV = "FOLLOWUP_SYNC_TEST_PASSWORD"


@pytest.fixture(scope="module")
def small_radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_radicale(
        tmp_path_factory.mktemp("radicale-small"),
        ["--server-max-resource-size", str(MAX_RESOURCE)],
    )
    yield server
    server.stop()


def meeting(fid: str, description: str = "") -> dict[str, Any]:
    return appointment(fid, description=description)


def test_an_oversized_resource_is_reported_as_too_large_and_sent_once(
    small_radicale: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    calendar_url = small_radicale.make_calendar()
    db = Database.open(str(tmp_path / "state.sqlite"))
    store = FollowUpStore(db)
    store.import_followups(
        [load_followup(meeting("ok-1")), load_followup(meeting("ok-2")),
         load_followup(meeting("huge", "x" * (MAX_RESOURCE * 2)))]
    )  # fmt: skip
    with FaultProxy(small_radicale.base_url, rate=0.0, seed=1, lifetime=120) as proxy:
        account = Account(
            name="alice",
            url=proxy.url_for(small_radicale.base_url),
            username=USERNAME,
            password_env=PASSWORD_ENV,
            calendar_url=proxy.url_for(calendar_url),
            server_kind="radicale",
        )
        report = run_pass(account, db)
        puts = [s.path for s in proxy.stats.requests if s.method == "PUT"]
    assert [item for item, _ in report.errors] == ["huge"], report.errors
    message = report.errors[0][1]
    assert "size limit" in message and "already exists" not in message, message
    assert len(puts) == len(set(puts)) == 3, puts  # one each: the large body is sent once
    client = PlainClient(calendar_url, USERNAME, PASSWORD)
    assert sorted(uid_of(f.data) for f in client.all()) == sorted(
        uid_for_id(i) for i in ("ok-1", "ok-2")
    )

    # An update that grows over the limit: the same answer, for an existing resource.
    store.put(load_followup(meeting("ok-1", "y" * (MAX_RESOURCE * 2))))
    again = run_pass(account.model_copy(update={"url": small_radicale.base_url,
                                                "calendar_url": calendar_url}), db)  # fmt: skip
    assert sorted(item for item, _ in again.errors) == ["huge", "ok-1"], again.errors
    assert all("size limit" in message for _, message in again.errors), again.errors
    db.close()
