"""The daemon's HTTP app in-process: probes, metrics, and the follow-up API on the same server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sync.config import Account, DaemonSettings, Settings
from sync.service.daemon import Daemon
from sync.service.http import create_service_app
from sync.state.db import Database


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    db = Database.open(str(tmp_path / "state.sqlite"))
    settings = Settings(
        database=db.url,
        daemon=DaemonSettings(api_token_env="TEST_API_TOKEN"),
        accounts={"alice": Account(name="alice", url="http://127.0.0.1:9/", interval_seconds=3600)},
    )
    yield Daemon(settings, db)
    db.close()


def test_probes_and_metrics(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_API_TOKEN", raising=False)
    client = TestClient(create_service_app(daemon))
    assert client.get("/healthz").status_code == 200
    not_started = client.get("/readyz")
    assert not_started.status_code == 503
    assert not_started.json()["checks"] == {
        "database": "ok",
        "schema": "ok",
        "scheduler": "stopped",
    }
    daemon.start()
    try:
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "followup_sync_scheduler_running 1.0" in metrics.text
    finally:
        daemon.stop(timeout=5)
    assert client.get("/followups").status_code == 404, "no token: the API is not served"


def test_the_followup_api_is_mounted_when_its_token_is_set(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_API_TOKEN", "s3cret")
    client = TestClient(create_service_app(daemon))
    assert client.get("/followups").status_code == 401
    listed = client.get("/followups", headers={"Authorization": "Bearer s3cret"})
    assert listed.status_code == 200 and listed.json() == []
    assert client.get("/healthz").status_code == 200, "probes need no token"
